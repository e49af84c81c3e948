"""train: LoRA SFT through the model tools; safe to re-run (the job resumes or adopts its runner)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kaizen.agent.context import event, progress, run_dir, workspace
from kaizen.agent.state import Plan
from kaizen.tools.data import load_items
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import LoraSpec
from kaizen.tools.versions import build_job, progress_printer, register_trained
from langchain_core.runnables import RunnableConfig


def continues_incumbent(p: Plan, incumbent: Any) -> bool:
    """Continue the incumbent's adapter, or retrain from the base on the accumulated data?"""
    if incumbent.adapter_path is None:
        return False
    if p.start == "auto":
        return not holds_full_data(incumbent)
    return p.start == "incumbent"


def holds_full_data(version: Any) -> bool:
    """kaizen trained this version from its base on data it still has (so it can retrain it)."""
    path = (version.recipe or {}).get("train_items_path")
    return bool(version.recipe.get("holds_full_data")) and bool(path) and Path(path).exists()


def _skill_fix(state: dict[str, Any], config: RunnableConfig, task: Any) -> int | None:
    """Ask the brain for a minimal skill edit aimed at the training failures; store it as a new version."""
    from kaizen.agent.context import brain
    from kaizen.tools.skills import get_skill, save_skill

    ws = workspace(config)
    current = get_skill(ws.store, task.name, state["incumbent_skill"]) if state.get("incumbent_skill") else None
    failures_path = Path(state["splits"]["train_failures"])
    failures = load_items(failures_path, task) if failures_path.stat().st_size else []
    new = brain(config).propose_skill(task, current, failures)
    if new is None:
        return None
    saved = save_skill(ws.store, task.name, new, parent=current.version if current else None)
    progress(config, f"train: skill {saved.version} written by the brain (parent {current.version if current else 'none'})")
    return saved.version


def train(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    ws = workspace(config)
    task = ws.store.get_task(state["task"])
    p = Plan.model_validate(state["plan"])
    incumbent = ws.store.get_model_version(state["incumbent"])
    skill_v = state.get("incumbent_skill")
    if p.fix in ("skill", "both"):
        new_skill = _skill_fix(state, config, task)
        if new_skill is None:
            progress(config, "train: the brain proposed no usable skill edit; training weights instead")
        elif p.fix == "skill":  # no new weights: the candidate is the incumbent under the new skill
            return {"candidate": incumbent.name, "candidate_skill": new_skill,
                    "events": [event("train", iteration=state["iteration"], version=incumbent.name, skill=new_skill, steps=0,
                                     train_tokens=0)]}
        skill_v = new_skill or skill_v
    items = load_items(Path(state["splits"]["train"]), task)
    job_dir = run_dir(state) / f"iter-{state['iteration']}" / "job"
    from_incumbent = continues_incumbent(p, incumbent)
    extra = dict(config["configurable"].get("train_overrides") or {})
    steps = math.ceil(len(items) / p.batch_size) * p.epochs
    if steps < p.min_steps:
        extra.setdefault("max_steps", p.min_steps)
    from kaizen.tools.skills import get_skill

    job = build_job(ws, task, items, kind="sft", start=incumbent, job_dir=job_dir, from_incumbent=from_incumbent,
                    skill=get_skill(ws.store, task.name, skill_v) if skill_v else None,
                    # A fresh adapter on the base needs the full LoRA rate; continuing one, the plan's gentler rate.
                    epochs=p.epochs, learning_rate=p.learning_rate if from_incumbent else 2 * p.learning_rate,
                    batch_size=p.batch_size,
                    lora=LoraSpec(r=p.lora_r, alpha=2 * p.lora_r, top_layers=p.top_layers), **extra)
    progress(config, f"train: {len(items)} examples, {p.epochs:g} epochs, lr {p.learning_rate:g}, "
                     f"{'from the incumbent adapter' if from_incumbent else 'fresh LoRA on the base'}")
    result = run_job(job, progress_printer() if config["configurable"].get("progress") else None)
    name = f"{task.name}-{state['run_id'][:8]}-i{state['iteration']}"
    version = register_trained(ws, task, job, result, name=name, parent=incumbent, items=items,
                               train_items_path=state["splits"]["train"], holds_full_data=not from_incumbent)
    return {
        "candidate": version.name, "candidate_skill": skill_v,
        "train_tokens_used": state.get("train_tokens_used", 0) + int(result.get("train_tokens") or 0),
        "events": [event("train", iteration=state["iteration"], version=version.name, steps=result["steps"],
                         train_tokens=result["train_tokens"], tokens_per_s=result["tokens_per_s"],
                         seconds=result["train_runtime_s"], metrics_path=str(job_dir / "metrics.jsonl"))],
    }
