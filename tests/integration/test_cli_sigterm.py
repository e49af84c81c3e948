"""``kill`` (SIGTERM) on a ``kaizen`` command that is training stops its runner too.

The runner lives in its own session so that a Ctrl-C in the terminal does not reach it directly; the CLI
stops it on the way out. Python's default SIGTERM exits without any cleanup, which left the runner training
with no one to stop it (seen when a benchmark was killed). The real CLI, the real runner, the tiny Llama.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kaizen.tools.data import write_items
from kaizen.tools.train.launch import pid_alive

LABELS = ["yes", "no"]


def _kaizen(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "kaizen"
    return [str(exe) if exe.exists() else "kaizen", *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("KAIZEN_HOME", "KAIZEN_DB_URL")}


def _runner_pid(root: Path) -> int | None:
    for path in root.rglob("runner.pid"):
        try:
            return int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None
    return None


def test_sigterm_stops_the_training_runner_and_exits_130(tiny_llama_dir: Path, tmp_path: Path) -> None:
    def run(*args: str) -> None:
        done = subprocess.run(
            _kaizen(*args),
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    run("init")
    run("task", "add", "parity", "--kind", "classification", "--labels", ",".join(LABELS))
    run("models", "add", "tiny", "--path", str(tiny_llama_dir))
    data = tmp_path / "data.jsonl"
    write_items(
        data,
        [
            {"messages": [{"role": "user", "content": f"Is {i} even?"}], "expected": LABELS[i % 2]}
            for i in range(8)
        ],
    )
    proc = subprocess.Popen(
        _kaizen(
            "train",
            "sft",
            "--task",
            "parity",
            "--data",
            str(data),
            "--base",
            "tiny",
            "--max-steps",
            "100000",
        ),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, pid = time.time() + 180, None
        while pid is None or not pid_alive(pid):
            assert proc.poll() is None, (
                f"kaizen exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
            assert time.time() < deadline, "the runner never started"
            time.sleep(0.1)
            pid = _runner_pid(tmp_path)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    deadline = time.time() + 30
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), "the runner outlived the kaizen command that was terminated"
