"""promote: behind an optional human approval, move the task's production alias to the winner.

This node calls ``interrupt()``; on resume LangGraph re-runs it from the top, so everything before
the interrupt is read-only and the promotion itself is idempotent (``promote_and_swap`` is a
no-op when production already points at the candidate).
"""

from __future__ import annotations

import getpass
import time
from typing import Any

from kaizen.agent.context import event, progress, workspace
from kaizen.tools.serve.hotswap import promote_and_swap
from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt


def promote(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    ws = workspace(config)
    best = state["best"]
    version, skill = best.get("candidate_version") or best["candidate"], best.get("candidate_skill")
    approval = {"approved": True, "by": f"{getpass.getuser()} (--approve)", "at": time.time()} if state.get("auto_approve") else None
    if approval is None and ws.settings.gate.require_approval:
        answer = interrupt({"question": f"promote {best['candidate']} to production of {state['task']}?", "verdict": best["reasons"]})
        approval = dict(answer) if isinstance(answer, dict) else {"approved": bool(answer)}
    elif approval is None:
        approval = {"approved": True, "by": "policy (gate.require_approval: false)", "at": time.time()}
    if not approval.get("approved"):
        progress(config, f"promote: rejected by {approval.get('by', '?')}")
        return {"approval": approval, "promoted": False, "status": "rejected",
                "events": [event("promote", promoted=False, approval=approval)]}
    _record_suites(state, config, version)
    # A live `kaizen serve` of the task is hot-swapped first; if it cannot load the candidate this
    # raises (the run fails, production and the registry stay as they were; `kaizen runs resume` retries).
    swapped = promote_and_swap(ws.store, state["task"], version, actor=str(approval.get("by", "")), note=f"run {state['run_id']}",
                               skill=skill)
    progress(config, f"promote: production of {state['task']} → {best['candidate']}"
             + "".join(f"; hot-swapped {s['url']}" for s in swapped.servers))
    return {"approval": approval, "promoted": True, "status": "promoted",
            "events": [event("promote", promoted=True, version=version, skill=skill, approval=approval, servers=swapped.servers)]}


def _record_suites(state: dict[str, Any], config: RunnableConfig, version: str) -> None:
    """Remember this promotion's suites: the next repair also checks the candidate on them."""
    ws = workspace(config)
    row = ws.store.get_model_version(version)
    suites = dict(row.metrics.get("suites") or {})
    suites[f"{state['run_id'][:8]}-regression"] = state["splits"]["regression"]
    suites[f"{state['run_id'][:8]}-target"] = state["splits"]["target"]
    from kaizen.tools.store.tables import ModelVersionRow

    with ws.store.session() as s:
        db_row = s.get(ModelVersionRow, version)
        db_row.metrics = dict(db_row.metrics or {}) | {"suites": suites, "promoted_by_run": state["run_id"]}
        s.add(db_row)
