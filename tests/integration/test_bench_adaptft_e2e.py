"""``kaizen bench adaptft --preset tiny`` end to end through the CLI: three real stages, the three arms.

The tiny preset runs the whole protocol on a 2-layer random Llama (a few minutes on 2 CPU cores):
v1 trained and cached, logs produced by running each arm's production model, ingested, the agent's
repair and the naive retrain, held-out scoring. The scores are meaningless (a random model answers
no label); the structure, the stage sizes and the poison counts are what is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kaizen.workflows.bench.adaptft.arms import STAGE_KEYS
from kaizen.workflows.bench.adaptft.prepare import PRESETS
from kaizen.workflows.bench.perturb import STAGE_POISON_RATES, poison_count


def test_tiny_preset_runs_three_stages_through_the_cli(tmp_path: Path, smollm_dir: Path) -> None:
    out = tmp_path / "bench"
    kaizen = str(Path(sys.executable).parent / "kaizen")
    proc = subprocess.run(
        [kaizen, "bench", "adaptft", "--scenario", "clinc", "--preset", "tiny", "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert "stage 3 done" in proc.stderr  # progress goes to stderr, stdout is the JSON alone
    assert "[adaptft " in proc.stderr and "\\[" not in proc.stderr  # printed as is, not markup-escaped

    stages = data["stages"]
    assert [s["stage"] for s in stages] == [1, 2, 3]
    for s in stages:
        assert tuple(s) == STAGE_KEYS
        assert 0.0 <= s["best"] <= 1.0 and 0.0 <= s["naive"] <= 1.0
        assert abs(s["gap"] - (s["best"] - s["naive"])) < 1e-3
        assert 0.0 <= s["gap_p"] <= 1.0
        assert isinstance(s["regressions"], int) and s["regressions"] >= 0
    assert (
        data["scenario"] == "clinc"
        and data["preset"] == "tiny"
        and data["poison_rates"] == list(STAGE_POISON_RATES)
    )

    n = PRESETS["tiny"].per_stage
    details = data["details"]
    assert [d["poisoned"] for d in details] == [poison_count(n, r) for r in STAGE_POISON_RATES]
    assert [d["heldout"] for d in details] == [3, 6, 9]  # the union of the stages' 30 % test splits
    for d in details:
        pair = d["agent_vs_naive"]  # the discordant pairs behind the gap
        assert pair["agent_only_right"] - pair["naive_only_right"] == round(
            (stages[d["stage"] - 1]["gap"]) * d["heldout"]
        )
        assert (d["n"], d["logs"], d["test"]) == (n, 7, 3)
        assert d["arms"]["agent"]["imported"] == d["arms"]["naive"]["imported"] == 7
        assert d["arms"]["agent"]["candidates"], "the agent trained no candidate"  # so `first` is a score
        assert d["arms"]["naive"]["trained"]  # the naive arm retrains every stage and promotes anyway
    assert all(s["first"] is not None for s in stages)
    assert details[-1]["naive_production"] == details[-1]["arms"]["naive"]["trained"]

    # Both arms saw the same inputs; only the naive arm's feedback was corrupted.
    for k in (1, 2, 3):
        agent = [json.loads(x) for x in (out / "logs" / f"stage{k}-agent.jsonl").read_text().splitlines()]
        naive = [json.loads(x) for x in (out / "logs" / f"stage{k}-naive.jsonl").read_text().splitlines()]
        assert [r["messages"] for r in agent] == [r["messages"] for r in naive]
        assert not any("metadata" in r for r in agent + naive), "the truth is never in what kaizen ingests"
    keys = {
        arm: [json.loads(x) for x in (out / "logs" / f"answer-key-{arm}.jsonl").read_text().splitlines()]
        for arm in ("agent", "naive")
    }
    assert not any(n.startswith("naive:") for k in keys["agent"] for n in k["noise"])
    assert any(n.startswith("naive:") for k in keys["naive"] for n in k["noise"])
    for s in stages:  # the oracle arm ran and scored; captured is a ratio or n/a
        assert 0.0 <= s["oracle"] <= 1.0 and (s["captured"] is None or isinstance(s["captured"], float))

    saved = json.loads((out / "results.json").read_text())
    assert saved["stages"] == stages
    png = Path(data["plot_path"])
    assert png.parent == out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "agent" / ".kaizen" / "kaizen.db").exists() and (
        out / "naive" / ".kaizen" / "kaizen.db"
    ).exists()
