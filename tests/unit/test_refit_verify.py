"""The refit's verification (hand-made evals, real gate maths): it must not regress production on the
regression suite nor on production's right answers in the final slice; with a passing loop candidate it
must not be significantly worse than that candidate; with none, it must also *fix* some of production's
wrong answers on the slice."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kaizen.agent.nodes.refit import _verify
from kaizen.tools.config import GateSettings

# 20 final items: production right on f0..f13, wrong on f14..f19
IDS = [f"f{i}" for i in range(20)]


def final(right: set[int]) -> dict[str, Any]:
    correct = {i: n in right for n, i in enumerate(IDS)}
    return {"score": len(right) / 20, "n": 20, "correct": correct}


PROD = set(range(14))
CTX = SimpleNamespace(workspace=SimpleNamespace(settings=SimpleNamespace(gate=GateSettings())))
STATE = {"incumbent": "v1", "incumbent_skill": None, "preset": "repair"}
BEST = {"candidate": "c1", "candidate_version": "c1"}


def regression(broken: int, n: int = 60) -> dict[str, Any]:
    """A regression suite of ``n`` production-right items, the first ``broken`` of them wrong."""
    correct = {f"g{i}": i >= broken for i in range(n)}
    return {"score": sum(correct.values()) / n, "n": n, "correct": correct}


def verify(
    refit: set[int], loop: set[int] | None = None, best: dict | None = None, broken: int | None = None
) -> tuple[dict, bool]:
    evals = {"v1/final": final(PROD), "r/final": final(refit)}
    if loop is not None:
        evals["c1/final"] = final(loop)
    suites = []
    if broken is not None:
        evals |= {"v1/regression": regression(0), "r/regression": regression(broken)}
        suites = ["regression"]
    return _verify(STATE, CTX, evals, best or {}, "r", "r", suites=suites)  # type: ignore[arg-type]


def test_without_a_loop_candidate_the_refit_must_fix_something_and_break_little() -> None:
    v, ok = verify(PROD | {14, 15, 16})
    assert ok and v["candidate"] == "r" and v["loop_candidate"] is None
    v, ok = verify(PROD)  # fixes nothing on the slice
    assert not ok and any("wrong answers" in r and "below the required" in r for r in v["reasons"])
    v, ok = verify((PROD - {0, 1, 2, 3}) | {14, 15, 16, 17, 18})  # fixes 5, breaks 4 of 14 (> 2)
    assert not ok and v["final_regressions"] == 4


def test_with_a_loop_candidate_the_refit_must_not_be_significantly_worse() -> None:
    v, ok = verify(PROD | {14}, loop=PROD | {14, 15}, best=BEST)  # one item worse: noise
    assert ok and v["loop_candidate"] == "c1"
    v, ok = verify(PROD - {0, 1}, loop=PROD | {14, 15, 16, 17}, best=BEST)  # 6 worse, 0 better: p < 0.05
    assert not ok and any("significantly worse" in r for r in v["reasons"])


def test_the_regression_suite_catches_a_break_rate_the_final_slice_cannot_see() -> None:
    """The strong-v1 probe's shape: no break among the slice's 14 right answers, 6 of 60 (10 %) on the
    regression suite the refit never trained on — refused, with a passing loop candidate or without one."""
    v, ok = verify(PROD | {14, 15}, broken=6)
    assert not ok and v["regressions"] == 6 and v["final_regressions"] == 0
    assert any(r.startswith("regression") for r in v["reasons"])
    v, ok = verify(PROD | {14}, loop=PROD | {14}, best=BEST, broken=6)
    assert not ok
    v, ok = verify(PROD | {14}, loop=PROD | {14}, best=BEST, broken=2)  # within the floor: kept
    assert ok and v["regressions"] == 2
