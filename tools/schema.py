"""The domain vocabulary as pydantic models, and the one prompt contract ``render``.

These are the values that cross module boundaries (CLI ↔ tools ↔ agent). Database tables live in
``kaizen.tools.store``; these models are what callers see. ``render`` is the single place that turns a
task (+ skill) and the user's messages into model input, so training, evaluation and serving can
never drift apart.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TaskKind = Literal["classification", "extraction", "generation", "math", "code"]
Verdict = Literal["pass", "fail"]
FeedbackSource = Literal["human", "judge", "rule"]
Role = Literal["system", "user", "assistant", "tool", "developer"]

DEFAULT_METRIC: dict[str, str] = {
    "classification": "accuracy",
    "extraction": "field_f1",
    "generation": "rougeL",
    "math": "exact_match",
    "code": "pass@1",
}


class Strict(BaseModel):
    """Base for every input model: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Message(Strict):
    role: Role
    content: str


class TaskSpec(Strict):
    """A task: what the model is asked to do and how success is measured."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Short id, e.g. support-intents."
    )
    kind: TaskKind = Field(description="classification | extraction | generation | math | code.")
    description: str = Field("", description="What the task is, in plain words.")
    labels: list[str] = Field(default_factory=list, description="Label set (classification).")
    system_prompt: str | None = Field(
        None, description="System prompt; a default is derived for classification."
    )
    metric: str | None = Field(
        None, description="Headline metric; defaults per kind (accuracy, field_f1, …)."
    )
    base_model: str | None = Field(None, description="Base model for this task; defaults to model.base.")

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, v: list[str]) -> list[str]:
        v = [x.strip() for x in v if x.strip()]
        if len(set(v)) != len(v):
            raise ValueError("labels must be unique")
        return v

    @property
    def headline_metric(self) -> str:
        return self.metric or DEFAULT_METRIC[self.kind]


class Feedback(Strict):
    """A verdict on one trace; several may arrive over time and the latest counts."""

    verdict: Verdict
    correction: str | None = None
    reason: str | None = None
    source: FeedbackSource = "human"
    confidence: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("correction", mode="before")
    @classmethod
    def _structured_correction(cls, v: Any) -> Any:
        """An extraction correction may be logged as the JSON object itself; it is stored as its JSON text."""
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v


class TraceIn(Strict):
    """One logged inference as kaizen imports it (kaizen JSONL line after validation)."""

    id: str | None = None
    timestamp: datetime | None = None
    task: str | None = None
    model_version: str | None = None
    messages: list[Message] = Field(min_length=1)
    output: str
    feedback: Feedback | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def content_id(self, task: str) -> str:
        """Stable id from content *and* timestamp: identical retries at different times stay distinct."""
        return content_hash(
            {
                "task": task,
                "timestamp": self.timestamp.isoformat() if self.timestamp else None,
                "messages": [m.model_dump() for m in self.messages],
                "output": self.output,
            }
        )


class FeedbackIn(Feedback):
    """A line of ``kaizen feedback FILE``."""

    trace_id: str


class Skill(Strict):
    """A versioned prompt artifact deployed together with a model version."""

    name: str
    version: int = 1
    system_prompt: str | None = None
    instructions: str | None = None
    few_shot: list[list[Message]] = Field(default_factory=list)


class EvalItem(Strict):
    """One evaluation / training example: input messages and the expected output."""

    id: str
    messages: list[Message] = Field(min_length=1)
    expected: Any
    metadata: dict[str, Any] = Field(default_factory=dict)


def content_hash(obj: Any, n: int = 16) -> str:
    """Short sha256 of a canonical JSON encoding (stable across runs and machines)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def default_system_prompt(task: TaskSpec) -> str:
    """A short system prompt derived from the task. Short on purpose: every token is trained on CPU."""
    if task.kind == "classification" and task.labels:
        return "Classify the message. Answer with one label: " + ", ".join(task.labels) + "."
    if task.kind == "extraction":
        return "Extract the fields as one JSON object. " + (task.description or "")
    if task.kind == "math":
        return "Solve the problem. End with '#### <answer>'."
    return task.description or "You are a helpful assistant."


def system_prompt_for(task: TaskSpec, skill: Skill | None = None) -> str:
    """The system prompt in force: the skill's, else the task's, else the derived default."""
    parts = [
        (skill.system_prompt if skill and skill.system_prompt else None)
        or task.system_prompt
        or default_system_prompt(task)
    ]
    if skill and skill.instructions:
        parts.append(skill.instructions)
    return "\n\n".join(parts)


def render(
    task: TaskSpec, skill: Skill | None, messages: list[Message] | list[dict[str, Any]]
) -> list[dict[str, str]]:
    """Build the chat messages the model sees, for training, evaluation and serving alike.

    The task/skill system prompt is applied exactly once: system messages already present in a
    logged conversation are dropped (production logs usually carry the prompt of the day, which is
    what we are replacing), then skill few-shot turns, then the conversation. There is always a
    system message, because SmolLM2's chat template otherwise injects a default one of its own.
    """
    msgs = [m if isinstance(m, dict) else m.model_dump() for m in messages]
    out: list[dict[str, str]] = [{"role": "system", "content": system_prompt_for(task, skill)}]
    if skill:
        for shot in skill.few_shot:
            out.extend({"role": m.role, "content": m.content} for m in shot)
    out.extend(
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
        for m in msgs
        if m["role"] not in ("system", "developer")
    )
    return out


def last_user_text(messages: list[Message] | list[dict[str, Any]]) -> str:
    """The text of the last user turn (what diagnosis and dedupe compare)."""
    for m in reversed(messages):
        d = m if isinstance(m, dict) else m.model_dump()
        if d["role"] == "user":
            return d["content"]
    return ""


class ExampleOutcome(BaseModel):
    """One example's result: kept so two versions can be compared example by example."""

    id: str
    output: str
    expected: Any
    correct: bool


class EvalReport(BaseModel):
    """What an evaluation returns to the CLI and the agent (stored as an EvalResult row + JSONL)."""

    task: str
    model_version: str
    suite: str
    metric: str
    score: float
    n: int
    metrics: dict[str, Any]
    backend: str
    decoding: dict[str, Any]
    outputs_path: str
    outcomes: list[ExampleOutcome] = Field(default_factory=list, exclude=True)

    @property
    def correct_by_id(self) -> dict[str, bool]:
        return {o.id: o.correct for o in self.outcomes}
