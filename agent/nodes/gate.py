"""gate: the candidate vs production *and* vs the run's previous passing candidate → a verdict value.

Against production: the target suite must improve and no regression suite may regress (floor, rate and
a one-sided paired test). Against the working incumbent (the last passing candidate, from iteration 2
on): at least its target score, and no significant regression relative to it either.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, candidate_label, event, incumbent_label
from kaizen.agent.measure import comparison
from kaizen.agent.policy import suites_for
from kaizen.agent.state import RepairState
from kaizen.tools.gate import check_regressions, compare, decide, gate_config


def _vs_working(
    state: RepairState, cfg: Any, cand: str, suites: dict[str, str]
) -> tuple[bool, bool, list[str], float | None]:
    """(no significant regression vs the working incumbent, target below it, reasons, target gain over it).

    The two failures are kept apart because they call for different next steps: a regression may be
    recovered (refresh, rollback), a lower target cannot — recovery only ever gives back target gain."""
    working = state.get("working")
    if not working:
        return True, False, [], None
    ev, w = state["evals"], working["candidate"]
    ok, reasons = True, list[str]()
    for s in suites:
        if s == "target":
            continue
        cmp = comparison(ev, w, cand, s, name=f"vs {w} on {s}")
        if cmp is not None and cmp.n:
            passed, why = check_regressions(cfg, cmp)
            ok, reasons = ok and passed, [*reasons, why]
    before, after = (ev.get(f"{w}/target") or {}).get("score"), (ev.get(f"{cand}/target") or {}).get("score")
    gain = None if before is None or after is None else after - before
    below = gain is not None and gain < 0
    if below:
        reasons.append(f"target {after:.3f} is below the previous passing candidate's {before:.3f}")
    return ok, below, reasons, gain


def gate(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    cfg = gate_config(state.get("preset", "repair"), c.workspace.settings.gate)
    inc, cand, ev = incumbent_label(state), candidate_label(state), state["evals"]
    suites = suites_for(state, c)
    target = comparison(ev, inc, cand, "target")
    regressions = [comparison(ev, inc, cand, s) or compare(s, {}, {}) for s in suites if s != "target"]
    decodings = (ev[f"{inc}/target"]["decoding"], ev[f"{cand}/target"]["decoding"]) if target else None
    verdict = decide(cfg, target, regressions, decodings)
    w_ok, below_w, w_reasons, gain_w = _vs_working(state, cfg, cand, suites)
    passed = verdict.passed and w_ok and not below_w
    step = state.get("step") or str(state["iteration"])
    summary: dict[str, Any] = {
        "passed": passed,
        "reasons": verdict.reasons + w_reasons,
        "new_regressions": verdict.new_regressions,
        "max_new_regressions": cfg.max_new_regressions,
        "target_failed": not verdict.target_ok,
        "regression_failed": not verdict.regressions_ok or not w_ok,
        "below_working": below_w,
        "target_before": target.incumbent_score if target else None,
        "target_after": target.candidate_score if target else None,
        "target_gain": target.gain if target else 0.0,
        "gain_over_working": gain_w,
        "fixed": target.newly_right if target else [],
        "broken": {s.suite: s.newly_wrong for s in regressions},
        "candidate": cand,
        "iteration": state["iteration"],
        "step": step,
        "candidate_version": state["candidate"],
        "candidate_skill": state.get("candidate_skill"),
        "detail": verdict.model_dump(),
    }
    best = state.get("best")
    if passed and (best is None or (summary["target_after"] or 0) >= (best.get("target_after") or 0)):
        best = summary
    c.say(f"gate [{step}]: {'PASS' if passed else 'FAIL'} — " + "; ".join(summary["reasons"]))
    recipe = (state.get("plan") or {}).get("rationale") or []
    fixed = verdict.target_ok and (summary["target_gain"] or 0) > 0
    return {
        "verdict": summary,
        "recipe_verdict": summary if step.isdigit() else state.get("recipe_verdict"),
        "best": best,
        "fix_shown": bool(state.get("fix_shown")) or fixed,
        "working": summary if passed else state.get("working"),
        "path": [
            {
                "step": step,
                "recipe": "; ".join(recipe) if step.isdigit() else (state.get("recovery") or ["?"])[-1],
                "candidate": cand,
                "passed": passed,
                "target": summary["target_after"],
                "regressions": verdict.new_regressions,
                "reasons": summary["reasons"],
            }
        ],
        "events": [event("gate", step=step, passed=passed, reasons=summary["reasons"])],
    }
