"""Pure routing functions: the next edge from the state alone."""

from __future__ import annotations

import time
from typing import Any, Literal


def budget_left(state: dict[str, Any]) -> str | None:
    """Why no further iteration may start (None when one may)."""
    if state.get("iteration", 0) >= state.get("max_iterations", 3):
        return f"max iterations ({state.get('max_iterations', 3)}) reached"
    if state.get("deadline") and time.time() >= state["deadline"]:
        return "wall-clock budget spent"
    if state.get("train_tokens_budget") and state.get("train_tokens_used", 0) >= state["train_tokens_budget"]:
        return "training-token budget spent"
    return None


def after_gate(state: dict[str, Any]) -> Literal["promote", "iterate", "rollback"]:
    """Promote a passing candidate; otherwise iterate with a changed plan while budget lasts."""
    verdict = state.get("verdict") or {}
    if verdict.get("passed"):
        return "promote"
    return "rollback" if budget_left(state) else "iterate"


def after_diagnose(state: dict[str, Any]) -> Literal["plan", "rollback"]:
    """Nothing fixable (no usable corrected failures) → stop before spending anything."""
    return "plan" if state.get("has_fixable", True) else "rollback"


def after_synthesize(state: dict[str, Any]) -> Literal["train", "rollback"]:
    """An empty training set (everything was held out or decontaminated) cannot make a candidate."""
    return "rollback" if state.get("no_train_data") else "train"
