"""The gate node keeps the *best* passing candidate of a run, not the first: a later candidate that passes
against production and the working incumbent with a higher target score replaces it; one that falls below
the working incumbent's target fails. Real gate node and gate maths; evals are hand-made (no model)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kaizen.agent.nodes import gate as gate_node
from kaizen.tools.config import GateSettings

TARGET = [f"t{i}" for i in range(10)]
REGRESSION = [f"r{i}" for i in range(40)]


def ev(target_right: int, broken: int = 0) -> dict[str, Any]:
    """Evals of one version: the first ``target_right`` target items right, ``broken`` regression items wrong."""
    t = {i: n < target_right for n, i in enumerate(TARGET)}
    r = {i: n >= broken for n, i in enumerate(REGRESSION)}
    dec = {"mode": "prefix"}
    return {
        "target": {"score": target_right / 10, "n": 10, "correct": t, "decoding": dec},
        "regression": {"score": sum(r.values()) / 40, "n": 40, "correct": r, "decoding": dec},
    }


def run_gate(state: dict[str, Any], cand: str, evals: dict[str, Any]) -> dict[str, Any]:
    state = state | {"candidate": cand, "candidate_skill": None, "step": None}
    state["iteration"] = state.get("iteration", 0) + 1
    state["evals"] = {f"{v}/{s}": e for v, suites in evals.items() for s, e in suites.items()}
    runtime = SimpleNamespace(
        context=SimpleNamespace(
            workspace=SimpleNamespace(settings=SimpleNamespace(gate=GateSettings())), say=print
        )
    )
    out = gate_node.gate(state, runtime)  # type: ignore[arg-type]
    return state | {k: v for k, v in out.items() if k not in ("path", "events")}


@pytest.fixture(autouse=True)
def _suites(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        gate_node, "suites_for", lambda state, c: {"target": "t.jsonl", "regression": "r.jsonl"}
    )


def test_a_better_later_candidate_becomes_the_best() -> None:
    evals = {"v1": ev(0), "c1": ev(5, broken=1), "c2": ev(8, broken=1)}
    s = run_gate({"incumbent": "v1", "incumbent_skill": None, "preset": "repair"}, "c1", evals)
    assert s["verdict"]["passed"] and s["best"]["candidate"] == "c1" and s["working"]["candidate"] == "c1"
    s = run_gate(s, "c2", evals)
    assert s["verdict"]["passed"] and s["best"]["candidate"] == "c2"
    assert s["verdict"]["gain_over_working"] == pytest.approx(0.3)


def test_a_later_candidate_below_the_working_incumbent_fails_and_the_best_stays() -> None:
    evals = {"v1": ev(0), "c1": ev(8), "c2": ev(6)}
    s = run_gate({"incumbent": "v1", "incumbent_skill": None, "preset": "repair"}, "c1", evals)
    s = run_gate(s, "c2", evals)  # better than production, worse than c1 on the target
    assert not s["verdict"]["passed"] and s["best"]["candidate"] == "c1"
    assert any("below the previous passing candidate" in r for r in s["verdict"]["reasons"])
    # a lower target is its own fault, not a regression: recovery (which trades target gain) is not for it
    assert s["verdict"]["below_working"] and not s["verdict"]["regression_failed"]


def test_a_later_candidate_that_breaks_what_the_working_one_kept_fails() -> None:
    evals = {"v1": ev(0), "c1": ev(6), "c2": ev(9, broken=8)}
    s = run_gate({"incumbent": "v1", "incumbent_skill": None, "preset": "repair"}, "c1", evals)
    s = run_gate(s, "c2", evals)
    assert not s["verdict"]["passed"] and s["verdict"]["regression_failed"] and s["best"]["candidate"] == "c1"
    assert not s["verdict"]["below_working"]
