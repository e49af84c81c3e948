"""The repository API: every read and write the CLI and the agent make goes through ``Store``.

No raw SQL outside this package. Each public write is one transaction: it commits fully or not at
all, which is what lets a bad import or a killed process leave the database consistent.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from kaizen.tools.errors import ConfigError, NotFoundError, WorkspaceError
from kaizen.tools.schema import FeedbackIn, TaskSpec, TraceIn
from kaizen.tools.store import dberror
from kaizen.tools.store.db import check_schema, create_schema, make_engine
from kaizen.tools.store.staging import ImportBatch
from kaizen.tools.store.tables import (
    AliasEvent,
    AliasRow,
    CursorRow,
    EvalResultRow,
    FeedbackRow,
    LockRow,
    ModelVersionRow,
    PendingRow,
    RunRow,
    ServerRow,
    SkillRow,
    TaskRow,
    TickRow,
    TraceRow,
    utcnow,
)


@dataclass
class ImportStats:
    """What one ``kaizen ingest`` did; printed as JSON with ``--json``."""

    imported: int = 0
    duplicates: int = 0
    invalid: int = 0
    failures: int = 0
    passes: int = 0
    unlabeled: int = 0
    feedback_added: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("imported", "duplicates", "invalid", "failures", "passes", "unlabeled")
        } | {
            "feedback_added": self.feedback_added,
            "errors": self.errors,
        }


@dataclass
class TraceView:
    """A trace with its latest feedback: what diagnosis and data building read."""

    id: str
    task: str
    messages: list[dict[str, Any]]
    output: str
    verdict: str | None
    correction: str | None
    reason: str | None
    feedback_source: str | None
    metadata: dict[str, Any]
    timestamp: datetime | None
    model_version: str | None

    @property
    def gold(self) -> str | None:
        """The right answer as feedback says: the correction of a failure, the output of a pass."""
        if self.verdict == "pass":
            return self.output
        if self.verdict == "fail":
            return self.correction
        return None


def as_utc(t: datetime | None) -> datetime | None:
    """Naive timestamps in logs are taken as UTC; aware ones are converted."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def task_row_to_spec(row: TaskRow) -> TaskSpec:
    return TaskSpec(
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]
        description=row.description,
        labels=list(row.labels or []),
        system_prompt=row.system_prompt,
        metric=row.metric,
        base_model=row.base_model,
    )


class Store:
    """Repository over one database URL (SQLite file by default, any SQLAlchemy URL)."""

    def __init__(self, url: str, *, create: bool = False):
        """Open the store at ``url`` (``create``: make the schema; otherwise the database must exist already).

        Raises:
            WorkspaceError: The database is missing (a read never creates one), damaged, not kaizen's,
                read-only, unreachable, or the URL is not a database URL — one line with the fix.
        """
        self.url = url
        path = dberror.sqlite_file(url)
        if path is not None and not create and not path.exists():
            raise WorkspaceError(
                f"database {path} does not exist (deleted or moved?): restore it from a backup, or run "
                "`kaizen init` to start an empty one"
            )
        try:
            self.engine = make_engine(url)
            if create:
                create_schema(self.engine, url)
            check_schema(self.engine, url)
        except ImportError as e:
            raise WorkspaceError(
                f"database URL {dberror.mask_url(url)} needs a driver that is not installed ({e}): "
                "install it, or fix KAIZEN_DB_URL"
            ) from None
        except Exception as e:
            if (err := dberror.describe(e, url)) is not None:
                raise err from None
            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error.

        A database that cannot be used (damaged, read-only, unreachable) raises ``WorkspaceError``
        with the fix instead of the driver's exception.
        """
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise
        except Exception as e:
            if (err := dberror.describe(e, self.url)) is not None:
                raise err from None
            raise

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------------------------- tasks
    def add_task(self, spec: TaskSpec, *, declared_in: str = "cli", base_version: str = "base") -> None:
        """Create a task; its ``production`` alias starts at ``base_version``."""
        with self.session() as s:
            if s.get(TaskRow, spec.name):
                raise ConfigError(f"task {spec.name!r} already exists: see `kaizen task show {spec.name}`")
            if s.get(ModelVersionRow, base_version) is None:
                raise NotFoundError(f"model version {base_version!r} not found: run `kaizen init` first")
            s.add(TaskRow(declared_in=declared_in, **spec.model_dump()))
            s.flush()
            s.add(AliasRow(task=spec.name, alias="production", model_version=base_version))
            s.add(AliasEvent(task=spec.name, alias="production", model_version=base_version, action="init"))

    def sync_declared_tasks(self, specs: Iterable[TaskSpec]) -> None:
        """Make tasks declared in kaizen.yaml exist (and match it) in the store."""
        for spec in specs:
            with self.session() as s:
                row = s.get(TaskRow, spec.name)
                if row is not None:
                    for k, v in spec.model_dump().items():
                        setattr(row, k, v)
                    row.declared_in = "kaizen.yaml"
                    s.add(row)
                    continue
            self.add_task(spec, declared_in="kaizen.yaml")

    def get_task(self, name: str) -> TaskSpec:
        with self.session() as s:
            row = s.get(TaskRow, name)
            if row is None:
                known = ", ".join(r.name for r in s.exec(select(TaskRow))) or "none yet"
                raise NotFoundError(
                    f"unknown task {name!r} (known: {known}): add it with `kaizen task add {name} --kind ...` "
                    "or declare it in kaizen.yaml"
                )
            return task_row_to_spec(row)

    def list_tasks(self) -> list[tuple[TaskSpec, str]]:
        with self.session() as s:
            return [
                (task_row_to_spec(r), r.declared_in) for r in s.exec(select(TaskRow).order_by(TaskRow.name))
            ]

    # ---------------------------------------------------------------------------------- traces
    def import_traces(
        self,
        items: Iterable[tuple[int, TraceIn]],
        *,
        path: str,
        default_task: str | None,
        skip_invalid: bool = False,
        also: Callable[[Session], None] | None = None,
    ) -> ImportStats:
        """Import ``(line, trace)`` pairs (and their feedback) atomically; already-present traces are duplicates.

        ``items`` may be a generator: it is read once, a bounded chunk at a time, and staged outside
        any long transaction (see ``kaizen.tools.store.staging``); the import becomes visible in one
        short transaction at the end, all of it or nothing. An unknown or missing task, or an id that
        is already used by a different trace, is a line error: it aborts the whole import unless
        ``skip_invalid``, in which case the line is reported and left out (with its feedback). ``also``
        runs inside the publishing transaction (the scheduled loop moves its read cursor there:
        imported ⇔ cursor moved). Each trace records ``path:line`` as its source.
        """
        stats = ImportStats()
        with ImportBatch(self, path=path, skip_invalid=skip_invalid, by_line=True, stats=stats) as batch:
            batch.add_traces(items, default_task)
            batch.publish(also)
        return stats

    def add_feedback(
        self,
        items: Iterable[tuple[int, FeedbackIn]],
        *,
        path: str,
        skip_invalid: bool = False,
        also: Callable[[Session], None] | None = None,
        by_line: bool | None = None,
        on_missing: Callable[[int, FeedbackIn], None] | None = None,
    ) -> ImportStats:
        """Attach feedback to stored traces, atomically; the latest feedback of a trace is the one that counts.

        Feedback equal to the trace's latest is not appended again (it changes nothing); any other is,
        so pass → fail → pass ends at pass. With ``by_line`` (default: when ``path`` is a file) each
        item is an event keyed by ``path`` and its line, so importing the same file again adds nothing.
        Feedback for an unknown trace is a line error, unless ``on_missing`` takes it (the scheduled
        loop keeps it for a later tick). ``also``: as in ``import_traces``.
        """
        stats = ImportStats()
        keyed = os.path.isfile(path) if by_line is None else by_line
        with ImportBatch(self, path=path, skip_invalid=skip_invalid, by_line=keyed, stats=stats) as batch:
            batch.add_feedback(items, on_missing)
            batch.publish(also)
        stats.duplicates = batch.n_feedback - stats.feedback_added
        stats.failures = batch.kept_verdicts.get("fail", 0)
        stats.passes = batch.kept_verdicts.get("pass", 0)
        return stats

    def trace_messages(self, ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """id → input messages of the stored traces among ``ids``."""
        wanted, found = sorted(set(ids)), {}
        with self.session() as s:
            for i in range(0, len(wanted), 500):
                q = select(TraceRow.id, TraceRow.messages).where(col(TraceRow.id).in_(wanted[i : i + 500]))
                found.update({tid: messages for tid, messages in s.exec(q)})
        return found

    def traces(self, task: str, *, ids: Iterable[str] | None = None) -> list[TraceView]:
        """Every trace of ``task`` with its latest feedback, oldest first."""
        with self.session() as s:
            q = select(TraceRow).where(TraceRow.task == task)
            if ids is not None:
                q = q.where(col(TraceRow.id).in_(list(ids)))
            rows = list(
                s.exec(q.order_by(col(TraceRow.timestamp), col(TraceRow.imported_at), col(TraceRow.id)))
            )
            latest_ids = (
                select(func.max(FeedbackRow.id))
                .join(TraceRow, TraceRow.id == FeedbackRow.trace_id)
                .where(TraceRow.task == task)
                .group_by(FeedbackRow.trace_id)
            )
            fbs = {
                f.trace_id: f for f in s.exec(select(FeedbackRow).where(col(FeedbackRow.id).in_(latest_ids)))
            }
        out = []
        for r in rows:
            f = fbs.get(r.id)
            out.append(
                TraceView(
                    id=r.id,
                    task=r.task,
                    messages=r.messages,
                    output=r.output,
                    verdict=f.verdict if f else None,
                    correction=f.correction if f else None,
                    reason=f.reason if f else None,
                    feedback_source=f.source if f else None,
                    metadata=r.trace_metadata,
                    timestamp=r.timestamp,
                    model_version=r.model_version,
                )
            )
        return out

    def trace_stats(self, task: str) -> dict[str, Any]:
        """Counts, failure rate and label distribution (gold per feedback) for a task."""
        spec = self.get_task(task)
        views = self.traces(task)
        verdicts = Counter(v.verdict or "unlabeled" for v in views)
        labeled = verdicts["pass"] + verdicts["fail"]
        stats: dict[str, Any] = {
            "task": task,
            "traces": len(views),
            "passes": verdicts["pass"],
            "failures": verdicts["fail"],
            "unlabeled": verdicts["unlabeled"],
            "failure_rate": round(verdicts["fail"] / labeled, 4) if labeled else None,
            "failures_without_correction": sum(1 for v in views if v.verdict == "fail" and not v.correction),
        }
        if spec.kind == "classification":
            stats["gold_labels"] = dict(Counter(v.gold for v in views if v.gold is not None).most_common())
            stats["outputs"] = dict(Counter(v.output.strip() for v in views).most_common())
        return stats

    # ---------------------------------------------------------------------------------- models
    def add_model_version(self, row: ModelVersionRow) -> ModelVersionRow:
        with self.session() as s:
            if s.get(ModelVersionRow, row.name) is not None:
                raise ConfigError(f"model version {row.name!r} already exists: pick another name")
            if row.kind == "adapter" and s.get(ModelVersionRow, row.base_ref) is None:
                raise NotFoundError(f"base version {row.base_ref!r} not found: see `kaizen models list`")
            s.add(row)
        return row

    def update_model_metrics(self, name: str, metrics: dict[str, Any]) -> ModelVersionRow:
        """Merge ``metrics`` into a version's metrics (e.g. the suites it was promoted on)."""
        with self.session() as s:
            row = s.get(ModelVersionRow, name)
            if row is None:
                raise NotFoundError(f"model version {name!r} not found: see `kaizen models list`")
            row.metrics = dict(row.metrics or {}) | metrics
            s.add(row)
            return row

    def get_model_version(self, name: str) -> ModelVersionRow:
        with self.session() as s:
            row = s.get(ModelVersionRow, name)
            if row is None:
                raise NotFoundError(f"model version {name!r} not found: see `kaizen models list`")
            return row

    def list_model_versions(self, task: str | None = None) -> list[ModelVersionRow]:
        with self.session() as s:
            q = select(ModelVersionRow).order_by(col(ModelVersionRow.created_at))
            if task:
                q = q.where((ModelVersionRow.task == task) | (col(ModelVersionRow.task).is_(None)))
            return list(s.exec(q))

    def get_alias(self, task: str, alias: str) -> AliasRow | None:
        with self.session() as s:
            return s.get(AliasRow, (task, alias))

    def aliases(self, task: str) -> dict[str, AliasRow]:
        with self.session() as s:
            return {a.alias: a for a in s.exec(select(AliasRow).where(AliasRow.task == task))}

    def alias_history(self, task: str) -> list[AliasEvent]:
        with self.session() as s:
            return list(
                s.exec(select(AliasEvent).where(AliasEvent.task == task).order_by(col(AliasEvent.id)))
            )

    def set_aliases(
        self,
        task: str,
        changes: dict[str, tuple[str, int | None]],
        *,
        action: str,
        actor: str = "",
        note: str = "",
    ) -> None:
        """Move several aliases of a task in one transaction, recording each move."""
        with self.session() as s:
            for alias, (version, skill) in changes.items():
                row = s.get(AliasRow, (task, alias)) or AliasRow(
                    task=task, alias=alias, model_version=version
                )
                row.model_version, row.skill_version, row.updated_at = version, skill, utcnow()
                s.add(row)
                s.add(
                    AliasEvent(
                        task=task,
                        alias=alias,
                        model_version=version,
                        skill_version=skill,
                        action=action,
                        actor=actor,
                        note=note,
                    )
                )

    # ----------------------------------------------------------------------------------- evals
    def add_eval_result(self, row: EvalResultRow) -> EvalResultRow:
        with self.session() as s:
            s.add(row)
            s.flush()
            s.refresh(row)
        return row

    def eval_results(self, task: str | None = None, model_version: str | None = None) -> list[EvalResultRow]:
        with self.session() as s:
            q = select(EvalResultRow).order_by(col(EvalResultRow.id))
            if task:
                q = q.where(EvalResultRow.task == task)
            if model_version:
                q = q.where(EvalResultRow.model_version == model_version)
            return list(s.exec(q))

    # ------------------------------------------------------------------------------------ runs
    def get_run(self, run_id: str) -> RunRow:
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise NotFoundError(f"run {run_id!r} not found: see `kaizen runs list`")
            return row

    def list_runs(self, task: str | None = None) -> list[RunRow]:
        with self.session() as s:
            q = select(RunRow).order_by(col(RunRow.created_at).desc())
            if task:
                q = q.where(RunRow.task == task)
            return list(s.exec(q))

    def save_run(self, row: RunRow) -> RunRow:
        with self.session() as s:
            row.updated_at = utcnow()
            s.merge(row)
        return row

    def feedback_log(self, task: str) -> list[tuple[datetime, str]]:
        """(recorded at, verdict) of every feedback on the task's traces, oldest first (the scheduled loop's trigger)."""
        with self.session() as s:
            q = (
                select(FeedbackRow.created_at, FeedbackRow.verdict)
                .join(TraceRow, col(TraceRow.id) == col(FeedbackRow.trace_id))
                .where(TraceRow.task == task)
                .order_by(col(FeedbackRow.id))
            )
            return [(t, v) for t, v in s.exec(q)]

    def trace_inputs(self, task: str) -> list[tuple[datetime, list[dict[str, Any]]]]:
        """(imported at, messages) of the task's traces in import order (drift against earlier inputs)."""
        with self.session() as s:
            return [
                (t, m)
                for t, m in s.exec(
                    select(TraceRow.imported_at, TraceRow.messages)
                    .where(TraceRow.task == task)
                    .order_by(col(TraceRow.imported_at))
                )
            ]

    # ---------------------------------------------------------------------------------- skills
    def add_skill(self, task: str, body: dict[str, Any], parent: int | None) -> dict[str, Any]:
        """Store ``body`` as the task's next skill version, in one transaction; returns the stored body.

        A version with the same content and parent already stored is returned instead (a resumed
        run that re-asks the brain must not mint a duplicate).
        """

        def content(b: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in b.items() if k not in ("name", "version")}

        with self.session() as s:
            for row in s.exec(select(SkillRow).where(SkillRow.task == task, SkillRow.parent == parent)):
                if content(row.body) == content(body):
                    return row.body
            last = s.exec(
                select(SkillRow.version).where(SkillRow.task == task).order_by(col(SkillRow.version).desc())
            ).first()
            stored = content(body) | {"name": task, "version": (last or 0) + 1}
            s.add(SkillRow(task=task, version=stored["version"], body=stored, parent=parent))
        return stored

    def get_skill_row(self, task: str, version: int) -> SkillRow | None:
        with self.session() as s:
            return s.exec(select(SkillRow).where(SkillRow.task == task, SkillRow.version == version)).first()

    def skill_rows(self, task: str) -> list[SkillRow]:
        with self.session() as s:
            return list(s.exec(select(SkillRow).where(SkillRow.task == task).order_by(col(SkillRow.version))))

    # ------------------------------------------------------------------- cursors and waiting records
    def cursor(self, task: str, path: str) -> CursorRow:
        """How far the scheduled loop has read ``path`` for ``task`` (a fresh row at 0 when never)."""
        with self.session() as s:
            return s.get(CursorRow, (task, path)) or CursorRow(task=task, path=path)

    def cursor_positions(self, task: str) -> dict[str, int]:
        """file → bytes consumed."""
        with self.session() as s:
            return {r.path: r.offset for r in s.exec(select(CursorRow).where(CursorRow.task == task))}

    @staticmethod
    def move_cursor(s: Session, task: str, path: str, offset: int, lines: int, head_hash: str) -> None:
        """Inside an import's transaction (its ``also``): the cursor moves with the import."""
        row = s.get(CursorRow, (task, path)) or CursorRow(task=task, path=path)
        row.offset, row.lines, row.head_hash, row.updated_at = offset, lines, head_hash, utcnow()
        s.add(row)

    def pending(self, task: str, kind: str | None = None) -> list[PendingRow]:
        """The task's waiting records (of ``kind``), oldest first."""
        with self.session() as s:
            q = select(PendingRow).where(PendingRow.task == task)
            if kind is not None:
                q = q.where(PendingRow.kind == kind)
            return list(s.exec(q.order_by(col(PendingRow.id))))

    @staticmethod
    def add_pending(s: Session, rows: Iterable[PendingRow]) -> None:
        """Inside a transaction: records that start waiting."""
        s.add_all(list(rows))

    def replace_pending(
        self, task: str, kind: str, rows: Iterable[PendingRow], s: Session | None = None
    ) -> None:
        """The task's waiting records of ``kind`` become ``rows`` (in ``s``'s transaction when given)."""
        if s is None:
            with self.session() as own:
                return self.replace_pending(task, kind, rows, own)
        s.exec(delete(PendingRow).where(PendingRow.task == task, PendingRow.kind == kind))  # type: ignore[call-overload]
        s.add_all(list(rows))
        return None

    def drop_pending(self, ids: Iterable[int | None], s: Session | None = None) -> None:
        """Records that stop waiting (in ``s``'s transaction when given)."""
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return
        if s is not None:
            s.exec(delete(PendingRow).where(col(PendingRow.id).in_(wanted)))  # type: ignore[call-overload]
            return
        with self.session() as own:
            own.exec(delete(PendingRow).where(col(PendingRow.id).in_(wanted)))  # type: ignore[call-overload]

    # ----------------------------------------------------------------------------------- ticks
    def save_tick(self, row: TickRow) -> TickRow:
        with self.session() as s:
            s.merge(row)
        return row

    def list_ticks(self, task: str | None = None, limit: int = 100) -> list[TickRow]:
        with self.session() as s:
            q = select(TickRow).order_by(col(TickRow.started_at).desc()).limit(limit)
            if task:
                q = q.where(TickRow.task == task)
            return list(s.exec(q))

    # --------------------------------------------------------------------------------- servers
    def save_server(self, row: ServerRow) -> ServerRow:
        with self.session() as s:
            row.updated_at = utcnow()
            s.merge(row)
        return row

    def get_server(self, server_id: str) -> ServerRow:
        with self.session() as s:
            row = s.get(ServerRow, server_id)
            if row is None:
                raise NotFoundError(f"server {server_id!r} not found: see `kaizen servers list`")
            return row

    def list_servers(self, task: str | None = None, status: str | None = None) -> list[ServerRow]:
        with self.session() as s:
            q = select(ServerRow).order_by(col(ServerRow.started_at).desc())
            if task:
                q = q.where(ServerRow.task == task)
            if status:
                q = q.where(ServerRow.status == status)
            return list(s.exec(q))

    # ------------------------------------------------------------------------------ task locks
    # The rows only: who may take a lock over is tools.lock's policy.
    def get_lock(self, task: str) -> LockRow | None:
        with self.session() as s:
            return s.get(LockRow, task)

    def take_lock(self, row: LockRow, *, replacing: LockRow | None = None) -> bool:
        """Write ``row`` if the task's lock is free, or still exactly ``replacing``; False if another holder got there first."""
        try:
            with self.session() as s:
                if replacing is not None:
                    gone = s.exec(
                        delete(LockRow).where(  # type: ignore[call-overload]
                            col(LockRow.task) == replacing.task,
                            col(LockRow.run_id) == replacing.run_id,
                            col(LockRow.pid) == replacing.pid,
                            col(LockRow.host) == replacing.host,
                            col(LockRow.heartbeat) == replacing.heartbeat,
                        )
                    ).rowcount
                    if gone != 1:
                        s.rollback()
                        return False
                s.add(LockRow.model_validate(row.model_dump()))
                s.flush()
        except IntegrityError:
            return False
        return True

    def beat_lock(self, task: str, job_id: str, pid: int, host: str) -> bool:
        """Refresh the heartbeat of the lock ``(job_id, pid, host)`` holds; False if it holds none."""
        with self.session() as s:
            n = s.exec(
                update(LockRow)
                .where(  # type: ignore[call-overload]
                    col(LockRow.task) == task,
                    col(LockRow.run_id) == job_id,
                    col(LockRow.pid) == pid,
                    col(LockRow.host) == host,
                )
                .values(heartbeat=utcnow())
            ).rowcount
        return n == 1

    def drop_lock(self, task: str, job_id: str, pid: int, host: str) -> None:
        """Delete the lock ``(job_id, pid, host)`` holds (a lock another holder took over stays)."""
        with self.session() as s:
            s.exec(
                delete(LockRow).where(  # type: ignore[call-overload]
                    col(LockRow.task) == task,
                    col(LockRow.run_id) == job_id,
                    col(LockRow.pid) == pid,
                    col(LockRow.host) == host,
                )
            )
