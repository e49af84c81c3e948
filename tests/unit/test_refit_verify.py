"""The refit's verification on the final slice (hand-made evals, real gate maths): with a passing loop
candidate it must not regress production and not be significantly worse than that candidate; with none,
it must also *fix* some of production's wrong answers on the slice."""

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


def verify(refit: set[int], loop: set[int] | None = None, best: dict | None = None) -> tuple[dict, bool]:
    evals = {"v1/final": final(PROD), "r/final": final(refit)}
    if loop is not None:
        evals["c1/final"] = final(loop)
    return _verify(STATE, CTX, evals, best or {}, "r", "r")  # type: ignore[arg-type]


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
