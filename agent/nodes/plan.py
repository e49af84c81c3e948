"""plan: choose this iteration's data mix, hyper-parameters and training kind (from the last verdict, if any)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, event
from kaizen.agent.state import Diagnosis, Plan, RepairState


def last_verdict(state: RepairState) -> dict[str, Any] | None:
    """The verdict the next plan learns from.

    A passing step (the candidate or one of its recoveries) is the working incumbent: its verdict. When
    every step failed, the *recipe's* verdict: a recovery's regressions (say, GRPO from the incumbent breaking
    other answers) say nothing about the recipe's learning rate or replay share, which the plan changes.

    >>> own = {"passed": False, "new_regressions": 5, "iteration": 1, "step": "1"}
    >>> failed = {"passed": False, "new_regressions": 9, "iteration": 1, "step": "1r3"}
    >>> last_verdict({"iteration": 1, "verdict": failed, "recipe_verdict": own})["step"]
    '1'
    >>> last_verdict({"iteration": 1, "verdict": {"passed": True, "step": "1r1"}, "recipe_verdict": own})["step"]
    '1r1'
    >>> last_verdict({"iteration": 2, "verdict": {"passed": False}, "recipe_verdict": own})  # not this iteration's
    {'passed': False}
    """
    last, own = state.get("verdict"), state.get("recipe_verdict")
    if last is not None and not last.get("passed") and own and own.get("iteration") == state.get("iteration"):
        return own
    return last


def plan(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    previous = Plan.model_validate(state["plan"]) if state.get("plan") else None
    iteration = state.get("iteration", 0) + 1
    p = c.brain.plan(iteration, diag, last_verdict(state), previous)
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
