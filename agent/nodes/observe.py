"""observe: snapshot the task's traces and the incumbent the run starts from."""

from __future__ import annotations

from typing import Any

from kaizen.agent.context import event, progress, workspace
from langchain_core.runnables import RunnableConfig


def observe(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    ws = workspace(config)
    traces = ws.store.traces(state["task"])
    labeled = sum(t.verdict is not None for t in traces)
    progress(config, f"observe: {len(traces)} traces ({labeled} labelled), incumbent {state['incumbent']}")
    return {"events": [event("observe", traces=len(traces), labeled=labeled, incumbent=state["incumbent"])]}
