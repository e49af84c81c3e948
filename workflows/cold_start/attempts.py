"""One cold-start attempt: train a pipeline, evaluate it on the held-out set, record it in the run.

``job._search`` plans the attempts (``policy.next_attempt``); what is here runs one of them — a real
train-and-evaluate job whose directory resumes from its last checkpoint — and keeps its record in
``run.summary["attempts"]`` before the next step starts. The base model is evaluated the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools import registry
from kaizen.tools.data import write_items
from kaizen.tools.errors import KaizenError
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import Workspace
from kaizen.workflows.cold_start.policy import Attempt

Progress = Callable[[str], None]


def base_version(ws: Workspace, task: str) -> Any:
    return registry.base_of(ws.store, registry.resolve(ws.store, "production", task))


def run_attempt(
    ws: Workspace,
    run: RunRow,
    task: TaskSpec,
    att: Attempt,
    train: list[EvalItem],
    heldout: list[EvalItem],
    progress: Progress | None,
) -> None:
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec
    from kaizen.tools.versions import build_job, progress_printer, register_trained

    t0 = time.time()
    items = attempt_items(att, train)
    start_v = base_version(ws, task.name)
    if att.from_attempt is not None:
        start_v = ws.store.get_model_version(run.summary["attempts"][att.from_attempt]["version"])
    params = dict(att.params)
    params["lora"] = LoraSpec(**params.get("lora", {}))
    if att.strategy == "grpo":
        from kaizen.tools.train.rewards import rewards_for_kind

        params.setdefault("rewards", rewards_for_kind(task.kind))  # the task kind's verifier
    job_dir = Path(run.config["run_dir"]) / f"attempt-{att.index + 1}"
    try:
        job = build_job(
            ws,
            task,
            items,
            kind=att.strategy,
            start=start_v,
            job_dir=job_dir,
            from_incumbent=att.from_attempt is not None,
            **params,
        )
        result = run_job(job, progress_printer())
        write_items(job_dir / "items.jsonl", items)
        version = register_trained(
            ws,
            task,
            job,
            result,
            name=att.version or "",
            parent=start_v,
            items=items,
            train_items_path=str(job_dir / "items.jsonl"),
            holds_full_data=True,
        )
        report = evaluate_on(ws, run, task, version, heldout)
    except KaizenError as e:
        att = att.model_copy(update={"status": "failed", "error": str(e), "seconds": time.time() - t0})
        save_attempt(ws, run, att)
        say(progress, f"  attempt {att.index + 1} failed: {e}")
        return
    att = att.model_copy(
        update={
            "status": "done",
            "score": report.score,
            "metrics": small_metrics(report.metrics),
            "correct": report.correct_by_id,
            "train_tokens": int(result.get("train_tokens") or 0),
            "seconds": round(time.time() - t0, 1),
        }
    )
    save_attempt(ws, run, att)
    say(
        progress,
        f"  attempt {att.index + 1} ({att.name}): held-out {report.metric} = {report.score:.3f} "
        f"({att.train_tokens} training tokens, {att.seconds:.0f}s)",
    )


def attempt_items(att: Attempt, train: list[EvalItem]) -> list[EvalItem]:
    """The attempt's training set: rationale targets and oversampled labels applied to ``train``."""
    items = []
    for it in train:
        if att.rationale and it.metadata.get("rationale"):
            it = it.model_copy(update={"expected": it.metadata["rationale"]})
        items.append(it)
        for k in range(1, att.oversample.get(str(it.expected), 1)):
            items.append(it.model_copy(update={"id": f"{it.id}~{k}"}))
    return items


def evaluate_on(ws: Workspace, run: RunRow, task: TaskSpec, version: Any, items: list[EvalItem]) -> Any:
    from kaizen.tools.evaluate.run import dataset_id, evaluate
    from kaizen.tools.versions import make_backend, record_eval

    out = Path(run.config["run_dir"]) / "evals" / f"{version.name}.jsonl"
    report = evaluate(
        task, items, make_backend(ws, version), model_version=version.name, outputs_path=out, suite="heldout"
    )
    record_eval(ws, report, dataset_id(items), run_id=run.id)
    return report


def save_attempt(ws: Workspace, run: RunRow, att: Attempt) -> None:
    attempts = list(run.summary["attempts"])
    row = att.model_dump(mode="json")
    if att.index < len(attempts):
        attempts[att.index] = row
    else:
        attempts.append(row)
    run.summary = run.summary | {"attempts": attempts}
    ws.store.save_run(run)


def small_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("predictions",)}


def say(progress: Progress | None, msg: str) -> None:
    if progress:
        progress(msg)
