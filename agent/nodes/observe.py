"""observe: snapshot the task's traces and the incumbent the run starts from."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, event
from kaizen.agent.policy import load_traces
from kaizen.agent.state import RepairState


def observe(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    traces = load_traces(c, c.workspace.store.get_task(state["task"]))
    labeled = sum(t.verdict is not None for t in traces)
    c.say(
        f"observe: {len(traces)} traces ({labeled} labelled), incumbent {state['incumbent']}"
        + (" — ORACLE arm: labels from the answer key" if c.answer_key else "")
    )
    return {
        "events": [
            event(
                "observe",
                traces=len(traces),
                labeled=labeled,
                incumbent=state["incumbent"],
                oracle=bool(c.answer_key),
            )
        ]
    }
