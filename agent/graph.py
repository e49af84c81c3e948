"""``build_graph(checkpointer)``: the repair loop as a compiled LangGraph.

observe → diagnose → plan → synthesize → train → evaluate → gate ─┬→ promote → END
                       ↑          │ (no training data)             ├→ plan (iterate, changed plan)
                       └──────────┴───────────────────────────────┴→ rollback → END
"""

from __future__ import annotations

from typing import Any

from kaizen.agent.nodes.diagnose import diagnose
from kaizen.agent.nodes.evaluate import evaluate
from kaizen.agent.nodes.gate import gate
from kaizen.agent.nodes.observe import observe
from kaizen.agent.nodes.plan import plan
from kaizen.agent.nodes.promote import promote
from kaizen.agent.nodes.rollback import rollback
from kaizen.agent.nodes.synthesize import synthesize
from kaizen.agent.nodes.train import train
from kaizen.agent.routing import after_diagnose, after_gate, after_synthesize
from kaizen.agent.state import RepairState
from langgraph.graph import END, START, StateGraph


def build_graph(checkpointer: Any = None) -> Any:
    g = StateGraph(RepairState)
    for name, fn in [("observe", observe), ("diagnose", diagnose), ("plan", plan), ("synthesize", synthesize),
                     ("train", train), ("evaluate", evaluate), ("gate", gate), ("promote", promote), ("rollback", rollback)]:
        g.add_node(name, fn)
    g.add_edge(START, "observe")
    g.add_edge("observe", "diagnose")
    g.add_conditional_edges("diagnose", after_diagnose, {"plan": "plan", "rollback": "rollback"})
    g.add_edge("plan", "synthesize")
    g.add_conditional_edges("synthesize", after_synthesize, {"train": "train", "rollback": "rollback"})
    g.add_edge("train", "evaluate")
    g.add_edge("evaluate", "gate")
    g.add_conditional_edges("gate", after_gate, {"promote": "promote", "iterate": "plan", "rollback": "rollback"})
    g.add_edge("promote", END)
    g.add_edge("rollback", END)
    return g.compile(checkpointer=checkpointer)
