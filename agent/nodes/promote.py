"""promote: behind an optional human approval, move the task's production alias to the winner.

This node calls ``interrupt()``; on resume LangGraph re-runs it from the top, so everything before
the interrupt is read-only and the promotion itself is idempotent (``promote_and_swap`` is a
no-op when production already points at the candidate).
"""

from __future__ import annotations

import getpass
import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from kaizen.agent.context import RunContext, event
from kaizen.agent.state import RepairState
from kaizen.tools.serve.hotswap import promote_and_swap


def promote(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    best = state.get("best") or {}
    version, skill = best.get("candidate_version") or best["candidate"], best.get("candidate_skill")
    approval = (
        {"approved": True, "by": f"{getpass.getuser()} (--approve)", "at": time.time()}
        if state.get("auto_approve")
        else None
    )
    if approval is None and ws.settings.gate.require_approval:
        answer = interrupt(
            {
                "question": f"promote {best['candidate']} to production of {state['task']}?",
                "verdict": best["reasons"],
            }
        )
        approval = dict(answer) if isinstance(answer, dict) else {"approved": bool(answer)}
    elif approval is None:
        approval = {"approved": True, "by": "policy (gate.require_approval: false)", "at": time.time()}
    if not approval.get("approved"):
        c.say(f"promote: rejected by {approval.get('by', '?')}")
        return {
            "approval": approval,
            "promoted": False,
            "status": "rejected",
            "events": [event("promote", promoted=False, approval=approval)],
        }
    _record_suites(state, c, version, best)
    # A live `kaizen serve` of the task is hot-swapped first; if it cannot load the candidate this
    # raises (the run fails, production and the registry stay as they were; `kaizen runs resume` retries).
    swapped = promote_and_swap(
        ws.store,
        state["task"],
        version,
        actor=str(approval.get("by", "")),
        note=f"run {state['run_id']}",
        skill=skill,
    )
    c.say(
        f"promote: production of {state['task']} → {best['candidate']}"
        + "".join(f"; hot-swapped {s['url']}" for s in swapped.servers)
    )
    return {
        "approval": approval,
        "promoted": True,
        "status": "promoted",
        "events": [
            event(
                "promote",
                promoted=True,
                version=version,
                skill=skill,
                approval=approval,
                servers=swapped.servers,
            )
        ],
    }


def _record_suites(state: RepairState, c: RunContext, version: str, best: dict[str, Any]) -> None:
    """Remember the suites this promotion was judged on (never trained on by it): the next repair keeps them.

    A refit trained on the run's target traces, so its final slice takes the target suite's place; no
    candidate ever trains on the regression suite. Earlier promotions' suites are carried forward (the
    newest six).
    """
    ws = c.workspace
    run = state["run_id"][:8]
    judged = "final" if best.get("step") == "refit" else "target"
    mine = {f"{run}-regression": state["splits"]["regression"], f"{run}-{judged}": state["splits"][judged]}
    inherited = ws.store.get_model_version(state["incumbent"]).metrics.get("suites") or {}
    suites = dict(list({**inherited, **mine}.items())[-6:])
    ws.store.update_model_metrics(version, {"suites": suites, "promoted_by_run": state["run_id"]})
