"""plan: choose this iteration's data mix, hyper-parameters and training kind (from the last verdict, if any)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, event
from kaizen.agent.state import Diagnosis, Plan, RepairState


def plan(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    previous = Plan.model_validate(state["plan"]) if state.get("plan") else None
    iteration = state.get("iteration", 0) + 1
    p = c.brain.plan(iteration, diag, state.get("verdict"), previous)
    if previous is None and c.plan_defaults:
        # The run's own first-plan settings (kaizen repair --kind, benchmarks), validated like any plan.
        p = Plan.model_validate(p.model_dump() | c.plan_defaults)
        if p.kind != "sft":
            p.rationale.append(
                f"training kind {p.kind} (run setting): "
                + ("GRPO" if p.kind == "grpo" else "SFT, then GRPO continuing it")
                + f", {p.grpo_steps} GRPO steps rewarded by the task's verifier"
            )
    c.say(f"plan (iteration {iteration}): " + "; ".join(p.rationale))
    return {
        "plan": p.model_dump(),
        "iteration": iteration,
        "candidate": None,
        "candidate_skill": None,
        "recovery": [],
        "step": str(iteration),
        "events": [event("plan", iteration=iteration, kind=p.kind, rationale=p.rationale)],
    }
