"""Cold start end to end on the real default model: a CLINC150 slice with seed data only, through
the CLI. The winner must beat the base model on held-out examples it never trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kaizen.tools.data import write_items
from kaizen.workflows.bench.clinc import rows, to_items

pytestmark = pytest.mark.slow
LABELS = ["balance", "transfer", "freeze_account", "card_declined"]


def test_cold_start_with_seed_data_beats_the_base(tmp_path: Path, smollm_dir: Path) -> None:
    kaizen = str(Path(sys.executable).parent / "kaizen")
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: bank\nkind: classification\ndescription: Route banking support messages.\n"
        f"labels: [{', '.join(LABELS)}]\n"
        "system_prompt: Classify the banking request. Reply with the intent label only.\n"
    )
    seeds = tmp_path / "seed.jsonl"
    write_items(seeds, to_items(rows("train", LABELS, per_label=16, seed=3)))
    assert subprocess.run([kaizen, "init", str(tmp_path)], capture_output=True).returncode == 0
    out = subprocess.run(
        [
            kaizen,
            "-w",
            str(tmp_path),
            "cold-start",
            "--task-file",
            str(task),
            "--seed-data",
            str(seeds),
            "--max-attempts",
            "1",
            "--approve",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout)
    print(
        f"\ncold start: base {s['base']['score']:.3f} → {s['best']['score']:.3f} on {s['n_eval']} held-out examples "
        f"({s['n_train']} trained)"
    )
    assert s["status"] == "promoted" and s["promoted"]
    assert s["best"]["score"] > s["base"]["score"]
    run_dir = Path(s["report_path"]).parent
    train = {json.loads(x)["id"] for x in (run_dir / "train.jsonl").read_text().splitlines()}
    held = {json.loads(x)["id"] for x in (run_dir / "eval.jsonl").read_text().splitlines()}
    assert held and not train & held
    assert (run_dir / "report.html").read_text().count(s["best"]["version"]) >= 1
    models = json.loads(
        subprocess.run(
            [kaizen, "-w", str(tmp_path), "models", "list", "--task", "bank", "--json"],
            capture_output=True,
            text=True,
        ).stdout
    )
    prod = next(m for m in models if "production" in m["aliases"])
    assert prod["name"] == s["best"]["version"]
    shown = subprocess.run(
        [kaizen, "-w", str(tmp_path), "runs", "show", s["run_id"], "--json"], capture_output=True, text=True
    )
    assert json.loads(shown.stdout)["status"] == "promoted"
