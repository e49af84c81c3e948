"""``kaizen bench triage``: how well triage tells bad feedback from good, against answer keys.

Thresholds are **chosen on AdaptFT stage 1** (CLINC banking, 15 % poison) and **reported** on stages 2–3
(25 %, 40 %) and on the support-intents demo's real logs — never tuned on what they are judged on. AdaptFT
stages here are the benchmark's own seeded inputs, perturbations and feedback; the deployed model's
answers are simulated (right with probability 0.6, seeded), because triage reads only inputs, outputs,
verdicts and corrections — the labels around a correction, not the model.

Run: ``kaizen bench triage [--per-stage 300] [--json]`` (CPU, about a minute: embeddings of a few
hundred short inputs).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kaizen.tools.answer_key import KeyEntry, inferred_quality, triage_quality
from kaizen.tools.store import TraceView

DEMO = Path(__file__).resolve().parents[2] / "examples" / "support-intents" / "data"
GRID_OWN = (0.05, 0.1, 0.15, 0.2)
GRID_TOP = (0.4, 0.5, 0.6, 0.7)


def _view(rec: dict[str, Any], task: str) -> TraceView:
    fb = rec.get("feedback") or {}
    return TraceView(
        id=rec["id"],
        task=task,
        messages=rec["messages"],
        output=rec["output"],
        verdict=fb.get("verdict"),
        correction=fb.get("correction"),
        reason=fb.get("reason"),
        feedback_source=fb.get("source"),
        metadata={},
        timestamp=None,
        model_version=rec.get("model_version"),
    )


def adaptft_stage_logs(
    per_stage: int, seed: int = 0
) -> tuple[Any, list[tuple[list[TraceView], dict[str, KeyEntry]]]]:
    """(task, [(traces, answer key) per stage]) for the CLINC scenario, the agent arm's feedback."""
    from kaizen.workflows.bench.adaptft.feedback import log_records, split_truth
    from kaizen.workflows.bench.adaptft.scenarios import clinc_scenario
    from kaizen.workflows.bench.adaptft.stages import build_stages

    sc = clinc_scenario(v1_per_label=12, seed=11 + seed)
    rnd = random.Random(seed)
    out = []
    for st in build_stages(sc, per_stage, seed):
        outputs = [
            it.gold if rnd.random() < 0.6 else rnd.choice([x for x in sc.labels if x != it.gold])
            for it in st.logs
        ]
        recs = log_records(sc, st.logs, outputs, arm="agent", stage=st.index, seed=seed, model_version="v1")
        logs, key = split_truth(sc, recs, st.logs)
        out.append(
            ([_view(r, sc.task.name) for r in logs], {k["id"]: KeyEntry.model_validate(k) for k in key})
        )
    return sc.task, out


def demo_logs() -> tuple[Any, list[TraceView], dict[str, KeyEntry]]:
    from kaizen.tools.answer_key import load_answer_key
    from kaizen.tools.schema import TaskSpec
    from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice

    task = TaskSpec(
        name="support-intents",
        kind="classification",
        labels=load_slice()["labels"],
        system_prompt=SYSTEM_PROMPT,
    )
    recs = [json.loads(x) for x in (DEMO / "logs.jsonl").read_text().splitlines() if x.strip()]
    return task, [_view(r, task.name) for r in recs], load_answer_key(DEMO / "answer_key.jsonl")


@contextmanager
def thresholds(own_max: float, top_min: float) -> Iterator[None]:
    from kaizen.agent import triage as agent_triage

    saved = agent_triage.EMB_OWN_MAX, agent_triage.EMB_TOP_MIN
    agent_triage.EMB_OWN_MAX, agent_triage.EMB_TOP_MIN = own_max, top_min
    try:
        yield
    finally:
        agent_triage.EMB_OWN_MAX, agent_triage.EMB_TOP_MIN = saved


def score(task: Any, traces: list[TraceView], key: dict[str, KeyEntry]) -> dict[str, Any]:
    from kaizen.agent.rule_brain import RuleBrain

    diag = RuleBrain().diagnose(task, traces)
    return triage_quality(diag.suspect_ids, key, traces) | {"inferred": inferred_quality(diag.inferred, key)}


def choose(
    task: Any, traces: list[TraceView], key: dict[str, KeyEntry], min_precision: float = 0.9
) -> dict[str, Any]:
    """The (own_max, top_min) with the best recall at precision ≥ ``min_precision`` (ties: the stricter)."""
    best: dict[str, Any] | None = None
    grid = []
    for own in GRID_OWN:
        for top in GRID_TOP:
            with thresholds(own, top):
                q = score(task, traces, key)
            grid.append({"own_max": own, "top_min": top, **q})
            ok = (q["precision"] or 0) >= min_precision
            if ok and (best is None or (q["recall"] or 0) > (best["recall"] or 0)):
                best = grid[-1]
    return {"chosen": best, "grid": grid}


def bench_triage(per_stage: int = 300, seed: int = 0) -> dict[str, Any]:
    from kaizen.agent import triage as agent_triage

    task, stages = adaptft_stage_logs(per_stage, seed)
    pick = choose(task, *stages[0])
    chosen = pick["chosen"] or {"own_max": agent_triage.EMB_OWN_MAX, "top_min": agent_triage.EMB_TOP_MIN}
    rows = []
    with thresholds(chosen["own_max"], chosen["top_min"]):
        for i, (traces, key) in enumerate(stages, 1):
            rows.append(
                {
                    "set": f"adaptft stage {i}" + (" (chosen here)" if i == 1 else ""),
                    **score(task, traces, key),
                }
            )
        dtask, dtraces, dkey = demo_logs()
        rows.append({"set": "support-intents demo (real v1 outputs)", **score(dtask, dtraces, dkey)})
    defaults = {"own_max": agent_triage.EMB_OWN_MAX, "top_min": agent_triage.EMB_TOP_MIN}
    return {
        "chosen": {k: chosen[k] for k in ("own_max", "top_min")},
        "module_defaults": defaults,
        "rows": rows,
        "grid": pick["grid"],
        "per_stage": per_stage,
        "seed": seed,
    }
