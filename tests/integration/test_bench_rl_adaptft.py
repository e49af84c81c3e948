"""``kaizen bench rl --scenario adaptft``: an AdaptFT stage's logs as the RL benchmark's scenario.

The tiny preset (random 2-layer Llama): v1 trained and cached, its answers on the stage's logged inputs
written as the staged benchmark writes them, the truth apart, the gold set the three stages' held-out union.
"""

from __future__ import annotations

import json
from pathlib import Path

from kaizen.tools.logs import parse_traces
from kaizen.workflows.bench.adaptft.prepare import PRESETS


def test_an_adaptft_stage_is_a_bench_rl_scenario(tmp_path: Path, smollm_dir: Path) -> None:
    from kaizen.workflows.bench.adaptft.rl_scenario import adaptft_rl_scenario

    said: list[str] = []
    sc = adaptft_rl_scenario(tmp_path / "s", stage=2, preset="tiny", say=said.append)
    n = PRESETS["tiny"].per_stage
    traces = [t for _, t in parse_traces(sc.logs).traces]
    assert len(traces) == n * 7 // 10  # the stage's logged 70 %
    assert sc.v1 is not None and sc.v1.is_dir() and sc.task.kind == "classification"
    # What kaizen ingests carries none of the truth; the answer key (apart) covers every logged trace.
    text = sc.logs.read_text()
    assert '"adaptft"' not in text and '"poison"' not in text
    assert sc.answer_key is not None
    key_ids = {json.loads(x)["id"] for x in sc.answer_key.read_text().splitlines()}
    assert {t.id for t in traces} <= key_ids
    gold = [json.loads(x) for x in sc.gold.read_text().splitlines()]
    assert len(gold) == 3 * (n - n * 7 // 10)  # the three stages' held-out splits, never logged
    assert not {g["messages"][0]["content"] for g in gold} & {t.messages[0].content for t in traces}
    # A second call reuses the deployed logs (v1 answers once).
    before = sc.logs.stat().st_mtime_ns
    again = adaptft_rl_scenario(tmp_path / "s", stage=2, preset="tiny", say=said.append)
    assert again.logs == sc.logs and sc.logs.stat().st_mtime_ns == before
    assert sum("v1 answers" in m for m in said) == 1
