"""Policy helpers shared by several nodes (so that nodes never import each other).

Where training starts, which traces a run sees (the oracle arm's answer key), which suites a candidate
is measured on, and when the loop has gone far enough.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kaizen.agent.context import RunContext
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.data import load_items
from kaizen.tools.datasets.splits import RepairSplits
from kaizen.tools.rundir import SUITES
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import TraceView


def holds_full_data(version: Any) -> bool:
    """kaizen trained this version from its base on data it still has (so it can retrain it)."""
    path = (version.recipe or {}).get("train_items_path")
    return bool(version.recipe.get("holds_full_data")) and bool(path) and Path(str(path)).exists()


def continues_incumbent(p: Plan, incumbent: Any) -> bool:
    """Continue the incumbent's adapter, or retrain from the base on the accumulated data?"""
    if incumbent.adapter_path is None:
        return False
    if p.start == "auto":
        return not holds_full_data(incumbent)
    return p.start == "incumbent"


def load_traces(c: RunContext, task: TaskSpec) -> list[TraceView]:
    """The task's traces as this run may see them: as logged, or — the oracle arm only — as the answer key says."""
    traces = c.workspace.store.traces(task.name)
    if not c.answer_key:
        return traces
    from kaizen.tools.answer_key import load_answer_key, oracle_traces

    return oracle_traces(task, traces, load_answer_key(Path(c.answer_key)))


def load_roles(task: TaskSpec, roles: dict[str, str]) -> RepairSplits:
    """The run's data roles (role → JSONL path) read back as items; a missing or empty file is an empty role."""

    def load(name: str) -> list:
        path = Path(roles.get(name, ""))
        return load_items(path, task) if roles.get(name) and path.exists() and path.stat().st_size else []

    return RepairSplits(**{name: load(name) for name in SUITES})


def suites_for(state: RepairState, c: RunContext) -> dict[str, str]:
    """target, regression, plus the regression suites recorded at the incumbent's promotion and extra sets."""
    suites = {"target": state["splits"]["target"], "regression": state["splits"]["regression"]}
    suites |= earlier_suites(state, c)
    return suites


def earlier_suites(state: RepairState, c: RunContext) -> dict[str, str]:
    """Suites this run must also keep passing (and never train on): earlier promotions' and the user's."""
    out: dict[str, str] = {}
    inc = c.workspace.store.get_model_version(state["incumbent"])
    for name, path in (inc.metrics.get("suites") or {}).items():
        if Path(path).exists():
            out[name] = path
    for i, path in enumerate(c.extra_eval_sets):
        out[f"extra{i + 1}"] = path
    return out


def budget_left(state: RepairState) -> str | None:
    """Why no further iteration may start (None when one may)."""
    if state.get("iteration", 0) >= state.get("max_iterations", 3):
        return f"max iterations ({state.get('max_iterations', 3)}) reached"
    if state.get("deadline") and time.time() >= state["deadline"]:
        return "wall-clock budget spent"
    if state.get("train_tokens_budget") and state.get("train_tokens_used", 0) >= state["train_tokens_budget"]:
        return "training-token budget spent"
    return None


def stop_after_pass(state: RepairState, target_score: float, plateau: float) -> str | None:
    """Why the loop stops after a passing candidate (None: iterate from it)."""
    v = state.get("verdict") or {}
    after = v.get("target_after")
    if after is not None and after >= target_score:
        return f"target {after:.3f} reached τ = {target_score:.2f}"
    gain = v.get("gain_over_working")
    if gain is not None and gain < plateau:
        return f"plateau: {gain:+.3f} over the previous passing candidate (< δ = {plateau:.2f})"
    return budget_left(state)


def only_regressions(verdict: dict[str, Any]) -> bool:
    """The candidate fixed failures but broke too much: the case recovery is for. Not when it also fixes
    fewer than the working incumbent: recovery trades target gain for regressions, so it could only widen that gap."""
    return (
        (verdict.get("target_gain") or 0) > 0
        and not verdict.get("target_failed")
        and not verdict.get("below_working")
        and bool(verdict.get("regression_failed"))
    )


def plateaued(verdict: dict[str, Any]) -> bool:
    """The candidate's only fault is a target below the working incumbent's: the plateau rule (δ) seen from a
    failure — iterating again from the same working incumbent is not expected to do better, so the loop ends.

    >>> plateaued({"passed": False, "below_working": True, "target_failed": False, "regression_failed": False})
    True
    >>> plateaued({"passed": False, "below_working": True, "target_failed": False, "regression_failed": True})
    False
    """
    return (
        not verdict.get("passed")
        and bool(verdict.get("below_working"))
        and not verdict.get("target_failed")
        and not verdict.get("regression_failed")
    )
