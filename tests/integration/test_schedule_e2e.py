"""The scheduled loop end to end on the tiny model: a tick that triggers a real repair, a tick that
then skips (cooldown), the history in `kaizen ticks list`, and a repair killed mid-training that
the next tick resumes instead of starting over."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kaizen.tools.workspace import find_workspace
from kaizen.workflows.schedule import job as schedule

# Near-identical inputs: every training candidate is a near-duplicate of a held-out one, so the
# repair must end cleanly with "no training examples left" (it used to crash on the empty file).
DUP_LOGS = [
    (
        {
            "messages": [{"role": "user", "content": f"what is my balance {i}"}],
            "output": "transfer",
            "feedback": {"verdict": "fail", "correction": "balance"},
        }
    )
    for i in range(6)
] + [
    (
        {
            "messages": [{"role": "user", "content": f"send money to bob {i}"}],
            "output": "transfer",
            "feedback": {"verdict": "pass"},
        }
    )
    for i in range(6)
]


def clinc_logs() -> list[dict]:
    from kaizen.workflows.bench.clinc import rows

    out = []
    for i, (text, gold) in enumerate(rows("train", ["balance", "transfer"], per_label=8, seed=2)):
        fb = {"verdict": "pass"} if i % 2 else {"verdict": "fail", "correction": gold}
        out.append(
            {
                "messages": [{"role": "user", "content": text}],
                "output": gold if i % 2 else "other",
                "feedback": fb,
            }
        )
    return out


def _setup(tmp_path: Path, tiny_llama_dir: Path, logs: list[dict]) -> tuple[list[str], Path]:
    kaizen = [str(Path(sys.executable).parent / "kaizen"), "-w", str(tmp_path)]
    for args in (
        ["init", str(tmp_path)],
        ["task", "add", "intents", "--kind", "classification", "--labels", "balance,transfer"],
        ["models", "add", "tiny", "--path", str(tiny_llama_dir), "--task", "intents", "--promote"],
    ):
        assert subprocess.run(kaizen + args, capture_output=True).returncode == 0
    src = tmp_path / "logs"
    src.mkdir()
    (src / "day1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in logs))
    return kaizen, src


def test_tick_triggers_a_repair_then_cools_down(tmp_path: Path, tiny_llama_dir: Path) -> None:
    kaizen, src = _setup(tmp_path, tiny_llama_dir, DUP_LOGS)
    out = subprocess.run(
        kaizen + ["tick", "--task", "intents", "--source", str(src), "--min-new-failures", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode in (0, 3), out.stderr[-3000:]
    t1 = json.loads(out.stdout)
    assert t1["status"] == "triggered" and t1["ingested"]["imported"] == 12 and t1["run_id"]
    assert t1["decision"]["run_status"] == "not_promoted"
    shown = json.loads(
        subprocess.run(
            kaizen + ["runs", "show", t1["run_id"], "--json"], capture_output=True, text=True
        ).stdout
    )
    assert "no training examples left" in shown["verdict"]["reasons"][0]
    runs = json.loads(
        subprocess.run(kaizen + ["runs", "list", "--json"], capture_output=True, text=True).stdout
    )
    assert [r["run_id"] for r in runs] == [t1["run_id"]]
    out = subprocess.run(
        kaizen + ["tick", "--task", "intents", "--source", str(src), "--min-new-failures", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    t2 = json.loads(out.stdout)
    assert out.returncode == 0 and t2["status"] == "skipped" and t2["ingested"]["imported"] == 0
    assert t2["decision"]["reasons"][0].startswith("cooldown")
    ticks = json.loads(
        subprocess.run(kaizen + ["ticks", "list", "--json"], capture_output=True, text=True).stdout
    )
    assert [t["tick_id"] for t in ticks] == [t2["tick_id"], t1["tick_id"]]


def test_a_repair_killed_during_training_is_resumed_by_the_next_tick(
    tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, src = _setup(tmp_path, tiny_llama_dir, clinc_logs())
    ws = find_workspace(tmp_path)
    import kaizen.agent.candidates as train_node  # where the train step calls the runner

    real = train_node.run_job

    def killed(*a, **kw):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    monkeypatch.setattr(train_node, "run_job", killed)
    policy = {"source": str(src), "min_new_failures": 4}
    with pytest.raises(KeyboardInterrupt):
        schedule.tick(ws, "intents", overrides=policy)
    (t1,) = ws.store.list_ticks("intents")
    assert t1.status == "interrupted" and ws.store.get_run(t1.run_id).status == "interrupted"
    monkeypatch.setattr(train_node, "run_job", real)
    t2 = schedule.tick(ws, "intents", overrides=policy)
    assert t2.status == "triggered" and t2.run_id == t1.run_id and "resume" in t2.decision["reasons"][0]
    assert ws.store.get_run(t1.run_id).status in ("promoted", "not_promoted", "awaiting_approval")
    assert len(ws.store.list_runs("intents")) == 1
