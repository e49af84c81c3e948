"""A scheduled repair whose training node outlasts the lock's stale limit keeps its task: a second
``kaizen tick`` is refused, on this host (pid and start time) and from "another host" (heartbeat),
because the lock's own thread heartbeats while the node runs. Real CLI processes, tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kaizen.tools.lock import holder
from kaizen.tools.store.tables import utcnow
from kaizen.tools.workspace import find_workspace

KAIZEN = str(Path(sys.executable).parent / "kaizen")
STALE = {"KAIZEN_LOCK_STALE_AFTER_S": "1", "KAIZEN_LOCK_HEARTBEAT_S": "0.25"}  # a node of seconds is "long"


def _setup(tmp_path: Path, tiny: Path) -> tuple[list[str], Path]:
    from kaizen.workflows.bench.clinc import rows

    kz = [KAIZEN, "-w", str(tmp_path)]
    for args in (
        ["init", str(tmp_path)],
        ["task", "add", "intents", "--kind", "classification", "--labels", "balance,transfer"],
        ["models", "add", "tiny", "--path", str(tiny), "--task", "intents", "--promote"],
    ):
        assert subprocess.run(kz + args, capture_output=True, check=False).returncode == 0
    src = tmp_path / "logs"
    src.mkdir()
    logs = []
    for i, (text, gold) in enumerate(rows("train", ["balance", "transfer"], per_label=8, seed=2)):
        fb = {"verdict": "pass"} if i % 2 else {"verdict": "fail", "correction": gold}
        logs.append(
            {
                "messages": [{"role": "user", "content": text}],
                "output": gold if i % 2 else "other",
                "feedback": fb,
            }
        )
    (src / "day1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in logs))
    return kz + [
        "tick",
        "--task",
        "intents",
        "--source",
        str(src),
        "--min-new-failures",
        "4",
        "--json",
    ], tmp_path


def test_a_node_longer_than_the_stale_limit_keeps_the_lock(tmp_path: Path, tiny_llama_dir: Path) -> None:
    tick, ws_dir = _setup(tmp_path, tiny_llama_dir)
    first = subprocess.Popen(
        tick,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | STALE,
        start_new_session=True,
    )
    runner_pid = None
    try:
        deadline = time.time() + 600
        pid_files: list[Path] = []
        while time.time() < deadline and not pid_files:
            assert first.poll() is None, first.communicate()[1][-3000:]
            pid_files = list((ws_dir / ".kaizen" / "artifacts" / "runs").glob("*/iter-1/job/runner.pid"))
            time.sleep(0.2)
        assert pid_files, "the repair never started training"
        job_dir = pid_files[0].parent
        runner_pid = json.loads(pid_files[0].read_text())["pid"]
        time.sleep(1.5)  # the train node has now run longer than the stale limit, without a checkpoint
        here, remote = (
            subprocess.Popen(
                tick,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=os.environ | STALE | extra,
            )
            for extra in ({}, {"KAIZEN_HOST_ID": "another-host"})
        )
        out_here, out_remote = here.communicate(timeout=300), remote.communicate(timeout=300)
        still_training = first.poll() is None and not (job_dir / "result.json").exists()
        ws = find_workspace(ws_dir)
        row = holder(ws.store, "intents")
        beat_age = (utcnow() - row.heartbeat.replace(tzinfo=utcnow().tzinfo)).total_seconds()
        ticks = ws.store.list_ticks("intents")
        ws.store.close()
    finally:
        for pid, group in ((first.pid, True), (runner_pid, False)):
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        first.wait()
    assert still_training, "training ended before the second ticks: the node was not longer than the check"
    for proc, (stdout, stderr) in ((here, out_here), (remote, out_remote)):
        assert proc.returncode == 4, stdout + stderr
        assert "busy" in stderr
    assert row.pid == first.pid and row.run_id == ticks[-1].id  # the first tick holds it
    assert beat_age < 1.0  # refreshed by the lock's thread during the node
    assert sorted(t.status for t in ticks) == ["busy", "busy", "running"]
