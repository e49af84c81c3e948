"""train: this iteration's candidate — LoRA SFT, GRPO or SFT then GRPO (``Plan.kind``), or a prompt-skill edit.

An iteration after a passing one continues that candidate (the run's working incumbent); the first
continues production's adapter or retrains from the base on the accumulated data (``Plan.start``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.candidates import train_candidate, train_event
from kaizen.agent.context import RunContext, event, run_dir
from kaizen.agent.policy import continues_incumbent
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.data import load_items


def _skill_fix(state: RepairState, c: RunContext, task: Any) -> int | None:
    """Ask the brain for a minimal skill edit aimed at the training failures; store it as a new version."""
    from kaizen.tools.skills import get_skill, save_skill

    ws = c.workspace
    inc_skill = state.get("incumbent_skill")
    current = get_skill(ws.store, task.name, inc_skill) if inc_skill else None
    failures_path = Path(state["splits"]["train_failures"])
    failures = load_items(failures_path, task) if failures_path.stat().st_size else []
    new = c.brain.propose_skill(task, current, failures)
    if new is None:
        return None
    saved = save_skill(ws.store, task.name, new, parent=current.version if current else None)
    c.say(
        f"train: skill {saved.version} written by the brain (parent {current.version if current else 'none'})"
    )
    return saved.version


def train(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    p = Plan.model_validate(state["plan"])
    step = state.get("step") or str(state["iteration"])
    working = state.get("working")
    start = ws.store.get_model_version(working["candidate_version"] if working else state["incumbent"])
    skill_v = working.get("candidate_skill") if working else state.get("incumbent_skill")
    if p.fix in ("skill", "both"):
        new_skill = _skill_fix(state, c, task)
        if new_skill is None:
            c.say("train: the brain proposed no usable skill edit; training weights instead")
        elif p.fix == "skill":  # no new weights: the candidate is the start's weights under the new skill
            return {
                "candidate": start.name,
                "candidate_skill": new_skill,
                "events": [
                    event(
                        "train",
                        iteration=state["iteration"],
                        step=step,
                        version=start.name,
                        skill=new_skill,
                        steps=0,
                        train_tokens=0,
                    )
                ],
            }
        skill_v = new_skill or skill_v
    items = load_items(Path(state["splits"]["train"]), task)
    if p.kind == "grpo":
        # RL continues what the start knows (the incumbent's adapter, or a fresh LoRA on a bare base):
        # retraining "from the base on the accumulated data" is an SFT idea.
        from_adapter = bool(working) or (start.adapter_path is not None and p.start != "base")
    else:
        from_adapter = bool(working) or continues_incumbent(p, start)
    version, result = train_candidate(
        state,
        c,
        items,
        step=step,
        start=start,
        from_adapter=from_adapter,
        p=p,
        skill_version=skill_v,
        kind=p.kind,
        train_items_path=state["splits"]["train"],
    )
    return {
        "candidate": version.name,
        "candidate_skill": skill_v,
        "train_tokens_used": state.get("train_tokens_used", 0) + int(result.get("train_tokens") or 0),
        "events": [
            event(
                "train",
                iteration=state["iteration"],
                **train_event(step, version, result, run_dir(state).job(step), kind=p.kind),
            )
        ],
    }
