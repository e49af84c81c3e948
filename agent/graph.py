"""``build_graph(checkpointer)``: the repair loop as a compiled LangGraph with a typed state and context.

observe → diagnose → plan → synthesize → train → evaluate → gate ─┬→ plan      (iterate: from the passing candidate,
            │            ↑                                         │             or with a changed plan after a failure)
            │            └─────────────────────────────────────────┼→ recover → evaluate → gate   (regressions only)
            │                                                      ├→ refit → promote | rollback   (all the evidence,
            └→ rollback (nothing fixable)                          │                     verified on regression + final slice)
                                                                   ├→ promote → END
                                                                   └→ rollback → END
"""

from __future__ import annotations

import functools
import time
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from kaizen.agent.context import RunContext
from kaizen.agent.killpoints import kill_point
from kaizen.agent.nodes.diagnose import diagnose
from kaizen.agent.nodes.evaluate import evaluate
from kaizen.agent.nodes.gate import gate
from kaizen.agent.nodes.observe import observe
from kaizen.agent.nodes.plan import plan
from kaizen.agent.nodes.promote import promote
from kaizen.agent.nodes.recover import recover
from kaizen.agent.nodes.refit import refit
from kaizen.agent.nodes.rollback import rollback
from kaizen.agent.nodes.synthesize import synthesize
from kaizen.agent.nodes.train import train
from kaizen.agent.routing import after_diagnose, after_gate, after_refit, after_synthesize
from kaizen.agent.state import RepairState

NODES = {
    "observe": observe,
    "diagnose": diagnose,
    "plan": plan,
    "synthesize": synthesize,
    "train": train,
    "evaluate": evaluate,
    "gate": gate,
    "recover": recover,
    "refit": refit,
    "promote": promote,
    "rollback": rollback,
}


def timed(name: str, fn: Any) -> Any:
    """``fn`` with its wall time added to the state (``timings``): where a repair's minutes go, per phase."""

    @functools.wraps(fn)  # keeps the signature LangGraph reads to pass the runtime
    def run(state: RepairState, *args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        out = fn(state, *args, **kwargs)
        if isinstance(out, dict):
            step = (
                out.get("step")
                or state.get("step")
                or str(out.get("iteration") or state.get("iteration") or "")
            )
            seconds = round(time.monotonic() - t, 2)
            out = {**out, "timings": [{"node": name, "step": step, "seconds": seconds}]}
        return out

    return run


def after_recover(
    state: RepairState,
) -> Literal["evaluate", "plan", "recover", "refit", "promote", "rollback"]:
    """A recovery that made a candidate is measured; one that could not (no examples, no adapter) moves on."""
    return "evaluate" if state.get("candidate") else after_gate(state)


def build_graph(checkpointer: Any = None) -> Any:
    g = StateGraph(RepairState, context_schema=RunContext)
    for name, fn in NODES.items():
        g.add_node(name, kill_point(name, timed(name, fn)))  # kill_point: only when a kill -9 test asks
    g.add_edge(START, "observe")
    g.add_edge("observe", "diagnose")
    g.add_conditional_edges("diagnose", after_diagnose, ["plan", "rollback"])
    g.add_edge("plan", "synthesize")
    g.add_conditional_edges("synthesize", after_synthesize, ["train", "refit", "promote", "rollback"])
    g.add_edge("train", "evaluate")
    g.add_edge("evaluate", "gate")
    g.add_conditional_edges("gate", after_gate, ["plan", "recover", "refit", "promote", "rollback"])
    g.add_conditional_edges(
        "recover", after_recover, ["evaluate", "plan", "recover", "refit", "promote", "rollback"]
    )
    g.add_conditional_edges("refit", after_refit, ["promote", "rollback"])
    g.add_edge("promote", END)
    g.add_edge("rollback", END)
    return g.compile(checkpointer=checkpointer)
