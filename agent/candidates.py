"""Making a candidate version: one training job (or a rollback) registered with its lineage.

Shared by the train, recover and refit nodes. Every step is safe to re-run after a kill: the job
resumes or adopts its runner, and a version already registered under the step's name is reused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kaizen.agent.context import RunContext, run_dir
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.schema import EvalItem
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import LoraSpec
from kaizen.tools.versions import build_job, progress_printer, register_trained


def version_name(state: RepairState, step: str) -> str:
    return f"{state['task']}-{state['run_id'][:8]}-i{step}"


def train_candidate(
    state: RepairState,
    c: RunContext,
    items: list[EvalItem],
    *,
    step: str,
    start: Any,
    from_adapter: bool,
    p: Plan,
    skill_version: int | None,
    epochs: float | None = None,
    learning_rate: float | None = None,
    min_steps: int | None = None,
    train_items_path: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train ``items`` from ``start`` (continuing its adapter when ``from_adapter``); returns (version, result)."""
    from kaizen.tools.skills import get_skill

    ws = c.workspace
    task = ws.store.get_task(state["task"])
    extra = dict(c.train_overrides)
    epochs = epochs if epochs is not None else p.epochs
    steps = math.ceil(len(items) / p.batch_size) * epochs
    if steps < (min_steps if min_steps is not None else p.min_steps):
        extra.setdefault("max_steps", min_steps if min_steps is not None else p.min_steps)
    # A fresh adapter on the base needs the full LoRA rate; continuing one, the plan's gentler rate.
    lr = (
        learning_rate
        if learning_rate is not None
        else (p.learning_rate if from_adapter else 2 * p.learning_rate)
    )
    job = build_job(
        ws,
        task,
        items,
        kind="sft",
        start=start,
        job_dir=run_dir(state).job(step),
        from_incumbent=from_adapter,
        skill=get_skill(ws.store, task.name, skill_version) if skill_version else None,
        epochs=epochs,
        learning_rate=lr,
        batch_size=p.batch_size,
        lora=LoraSpec(r=p.lora_r, alpha=2 * p.lora_r, top_layers=p.top_layers),
        **extra,
    )
    c.say(
        f"train [{step}]: {len(items)} examples, {epochs:g} epochs, lr {lr:g}, "
        f"{'continuing ' + start.name if from_adapter else 'fresh LoRA on the base'}"
    )
    result = run_job(job, progress_printer() if c.progress else None)
    version = register_trained(
        ws,
        task,
        job,
        result,
        name=version_name(state, step),
        parent=start,
        items=items,
        train_items_path=train_items_path,
        holds_full_data=not from_adapter,
    )
    return version, result


def train_event(
    step: str, version: Any, result: dict[str, Any], job_dir: Path, **more: Any
) -> dict[str, Any]:
    return {
        "step": step,
        "version": version.name,
        "steps": result.get("steps"),
        "train_tokens": result.get("train_tokens"),
        "tokens_per_s": result.get("tokens_per_s"),
        "seconds": result.get("train_runtime_s"),
        "metrics_path": str(job_dir / "metrics.jsonl"),
        **more,
    }
