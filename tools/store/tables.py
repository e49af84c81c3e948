"""SQLModel tables: the durable record of tasks, traces, feedback, data, models, runs and evals.

Rows store JSON for nested values (messages, recipes, metrics) because those are read whole, never
queried inside. Times are UTC. History tables (feedback, alias events) are append-only: nothing a
user did is ever deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 4
# Versions from which an upgrade only *adds* tables or nullable columns (done in place by
# ``db._upgrade_additive``, nothing is lost): v2 added source_cursor and tick (the scheduled loop);
# v3 added server (kaizen serve); v4 added task_lock.proc_start (a reused pid cannot hold a lock),
# and ingest_stage, ingest_stage_feedback, pending_record (staged imports, records waiting for a later tick).
ADDITIVE_UPGRADE_FROM = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(default: Any = None) -> Any:
    return Field(
        default_factory=(lambda: default() if callable(default) else default), sa_column=Column(JSON)
    )


class Meta(SQLModel, table=True):
    """Key/value facts about the database itself (schema version, created time)."""

    key: str = Field(primary_key=True)
    value: str


class TaskRow(SQLModel, table=True):
    __tablename__ = "task"
    name: str = Field(primary_key=True)
    kind: str
    description: str = ""
    labels: list[str] = _json(list)
    system_prompt: str | None = Field(default=None, sa_column=Column(Text))
    metric: str | None = None
    base_model: str | None = None
    declared_in: str = "cli"  # "cli" or "kaizen.yaml"
    created_at: datetime = Field(default_factory=utcnow)


class TraceRow(SQLModel, table=True):
    __tablename__ = "trace"
    id: str = Field(primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    timestamp: datetime | None = None
    model_version: str | None = None
    messages: list[dict[str, Any]] = _json(list)
    output: str = Field(sa_column=Column(Text))
    trace_metadata: dict[str, Any] = _json(dict)
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    source: str | None = None  # file it came from
    imported_at: datetime = Field(default_factory=utcnow)


class FeedbackRow(SQLModel, table=True):
    """All feedback ever given on a trace; the latest (highest id) counts."""

    __tablename__ = "feedback"
    id: int | None = Field(default=None, primary_key=True)
    trace_id: str = Field(foreign_key="trace.id", index=True)
    verdict: str
    correction: str | None = Field(default=None, sa_column=Column(Text))
    reason: str | None = None
    source: str = "human"
    confidence: float | None = None
    content_hash: str = Field(index=True)  # makes re-imports idempotent
    created_at: datetime = Field(default_factory=utcnow)


class ModelVersionRow(SQLModel, table=True):
    """A base model plus at most one LoRA adapter. A full model added from outside is a new base."""

    __tablename__ = "model_version"
    name: str = Field(primary_key=True)
    kind: str  # base | adapter
    base_ref: str  # base: model spec (smollm2-135m, a dir, hub id); adapter: name of its base version
    adapter_path: str | None = None
    parent: str | None = None
    task: str | None = None
    recipe: dict[str, Any] = _json(dict)
    data_hash: str | None = None
    metrics: dict[str, Any] = _json(dict)
    created_at: datetime = Field(default_factory=utcnow)


class SkillRow(SQLModel, table=True):
    __tablename__ = "skill"
    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    version: int
    body: dict[str, Any] = _json(dict)
    parent: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class AliasRow(SQLModel, table=True):
    """(task, alias) → (model version, skill version). Its history lives in AliasEvent."""

    __tablename__ = "alias"
    task: str = Field(primary_key=True, foreign_key="task.name")
    alias: str = Field(primary_key=True)  # production | previous | candidate
    model_version: str = Field(foreign_key="model_version.name")
    skill_version: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class AliasEvent(SQLModel, table=True):
    __tablename__ = "alias_event"
    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(index=True)
    alias: str
    model_version: str
    skill_version: int | None = None
    action: str  # init | promote | rollback | set
    actor: str = ""
    note: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class RunRow(SQLModel, table=True):
    __tablename__ = "run"
    id: str = Field(primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    workflow: str
    status: str  # running | awaiting_approval | promoted | not_promoted | failed | rejected
    thread_id: str
    config: dict[str, Any] = _json(dict)
    summary: dict[str, Any] = _json(dict)
    events: list[dict[str, Any]] = _json(list)
    report_path: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class EvalResultRow(SQLModel, table=True):
    __tablename__ = "eval_result"
    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    model_version: str
    skill_version: int | None = None
    dataset_id: str
    suite: str = "eval"
    metric: str
    score: float
    n: int
    metrics: dict[str, Any] = _json(dict)
    backend: str
    decoding: dict[str, Any] = _json(dict)
    outputs_path: str
    run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class LockRow(SQLModel, table=True):
    """One job per task: the holder (job id, pid, its start time, host) and a heartbeat.

    On its own host a holder is alive while its pid runs with the recorded start time; from another
    host only the heartbeat can tell (see ``tools.lock``)."""

    __tablename__ = "task_lock"
    task: str = Field(primary_key=True)
    run_id: str  # the job holding the lock: a run, or the tick that drives one
    pid: int
    host: str
    heartbeat: datetime = Field(default_factory=utcnow)
    proc_start: str | None = None  # tools.proc.process_start(pid); None in rows written before v4


class CursorRow(SQLModel, table=True):
    """How far the scheduled loop has read one log file: ingestion resumes here, nothing twice.

    ``head_hash`` (a hash of the file's first bytes) tells a rotated or rewritten file from one that
    only grew: a different head means a new file under the old name, read from the start.
    """

    __tablename__ = "source_cursor"
    task: str = Field(primary_key=True, foreign_key="task.name")
    path: str = Field(primary_key=True)
    offset: int = 0  # bytes consumed (always at a line boundary)
    lines: int = 0  # lines consumed, for file:line error messages
    head_hash: str = ""
    updated_at: datetime = Field(default_factory=utcnow)


class TickRow(SQLModel, table=True):
    """One scheduled-loop tick: what it ingested, what the trigger policy decided and why, what ran."""

    __tablename__ = "tick"
    id: str = Field(primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    status: str  # running | skipped | triggered | busy | failed | interrupted
    ingested: dict[str, Any] = _json(dict)
    decision: dict[str, Any] = _json(dict)
    run_id: str | None = None
    error: str | None = None
    pid: int | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class ServerRow(SQLModel, table=True):
    """A ``kaizen serve`` process: where it listens and what it serves right now.

    Written by the server itself (start, every route change, stop); read by ``promote``/``rollback``
    in other processes, which hot-swap a live server through its admin endpoint (``admin_token``).
    """

    __tablename__ = "server"
    id: str = Field(primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    status: str  # starting | running | stopped | failed | gone
    proxy_url: str = ""
    vllm_url: str = ""
    pid: int
    host: str
    base_version: str
    model_version: str | None = None  # what the task's served name routes to now
    skill_version: int | None = None
    canary: dict[str, Any] = _json(dict)  # {"version", "skill_version", "fraction"} while a canary runs
    log_path: str = ""
    admin_token: str = ""
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    stopped_at: datetime | None = None


class StageTraceRow(SQLModel, table=True):
    """A trace staged by an import that has not been published yet (see ``tools.store.staging``).

    A large import writes its rows here in short transactions, then publishes them into ``trace``
    with one ``INSERT … SELECT``: readers see all of a file or none of it, and other writers wait
    for a chunk, never for the whole import. Rows of a batch that died are swept later.
    """

    __tablename__ = "ingest_stage"
    batch: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    id: str = Field(index=True)
    task: str
    timestamp: datetime | None = None
    model_version: str | None = None
    messages: list[dict[str, Any]] = _json(list)
    output: str = Field(sa_column=Column(Text))
    trace_metadata: dict[str, Any] = _json(dict)
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    source: str | None = None
    content_hash: str = ""
    staged_at: datetime = Field(default_factory=utcnow)


class StageFeedbackRow(SQLModel, table=True):
    """Feedback staged by an import; ``keep`` is decided against the trace's latest feedback before publishing."""

    __tablename__ = "ingest_stage_feedback"
    batch: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    trace_id: str = Field(index=True)
    verdict: str
    correction: str | None = Field(default=None, sa_column=Column(Text))
    reason: str | None = None
    source: str = "human"
    confidence: float | None = None
    content_hash: str = ""  # the event key: what makes a re-import idempotent
    state_hash: str = ""  # the feedback's content alone: equal to the latest means "no change"
    line: int = 0
    keep: bool = True
    staged_at: datetime = Field(default_factory=utcnow)


class PendingRow(SQLModel, table=True):
    """A record the scheduled loop read but cannot import yet, kept (bounded) for a later tick.

    ``kind`` is ``vllm-request`` (a request line whose response line has not been logged yet) or
    ``feedback`` (feedback for a trace that has not arrived yet). ``payload`` is what is needed to
    finish the record later; ``source``/``line`` say where it was read, for reports.
    """

    __tablename__ = "pending_record"
    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(foreign_key="task.name", index=True)
    kind: str
    key: str
    source: str = ""
    line: int = 0
    payload: dict[str, Any] = _json(dict)
    first_seen: datetime = Field(default_factory=utcnow)
