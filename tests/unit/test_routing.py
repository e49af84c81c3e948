"""The repair graph's routing: pure functions of the state (promote / iterate / roll back)."""

from __future__ import annotations

import time

import pytest
from kaizen.agent.routing import after_diagnose, after_gate, budget_left

PASSED = {"passed": True, "reasons": ["target 0.2 → 0.9"]}
FAILED = {"passed": False, "reasons": ["target gain +0.000 is below the required > 0"]}


def state(**kw) -> dict:  # noqa: ANN003
    base = {"iteration": 1, "max_iterations": 3, "deadline": time.time() + 3600,
            "train_tokens_budget": 200_000, "train_tokens_used": 10_000, "verdict": FAILED}
    return base | kw


def test_promote_when_the_gate_passed() -> None:
    assert after_gate(state(verdict=PASSED)) == "promote"


def test_a_passed_gate_promotes_even_with_the_budget_spent() -> None:
    # the candidate is already trained and verified: spending is over, promoting costs nothing
    assert after_gate(state(verdict=PASSED, iteration=3, deadline=time.time() - 1, train_tokens_used=10**9)) == "promote"


def test_iterate_when_failed_and_budget_left() -> None:
    assert after_gate(state()) == "iterate"
    assert after_gate(state(iteration=2)) == "iterate"
    assert budget_left(state()) is None


def test_rollback_when_iterations_are_exhausted() -> None:
    s = state(iteration=3)
    assert after_gate(s) == "rollback"
    assert "max iterations (3)" in budget_left(s)
    assert after_gate(state(iteration=1, max_iterations=1)) == "rollback"


def test_rollback_when_the_deadline_passed() -> None:
    s = state(deadline=time.time() - 1)
    assert after_gate(s) == "rollback"
    assert "wall-clock" in budget_left(s)


def test_rollback_when_the_token_budget_is_spent() -> None:
    s = state(train_tokens_used=200_000)
    assert after_gate(s) == "rollback"
    assert "token" in budget_left(s)
    assert after_gate(state(train_tokens_used=199_999)) == "iterate"


def test_missing_or_empty_verdict_is_not_a_pass() -> None:
    assert after_gate(state(verdict=None)) == "iterate"
    assert after_gate(state(verdict={})) == "iterate"
    assert after_gate(state(verdict=None, iteration=3)) == "rollback"


def test_defaults_when_budgets_are_unset() -> None:
    # no deadline / token budget recorded: only the iteration count limits (default 3)
    assert after_gate({"iteration": 2, "verdict": FAILED}) == "iterate"
    assert after_gate({"iteration": 3, "verdict": FAILED}) == "rollback"
    assert after_gate({"verdict": FAILED}) == "iterate"


@pytest.mark.parametrize(("has_fixable", "route"), [(True, "plan"), (False, "rollback")])
def test_after_diagnose(has_fixable: bool, route: str) -> None:
    assert after_diagnose({"has_fixable": has_fixable}) == route


def test_after_diagnose_rolls_back_when_nothing_is_fixable() -> None:
    assert after_diagnose(state(has_fixable=False)) == "rollback"


def test_routes_match_the_graph_edges() -> None:
    """Every value a router returns is an edge of the compiled graph (no model, no checkpointer)."""
    from kaizen.agent.graph import build_graph

    g = build_graph().get_graph()
    edges = {(e.source, e.target) for e in g.edges}
    assert ("gate", "promote") in edges and ("gate", "plan") in edges and ("gate", "rollback") in edges
    assert ("diagnose", "plan") in edges and ("diagnose", "rollback") in edges


def test_an_empty_training_set_goes_to_rollback() -> None:
    from kaizen.agent.routing import after_synthesize

    assert after_synthesize({"no_train_data": True}) == "rollback"
    assert after_synthesize({"no_train_data": False}) == "train"
    assert after_synthesize({}) == "train"
