"""The repair graph's routing: pure functions of the state (iterate / recover / refit / promote / roll back)."""

from __future__ import annotations

import time

import pytest

from kaizen.agent.routing import after_diagnose, after_gate, budget_left

PASSED = {"passed": True, "reasons": ["target 0.2 → 0.96"], "target_after": 0.96}
BEST = {"candidate": "c1", "candidate_version": "c1", "target_after": 0.96}
FAILED = {"passed": False, "reasons": ["target gain +0.000 is below the required > 0"]}


def state(**kw) -> dict:  # noqa: ANN003
    base = {
        "iteration": 1,
        "max_iterations": 3,
        "deadline": time.time() + 3600,
        "train_tokens_budget": 200_000,
        "train_tokens_used": 10_000,
        "verdict": FAILED,
    }
    return base | kw


def test_promote_when_the_gate_passed_and_tau_is_reached() -> None:
    assert after_gate(state(verdict=PASSED, best=BEST)) == "promote"
    # with a final slice, the best candidate is refitted and verified first (once)
    assert after_gate(state(verdict=PASSED, best=BEST, final_n=25)) == "refit"
    assert after_gate(state(verdict=PASSED, best=BEST, final_n=25, refit_enabled=False)) == "promote"


def test_a_passed_gate_promotes_even_with_the_budget_spent() -> None:
    # the candidate is already trained and verified: spending is over, promoting costs nothing
    low = PASSED | {"target_after": 0.5}
    assert (
        after_gate(
            state(verdict=low, best=BEST, iteration=3, deadline=time.time() - 1, train_tokens_used=10**9)
        )
        == "promote"
    )


def test_a_pass_below_tau_iterates_from_it_until_a_plateau() -> None:
    low = PASSED | {"target_after": 0.7}
    assert after_gate(state(verdict=low, best=BEST)) == "plan"
    assert after_gate(state(verdict=low | {"gain_over_working": 0.1}, best=BEST)) == "plan"
    assert after_gate(state(verdict=low | {"gain_over_working": 0.01}, best=BEST)) == "promote"  # δ = 0.02
    assert after_gate(state(verdict=low, best=BEST, target_score=0.6)) == "promote"  # τ configurable


def test_a_candidate_that_only_broke_too_much_is_recovered_in_order() -> None:
    only_reg = {"passed": False, "target_gain": 0.3, "target_failed": False, "regression_failed": True}
    s = state(verdict=only_reg, recoveries=["refresh", "rollback"], recovery=[])
    assert after_gate(s) == "recover"
    assert after_gate(s | {"recovery": ["refresh"]}) == "recover"
    assert after_gate(s | {"recovery": ["refresh", "rollback"]}) == "plan"  # both tried: a new iteration
    assert after_gate(s | {"recoveries": []}) == "plan"  # repair.recover: false
    # a target that did not move is not a recovery case
    assert (
        after_gate(
            state(verdict=only_reg | {"target_gain": 0.0, "target_failed": True}, recoveries=["refresh"])
        )
        == "plan"
    )


def test_a_candidate_below_the_working_incumbent_ends_the_loop_without_recovery() -> None:
    # iteration 3 fixed one item fewer than iteration 2's passing candidate, nothing else wrong: a plateau —
    # refresh / rollback / GRPO could only lower its target further, and another plan starts from the same place
    below = {
        "passed": False,
        "target_gain": 0.4,
        "target_failed": False,
        "regression_failed": False,
        "below_working": True,
    }
    s = state(verdict=below, best=BEST, recoveries=["refresh", "rollback", "grpo"], recovery=[])
    assert after_gate(s) == "promote"
    assert after_gate(s | {"final_n": 25}) == "refit"
    # below the working incumbent *and* breaking too much: still no recovery, a new plan while budget lasts
    both = below | {"regression_failed": True}
    assert after_gate(s | {"verdict": both}) == "plan"
    assert after_gate(s | {"verdict": both, "iteration": 3}) == "promote"


def test_iterate_when_failed_and_budget_left() -> None:
    assert after_gate(state()) == "plan"
    assert after_gate(state(iteration=2)) == "plan"
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
    assert after_gate(state(train_tokens_used=199_999)) == "plan"


def test_missing_or_empty_verdict_is_not_a_pass() -> None:
    assert after_gate(state(verdict=None)) == "plan"
    assert after_gate(state(verdict={})) == "plan"
    assert after_gate(state(verdict=None, iteration=3)) == "rollback"


def test_defaults_when_budgets_are_unset() -> None:
    # no deadline / token budget recorded: only the iteration count limits (default 3)
    assert after_gate({"iteration": 2, "verdict": FAILED}) == "plan"
    assert after_gate({"iteration": 3, "verdict": FAILED}) == "rollback"
    assert after_gate({"verdict": FAILED}) == "plan"


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
    assert ("gate", "recover") in edges and ("gate", "refit") in edges and ("refit", "promote") in edges
    assert ("recover", "evaluate") in edges
    assert ("diagnose", "plan") in edges and ("diagnose", "rollback") in edges


def test_an_empty_training_set_goes_to_rollback() -> None:
    from kaizen.agent.routing import after_synthesize

    assert after_synthesize({"no_train_data": True}) == "rollback"
    assert after_synthesize({"no_train_data": False}) == "train"
    assert after_synthesize({}) == "train"


def test_no_passing_candidate_refits_only_when_a_fix_was_shown_and_a_final_slice_exists() -> None:
    from kaizen.agent.routing import after_refit

    spent = {"iteration": 3}  # budget spent, nothing passed
    assert after_gate(state(**spent)) == "rollback"
    assert after_gate(state(**spent, final_n=12)) == "rollback"  # no candidate ever fixed anything
    assert after_gate(state(**spent, final_n=12, fix_shown=True)) == "refit"
    assert after_gate(state(**spent, fix_shown=True)) == "rollback"  # nothing to verify it on
    assert after_gate(state(**spent, final_n=12, fix_shown=True, refit_done=True)) == "rollback"
    assert after_refit(state(best=None)) == "rollback" and after_refit(state(best=BEST)) == "promote"


def test_a_target_suite_too_thin_to_show_a_fix_leaves_the_decision_to_the_refit() -> None:
    """Two target items "gain +0.000" whatever was learned: inconclusive, so the refit is judged on the final slice."""
    from kaizen.agent.routing import THIN_TARGET

    spent = {"iteration": 3}
    assert after_gate(state(**spent, final_n=23, target_n=2)) == "refit"
    assert (
        after_gate(state(**spent, final_n=23, target_n=THIN_TARGET)) == "rollback"
    )  # enough to have shown one
    assert after_gate(state(**spent, target_n=2)) == "rollback"  # no final slice to verify it on
