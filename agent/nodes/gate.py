"""gate: candidate vs incumbent on the same examples → a Verdict value (never an exception)."""

from __future__ import annotations

from typing import Any

from kaizen.agent.context import candidate_label, event, incumbent_label, progress, workspace
from kaizen.agent.nodes.evaluate import suites_for
from kaizen.tools.gate import compare, decide, gate_config
from langchain_core.runnables import RunnableConfig


def gate(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    ws = workspace(config)
    cfg = gate_config(state.get("preset", "repair"), ws.settings.gate)
    inc, cand, ev = incumbent_label(state), candidate_label(state), state["evals"]
    suites = suites_for(state, config)

    def cmp(suite: str):  # noqa: ANN202
        a, b = ev[f"{inc}/{suite}"], ev[f"{cand}/{suite}"]
        return compare(suite, a["correct"], b["correct"], a["score"], b["score"])

    target = cmp("target") if ev[f"{inc}/target"]["n"] else None
    regressions = [cmp(s) for s in suites if s != "target"]
    decodings = (ev[f"{inc}/target"]["decoding"], ev[f"{cand}/target"]["decoding"]) if target else None
    verdict = decide(cfg, target, regressions, decodings)
    summary = {
        "passed": verdict.passed, "reasons": verdict.reasons, "new_regressions": verdict.new_regressions,
        "max_new_regressions": cfg.max_new_regressions,
        "target_before": target.incumbent_score if target else None, "target_after": target.candidate_score if target else None,
        "target_gain": target.gain if target else 0.0, "fixed": target.newly_right if target else [],
        "broken": {s.suite: s.newly_wrong for s in regressions}, "candidate": cand, "iteration": state["iteration"],
        "candidate_version": state["candidate"], "candidate_skill": state.get("candidate_skill"),
        "detail": verdict.model_dump(),
    }
    best = state.get("best")
    if verdict.passed and (best is None or (summary["target_after"] or 0) > (best.get("target_after") or 0)):
        best = summary
    progress(config, f"gate: {'PASS' if verdict.passed else 'FAIL'} — " + "; ".join(verdict.reasons))
    return {"verdict": summary, "best": best, "events": [event("gate", passed=verdict.passed, reasons=verdict.reasons)]}
