"""The brain protocol — the decision-maker behind diagnose, plan and synthesize — and the factory.

Two implementations: ``RuleBrain`` (``agent/rule_brain.py``, deterministic, offline) and ``LLMBrain``
(``agent/llm_brain.py``, any OpenAI-compatible endpoint, falling back to the rule brain). Neither
imports this module's factory, so there is no import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from kaizen.agent.state import Diagnosis, Plan
from kaizen.tools.schema import EvalItem, Skill, TaskSpec
from kaizen.tools.store import TraceView


class Brain(Protocol):
    name: str

    def diagnose(self, task: TaskSpec, traces: list[TraceView]) -> Diagnosis: ...

    def plan(
        self, iteration: int, diagnosis: Diagnosis, last: dict[str, Any] | None, previous: Plan | None
    ) -> Plan: ...

    def synthesize(
        self,
        task: TaskSpec,
        failures: list[EvalItem],
        eval_texts: list[str],
        confused_with: dict[str, str] | None = None,
        per_case: int = 2,
    ) -> list[EvalItem]: ...

    def propose_skill(
        self, task: TaskSpec, skill: Skill | None, failures: list[EvalItem]
    ) -> Skill | None: ...


def make_brain(ws: Any, log_path: Path | None = None) -> Any:
    """The brain ``kaizen.yaml`` asks for: the rule brain, or an LLM brain (which falls back to it)."""
    from kaizen.agent.rule_brain import RuleBrain

    s = ws.settings.brain
    if s.kind != "llm":
        return RuleBrain()
    from kaizen.agent.llm_brain import LLMBrain
    from kaizen.agent.llm_client import LLMClient

    return LLMBrain(LLMClient(s, cache_dir=ws.artifact_dir("brain-cache"), log_path=log_path))
