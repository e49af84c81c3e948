"""What every node needs besides the state: the workspace, run directory, brain and events.

Passed through LangGraph's ``config["configurable"]`` (never checkpointed, so it may hold live
objects); nodes stay thin by getting everything from here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kaizen.agent.brain import Brain, RuleBrain
from kaizen.tools.workspace import Workspace
from langchain_core.runnables import RunnableConfig


def workspace(config: RunnableConfig) -> Workspace:
    return config["configurable"]["workspace"]


def brain(config: RunnableConfig) -> Brain:
    return config["configurable"].get("brain") or RuleBrain()


def progress(config: RunnableConfig, msg: str) -> None:
    fn = config["configurable"].get("progress")
    if fn:
        fn(msg)


def run_dir(state: dict[str, Any]) -> Path:
    p = Path(state["artifacts"])
    p.mkdir(parents=True, exist_ok=True)
    return p


def event(phase: str, **data: Any) -> dict[str, Any]:
    """One entry of the run's event log (appended through the state's reducer)."""
    return {"t": round(time.time(), 3), "phase": phase, **data}


def write_json(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return str(path)


def label(version: str, skill: int | None) -> str:
    """What is compared and deployed: a model version, with its prompt skill when it has one."""
    return f"{version}+skill{skill}" if skill else version


def incumbent_label(state: dict[str, Any]) -> str:
    return label(state["incumbent"], state.get("incumbent_skill"))


def candidate_label(state: dict[str, Any]) -> str:
    return label(state["candidate"], state.get("candidate_skill"))
