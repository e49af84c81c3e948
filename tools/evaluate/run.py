"""Evaluate a model version on a set of examples and record the result.

``evaluate`` is the one function the CLI and the agent call. Inputs go through the task's
``render``; outputs are scored by ``metrics.compute_metrics``; the per-example outputs are written
as JSONL next to the store and an ``EvalResultRow`` points at them, so any two versions evaluated
on the same examples can later be compared example by example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from kaizen.tools.errors import ConfigError
from kaizen.tools.evaluate.metrics import compute_metrics
from kaizen.tools.schema import EvalItem, EvalReport, ExampleOutcome, TaskSpec, content_hash, render

Mode = Literal["auto", "generate", "score", "prefix"]
DEFAULT_MAX_NEW_TOKENS = {
    "classification": 12,
    "extraction": 128,
    "math": 256,
    "generation": 128,
    "code": 256,
}


def dataset_id(items: list[EvalItem]) -> str:
    return content_hash(sorted(it.id for it in items))


def pick_mode(task: TaskSpec, mode: Mode, backend: Any) -> str:
    """``score`` (label likelihood) needs a classification task and a backend that can score."""
    if mode == "auto":
        return "generate"
    if mode == "prefix":
        if task.kind != "classification" or not task.labels or not hasattr(backend, "classify_prefix"):
            return "generate"  # constrained decoding needs a label set and a local model: fall back, same for both sides
        return mode
    if mode == "score":
        if task.kind != "classification" or not task.labels:
            raise ConfigError("--mode score needs a classification task with labels")
        if not hasattr(backend, "score_labels"):
            raise ConfigError(f"the {backend.name} backend cannot score labels: use --mode generate")
    return mode


def evaluate(
    task: TaskSpec,
    items: list[EvalItem],
    backend: Any,
    *,
    model_version: str,
    outputs_path: Path,
    suite: str = "eval",
    mode: Mode = "auto",
    skill: Any = None,
    max_new_tokens: int | None = None,
    progress: Any = None,
) -> EvalReport:
    """Run ``backend`` on ``items`` and score them; writes per-example outputs to ``outputs_path``."""
    chats = [render(task, skill, it.messages) for it in items]
    chosen = pick_mode(task, mode, backend)
    if chosen == "score":
        outputs = backend.score_labels(chats, task.labels, progress=progress)
    elif chosen == "prefix":
        outputs = backend.classify_prefix(chats, task.labels, progress=progress)
    else:
        outputs = backend.generate(
            chats, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task.kind], progress=progress
        )
    m = compute_metrics(task.kind, outputs, [it.expected for it in items], task.labels, metric=task.metric)
    correct = m.pop("correct")
    outcomes = [
        ExampleOutcome(id=it.id, output=o, expected=it.expected, correct=c)
        for it, o, c in zip(items, outputs, correct, strict=True)
    ]
    outputs_path.parent.mkdir(parents=True, exist_ok=True)
    with outputs_path.open("w") as f:
        for oc in outcomes:
            f.write(json.dumps(oc.model_dump(), ensure_ascii=False, default=str) + "\n")
    decoding = backend.decoding() | {
        "mode": chosen,
        "max_new_tokens": max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task.kind],
    }
    return EvalReport(
        task=task.name,
        model_version=model_version,
        suite=suite,
        metric=m["metric"],
        score=float(m["score"]),
        n=len(items),
        metrics={k: v for k, v in m.items() if k not in ("score", "metric")},
        backend=backend.name,
        decoding=decoding,
        outputs_path=str(outputs_path),
        outcomes=outcomes,
    )
