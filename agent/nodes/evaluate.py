"""evaluate: incumbent and candidate on the same suites, same backend and decoding (cached per run)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, candidate_label, event, incumbent_label
from kaizen.agent.measure import measure
from kaizen.agent.policy import suites_for
from kaizen.agent.state import RepairState


def evaluate(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    suites = suites_for(state, c)
    evals = dict(state.get("evals") or {})
    evals.update(measure(state, c, state["incumbent"], state.get("incumbent_skill"), suites))
    evals.update(measure(state, c, str(state["candidate"]), state.get("candidate_skill"), suites))
    inc, cand = incumbent_label(state), candidate_label(state)
    scores = {k: v["score"] for k, v in evals.items() if k.startswith(cand + "/") or k.startswith(inc + "/")}
    return {
        "evals": evals,
        "events": [event("evaluate", iteration=state["iteration"], step=state.get("step"), scores=scores)],
    }
