"""plan: choose this iteration's data mix and hyper-parameters (from the last verdict, if any)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.agent.context import brain, event, progress
from kaizen.agent.state import Diagnosis, Plan
from langchain_core.runnables import RunnableConfig


def plan(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    previous = Plan.model_validate(state["plan"]) if state.get("plan") else None
    iteration = state.get("iteration", 0) + 1
    p = brain(config).plan(iteration, diag, state.get("verdict"), previous)
    defaults = config["configurable"].get("plan_defaults") or {}
    if previous is None and defaults:
        p = p.model_copy(update=defaults)
    progress(config, f"plan (iteration {iteration}): " + "; ".join(p.rationale))
    return {"plan": p.model_dump(), "iteration": iteration, "candidate": None, "candidate_skill": None,
            "events": [event("plan", iteration=iteration, rationale=p.rationale)]}
