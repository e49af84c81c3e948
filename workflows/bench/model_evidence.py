"""``kaizen bench triage --model-evidence DIR``: would the deployed model's own likelihoods catch bad feedback?

Confident learning (Northcutt et al., JAIR 2021) flags a given label when the model is confidently for
another one and below its usual confidence in the given one. The issue asked for it from the incumbent (and,
cross-fitted, from the candidate). This measures the incumbent's half on a scenario folder with a deployed
v1 (``scenario.json``, ``logs.jsonl``, ``answer_key.jsonl``, ``v1/``; the demo's, or one
``examples/weak-v1/build_data.py`` writes): for every correction, poisoned or genuine by the answer key,
whether triage already distrusts it, whether v1's likelihoods dispute it, and the rank v1 gives it.

The finding on the demo (README, "Triage"): v1 ranks many *genuine* corrections last — the intents it never
learned — so its disputes would mostly flag good feedback; kNN label consensus stays the triage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen.tools.answer_key import load_answer_key
from kaizen.tools.errors import DataError
from kaizen.tools.schema import TaskSpec, render


def _scenario(data: Path) -> tuple[TaskSpec, list[Any], dict[str, Any]]:
    from kaizen.workflows.bench.triage import _view

    need = [data / n for n in ("scenario.json", "logs.jsonl", "answer_key.jsonl", "v1")]
    if missing := [str(p) for p in need if not p.exists()]:
        raise DataError(
            f"--model-evidence: {', '.join(missing)} not found (a scenario folder with a v1 adapter)"
        )
    m = json.loads((data / "scenario.json").read_text())
    task = TaskSpec(
        name=m["task"], kind="classification", labels=m["labels"], system_prompt=m["system_prompt"]
    )
    recs = [json.loads(x) for x in (data / "logs.jsonl").read_text().splitlines() if x.strip()]
    return task, [_view(r, task.name) for r in recs], load_answer_key(data / "answer_key.jsonl")


def model_evidence(data: Path) -> dict[str, Any]:
    """Per kind of correction (poisoned / genuine): how many, caught by triage, disputed by v1, v1's ranks."""
    from kaizen.agent.rule_brain import RuleBrain
    from kaizen.tools.evaluate.backends import TransformersBackend
    from kaizen.tools.evaluate.metrics import normalize_label
    from kaizen.tools.label_noise import confident_votes
    from kaizen.tools.models import resolve_base

    task, traces, key = _scenario(data)
    labels = list(task.labels or [])
    flagged = RuleBrain().diagnose(task, traces).suspect_ids
    labeled = [t for t in traces if t.verdict in ("pass", "fail")]
    # what each trace says its label is (``gold``: the correction of a failure, the output of a pass)
    given = [normalize_label(t.gold or "", labels) for t in labeled]
    trusted = [None if t.id in flagged else g for t, g in zip(labeled, given, strict=True)]
    backend = TransformersBackend(resolve_base("smollm2-135m"), data / "v1")
    logprobs = backend.label_logprobs([render(task, None, t.messages) for t in labeled], labels)
    rows: dict[str, dict[str, Any]] = {
        k: {
            "corrections": 0,
            "caught_by_triage": 0,
            "disputed_by_v1": 0,
            "disputed_not_caught": 0,
            "ranks": [],
        }
        for k in ("poisoned", "genuine")
    }
    for i, t in enumerate(labeled):
        if t.verdict != "fail" or given[i] is None or t.id not in key:
            continue
        # the class thresholds come from the trusted labels; the query's own label is its correction
        vote = confident_votes(logprobs, labels, [*trusted[:i], given[i], *trusted[i + 1 :]], query=[i])[i]
        row = rows["poisoned" if key[t.id].bad_feedback else "genuine"]
        caught = t.id in flagged
        row["corrections"] += 1
        row["caught_by_triage"] += caught
        row["disputed_by_v1"] += vote.disputes
        row["disputed_not_caught"] += vote.disputes and not caught
        row["ranks"].append(vote.rank)
    for row in rows.values():
        row["ranks"] = sorted(row["ranks"])
        row["ranked_last"] = sum(1 for r in row["ranks"] if r == len(labels))
    return {"data": str(data), "labels": len(labels), "rows": rows}
