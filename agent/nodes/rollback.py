"""rollback: no candidate passed the gate — production stays on the incumbent, and we say why."""

from __future__ import annotations

from typing import Any

from kaizen.agent.context import event, progress
from langchain_core.runnables import RunnableConfig


def rollback(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    verdict = state.get("verdict") or {}
    why = "; ".join(verdict.get("reasons", [])) or "no candidate"
    progress(config, f"rollback: production stays on {state['incumbent']} ({why})")
    return {"promoted": False, "status": "not_promoted",
            "events": [event("rollback", incumbent=state["incumbent"], last_candidate=state.get("candidate"), reasons=verdict.get("reasons", []))]}
