"""What every node needs besides the state: the run's context, passed as LangGraph's ``context_schema``.

The context is never checkpointed (it may hold live objects: the workspace, the brain); a resumed run
rebuilds it from the run record. Nodes read it as ``runtime.context`` — typed, no ``configurable`` keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.agent.brain import Brain
from kaizen.tools.rundir import RunDir
from kaizen.tools.workspace import Workspace


@dataclass
class RunContext:
    """The live objects and options of one run."""

    workspace: Workspace
    brain: Brain
    progress: Callable[[str], None] | None = None
    extra_eval_sets: list[str] = field(default_factory=list)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    plan_defaults: dict[str, Any] = field(default_factory=dict)
    # The oracle arm only: the scenario's answer key (perfect triage and corrections). The agent never has one.
    answer_key: str | None = None
    # Evaluation mode of the run's suites: "prefix" (constrained greedy, classification) falls back to generation.
    eval_mode: str = "prefix"

    def say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)


def run_dir(state: Any) -> RunDir:
    return RunDir(Path(state["artifacts"]))


def event(phase: str, **data: Any) -> dict[str, Any]:
    """One entry of the run's event log (appended through the state's reducer)."""
    return {"t": round(time.time(), 3), "phase": phase, **data}


def label(version: str, skill: int | None) -> str:
    """What is compared and deployed: a model version, with its prompt skill when it has one."""
    return f"{version}+skill{skill}" if skill else version


def incumbent_label(state: Any) -> str:
    return label(state["incumbent"], state.get("incumbent_skill"))


def candidate_label(state: Any) -> str:
    return label(state["candidate"], state.get("candidate_skill"))
