"""The naive baseline runs end to end (tiny model: seconds) and speaks the agent's --json shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

AGENT_KEYS = {
    "run_id",
    "status",
    "promoted",
    "verdict",
    "iterations",
    "before",
    "after",
    "new_regressions",
    "fixed",
    "excluded_suspect",
}


def test_naive_strategy_trains_on_everything_and_promotes(tmp_path: Path, tiny_llama_dir: Path) -> None:
    kaizen = str(Path(sys.executable).parent / "kaizen")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [kaizen, "-w", str(tmp_path), *args], capture_output=True, text=True, timeout=600
        )

    assert run("init", str(tmp_path)).returncode == 0
    assert (
        run("task", "add", "intents", "--kind", "classification", "--labels", "balance,transfer").returncode
        == 0
    )
    assert (
        run(
            "models", "add", "tiny", "--path", str(tiny_llama_dir), "--task", "intents", "--promote"
        ).returncode
        == 0
    )
    logs = tmp_path / "logs.jsonl"
    lines = []
    for i in range(6):
        lines.append(
            {
                "messages": [{"role": "user", "content": f"what is my balance {i}"}],
                "output": "transfer",
                "feedback": {"verdict": "fail", "correction": "balance"},
            }
        )
        lines.append(
            {
                "messages": [{"role": "user", "content": f"send money to bob {i}"}],
                "output": "transfer",
                "feedback": {"verdict": "pass"},
            }
        )
    lines.append(
        {
            "messages": [{"role": "user", "content": "what size wipers fit my car"}],
            "output": "balance",
            "feedback": {"verdict": "fail", "correction": "not-a-label"},
        }
    )  # poison: naive trains on it anyway
    logs.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert run("ingest", str(logs), "--task", "intents").returncode == 0
    out = run("repair", "--task", "intents", "--strategy", "naive", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert AGENT_KEYS <= set(summary)
    # the agent's timing shape: a reader of `kaizen repair --json` needs one code path for both strategies
    assert {"total", "by_phase", "by_step"} <= set(summary["seconds"])
    assert set(summary["seconds"]["by_phase"]) == {"train", "evaluate"}
    assert summary["promoted"] is True and summary["excluded_suspect"] == []
    models = json.loads(run("models", "list", "--task", "intents", "--json").stdout)
    prod = [m for m in models if "production" in m["aliases"]][0]
    assert prod["name"] == summary["candidate"] and prod["parent"] == "tiny"
    train = [
        json.loads(line) for line in (Path(prod["recipe"]["job_dir"]) / "data.jsonl").read_text().splitlines()
    ]
    assert len(train) == 7  # every correction, the poisoned one included
    report = Path(summary["report_path"])
    assert report.exists() and report.with_suffix(".html").exists()
