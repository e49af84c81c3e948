"""rollback: no candidate passed the gate — production stays on the incumbent, and we say why."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, event
from kaizen.agent.state import RepairState


def rollback(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    verdict = state.get("verdict") or {}
    why = "; ".join(verdict.get("reasons", [])) or "no candidate"
    runtime.context.say(f"rollback: production stays on {state['incumbent']} ({why})")
    return {
        "promoted": False,
        "status": "not_promoted",
        "events": [
            event(
                "rollback",
                incumbent=state["incumbent"],
                last_candidate=state.get("candidate"),
                reasons=verdict.get("reasons", []),
            )
        ],
    }
