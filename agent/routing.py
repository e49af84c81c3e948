"""Pure routing functions: the next edge from the state alone."""

from __future__ import annotations

from typing import Literal

from kaizen.agent.policy import budget_left, only_regressions, plateaued, stop_after_pass
from kaizen.agent.state import RepairState

Finish = Literal["refit", "promote", "rollback"]
# A target suite this small cannot show a fix (a 2-item suite "gains +0.000" whatever the candidate learned):
# the loop's evidence is then inconclusive, not negative, and the refit is judged on the final slice instead.
THIN_TARGET = 5


def finish(state: RepairState) -> Finish:
    """The loop is over: refit on all the evidence when there is a final slice to verify it on — after a
    passing candidate, when a candidate at least showed the failures are learnable, or when the target suite
    was too thin to show anything — else decide."""
    can_refit = state.get("refit_enabled", True) and not state.get("refit_done") and state.get("final_n", 0)
    thin = state.get("target_n", THIN_TARGET) < THIN_TARGET
    if can_refit and (state.get("best") or state.get("fix_shown") or thin):
        return "refit"
    return "promote" if state.get("best") else "rollback"


def after_refit(state: RepairState) -> Literal["promote", "rollback"]:
    """The refit (verified) or the loop's best is promoted; with neither, production stays."""
    return "promote" if state.get("best") else "rollback"


def after_gate(state: RepairState) -> Literal["plan", "recover", "refit", "promote", "rollback"]:
    """Iterate from a passing candidate until τ, a plateau or the budget; a candidate that only fell below the
    working incumbent is a plateau too; recover a candidate that only broke too much; otherwise iterate with a
    changed plan while budget lasts; then finish."""
    verdict = state.get("verdict") or {}
    if state.get("step") == "refit":
        return "promote" if state.get("best") else "rollback"
    if verdict.get("passed"):
        if stop_after_pass(state, state.get("target_score", 0.95), state.get("plateau", 0.02)):
            return finish(state)
        return "plan"
    if plateaued(verdict):
        return finish(state)
    if only_regressions(verdict) and len(state.get("recovery") or []) < len(state.get("recoveries", [])):
        return "recover"
    return finish(state) if budget_left(state) else "plan"


def after_diagnose(state: RepairState) -> Literal["plan", "rollback"]:
    """Nothing fixable (no usable corrected failures) → stop before spending anything."""
    return "plan" if state.get("has_fixable", True) else "rollback"


def after_synthesize(state: RepairState) -> Literal["train", "refit", "promote", "rollback"]:
    """An empty training set (everything was held out or decontaminated) cannot make a candidate."""
    return finish(state) if state.get("no_train_data") else "train"
