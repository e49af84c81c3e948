"""One import — a trace file, a feedback file, a tick's chunk — staged in bounded chunks, published at once.

Why: a single transaction over a large import holds SQLite's write lock for the whole import, so every
other writer (``kaizen feedback``, ``kaizen task add``, the proxy's ``/feedback``) waits and then fails
with ``database is locked``. Here the slow part — parsing, validating, comparing with what is stored —
happens outside any write transaction; rows go to the ``ingest_stage*`` tables in chunks of
``CHUNK`` (one short transaction each), and the import is published with a few ``INSERT … SELECT``
statements in one short transaction. Readers see all of an import or none of it. A small import
(one chunk) never touches the stage tables: it is checked and written in that one transaction.

The rules every import follows (the README's "Guarantees"):

* **An id names one trace.** A record whose id is already stored (or earlier in the same import)
  with different content — task, messages or output — is refused: a ``LogFormatError`` naming both
  places, and nothing of the import is kept (with ``skip_invalid`` the record and its feedback are
  reported and left out). Same id, same content is a duplicate; its feedback still counts.
* **The latest feedback counts.** Feedback is appended unless it would change nothing — it equals
  the trace's latest feedback — or it is an event already recorded. Events read from a file are
  keyed by the file and line they come from (``by_line``), so re-importing a file adds nothing while
  a later pass → fail → pass from anywhere is kept in order.
* Other writers that commit between staging and publishing are noticed at publish time (the publish
  holds the write lock while it re-checks), so their rows are never overwritten or doubled.

The publishing half (what is dropped, conflicts with other writers, the copy into the live tables) is
the ``Publishing`` mixin of ``kaizen.tools.store.publishing``; ``ImportBatch.publish`` runs it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import delete, func, insert, select, text
from sqlmodel import Session

from kaizen.tools.errors import LogFormatError
from kaizen.tools.proc import pid_alive
from kaizen.tools.schema import FeedbackIn, TraceIn, content_hash
from kaizen.tools.store.publishing import (
    FEEDBACK_FIELDS,
    FEEDBACK_T,
    STAGE_F,
    STAGE_T,
    TRACE_T,
    Publishing,
    chunked,
    execute,
    feedback_state,
    trace_hash,
)
from kaizen.tools.store.tables import TaskRow, utcnow

if TYPE_CHECKING:
    from kaizen.tools.store.base import StoreBase
    from kaizen.tools.store.traces import ImportStats

log = logging.getLogger(__name__)

CHUNK = 2000
"""Rows held in memory before they are written to the stage tables (one short transaction each)."""
STALE_AFTER = timedelta(days=1)


def hold_write_lock(s: Session) -> None:
    """Take the database's write lock now, so that what this transaction reads next stays true until it commits.

    SQLite (through pysqlite) starts a transaction only at the first write, so reads before it see no
    consistent state; a write that changes nothing, first, makes every later read part of the
    transaction. On PostgreSQL it serialises publishers on one row, briefly.
    """
    execute(s, text("UPDATE meta SET value = value WHERE key = 'schema_version'"))


class ImportBatch(Publishing):
    """Stage an import, then publish it (use as a context manager: the stage is always cleaned up).

    Args:
        store: The store to import into.
        path: Where the records come from (reported in errors; stored with each trace as ``path:line``).
        skip_invalid: Report and leave out bad records instead of refusing the import.
        by_line: Key feedback events by ``path`` and line, so re-importing the same file adds nothing.
        stats: The counts to fill in.
    """

    def __init__(self, store: StoreBase, *, path: str, skip_invalid: bool, by_line: bool, stats: ImportStats):
        self.store, self.path, self.skip_invalid, self.by_line, self.stats = (
            store,
            path,
            skip_invalid,
            by_line,
            stats,
        )
        self.at = os.path.abspath(path) if by_line else ""
        self.batch = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.seen: dict[str, tuple[str, str]] = {}  # trace id → (content hash, where it was read)
        self.new_verdicts: dict[str, str | None] = {}  # new traces → verdict of their line (for the counts)
        self.known_ids: set[str] = set()  # trace ids known to exist (feedback files)
        self.traces: list[dict[str, Any]] = []  # not yet staged
        self.feedback: list[dict[str, Any]] = []
        self.staged = False
        self.seq = 0
        self.chunk = CHUNK  # read once, so that staging and publishing agree
        self.n_feedback = 0  # feedback items staged (kept or not)
        self.kept_verdicts: dict[str, int] = {}  # verdict → feedback rows published
        self._tasks: set[str] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.staged:
            self._drop_stage()

    # ------------------------------------------------------------------------------- stage
    def add_traces(self, items: Iterable[tuple[int, TraceIn]], default_task: str | None) -> None:
        """Check and stage ``(line, trace)`` pairs (a generator is read once, a chunk at a time)."""
        chunk: list[tuple[int, TraceIn]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk:
                self._trace_chunk(chunk, default_task)
                chunk = []
        if chunk:
            self._trace_chunk(chunk, default_task)

    def add_feedback(
        self,
        items: Iterable[tuple[int, FeedbackIn]],
        on_missing: Callable[[int, FeedbackIn], None] | None = None,
    ) -> None:
        """Check and stage ``(line, feedback)`` pairs; feedback for an unknown trace goes to ``on_missing`` if given."""
        chunk: list[tuple[int, FeedbackIn]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk:
                self._feedback_chunk(chunk, on_missing)
                chunk = []
        if chunk:
            self._feedback_chunk(chunk, on_missing)

    def _task_names(self) -> set[str]:
        if self._tasks is None:
            with self.store.session() as s:
                self._tasks = set(execute(s, select(TaskRow.__table__.c.name)).scalars())  # type: ignore[attr-defined]
        return self._tasks

    def _trace_chunk(self, chunk: list[tuple[int, TraceIn]], default_task: str | None) -> None:
        tasks = self._task_names()
        ready: list[tuple[int, TraceIn, str, str, list[dict[str, Any]], str]] = []
        for line, tr in chunk:
            task = tr.task or default_task
            if not task:
                self._invalid(
                    LogFormatError(
                        self.path, line, "task", 'no task given: pass --task NAME or set "task" on each line'
                    )
                )
                continue
            if task not in tasks:
                self._invalid(
                    LogFormatError(
                        self.path,
                        line,
                        "task",
                        f"unknown task {task!r}: add it with "
                        f"`kaizen task add {task} --kind ...` or declare it in kaizen.yaml",
                    )
                )
                continue
            messages = [m.model_dump() for m in tr.messages]
            tid = tr.id or tr.content_id(task)
            ready.append((line, tr, task, tid, messages, trace_hash(task, messages, tr.output)))
        stored = self._stored_traces([r[3] for r in ready if r[3] not in self.seen])
        for line, tr, task, tid, messages, h in ready:
            known = self.seen.get(tid) or stored.get(tid)
            if known is not None and known[0] != h:
                self._invalid(
                    LogFormatError(
                        self.path,
                        line,
                        "id",
                        f"trace id {tid!r} is already used by a different trace ({known[1]}): refused, so that feedback "
                        "cannot land on the wrong trace; give every record its own id (a reused request id?) or leave "
                        '"id" out to derive it from the content',
                    )
                )
                continue
            if known is not None:
                self.stats.duplicates += 1
                self.seen.setdefault(tid, known)
            else:
                self.seen[tid] = (h, f"{self.path}:{line}")
                verdict = tr.feedback.verdict if tr.feedback else None
                self.new_verdicts[tid] = verdict
                self.stats.imported += 1
                self.stats.failures += verdict == "fail"
                self.stats.passes += verdict == "pass"
                self.stats.unlabeled += verdict is None
                self.seq += 1
                self.traces.append(
                    {
                        "batch": self.batch,
                        "seq": self.seq,
                        "id": tid,
                        "task": task,
                        "timestamp": _utc(tr.timestamp),
                        "model_version": tr.model_version,
                        "messages": messages,
                        "output": tr.output,
                        "trace_metadata": tr.metadata,
                        "latency_ms": tr.latency_ms,
                        "prompt_tokens": tr.prompt_tokens,
                        "completion_tokens": tr.completion_tokens,
                        "source": f"{self.path}:{line}",
                        "content_hash": h,
                        "staged_at": utcnow(),
                    }
                )
            if tr.feedback is not None:
                self._stage_feedback(tid, line, tr.feedback.model_dump())
        self._maybe_flush()

    def _stored_traces(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """id → (content hash, where it came from) of the stored traces among ``ids``."""
        out: dict[str, tuple[str, str]] = {}
        if not ids:
            return out
        with self.store.session() as s:
            for part in chunked(sorted(set(ids))):
                q = select(
                    TRACE_T.c.id, TRACE_T.c.task, TRACE_T.c.messages, TRACE_T.c.output, TRACE_T.c.source
                )
                for tid, task, messages, output, source in execute(s, q.where(TRACE_T.c.id.in_(part))):
                    out[tid] = (
                        trace_hash(task, messages, output),
                        f"stored from {source or 'an earlier import'}",
                    )
        return out

    def _feedback_chunk(
        self, chunk: list[tuple[int, FeedbackIn]], on_missing: Callable[[int, FeedbackIn], None] | None
    ) -> None:
        ask = sorted({fb.trace_id for _, fb in chunk} - self.known_ids - set(self.seen))
        if ask:
            with self.store.session() as s:
                for part in chunked(ask):
                    self.known_ids.update(
                        execute(s, select(TRACE_T.c.id).where(TRACE_T.c.id.in_(part))).scalars()
                    )
        for line, fb in chunk:
            if fb.trace_id not in self.known_ids and fb.trace_id not in self.seen:
                if on_missing is not None:
                    on_missing(line, fb)
                    continue
                self._invalid(
                    LogFormatError(
                        self.path,
                        line,
                        "trace_id",
                        f"no trace with id {fb.trace_id!r}: import the trace first",
                    )
                )
                continue
            self._stage_feedback(fb.trace_id, line, fb.model_dump(exclude={"trace_id"}))
        self._maybe_flush()

    def _stage_feedback(self, trace_id: str, line: int, fb: dict[str, Any]) -> None:
        event = {"trace_id": trace_id, **fb} | ({"at": f"{self.at}:{line}"} if self.by_line else {})
        self.seq += 1
        self.n_feedback += 1
        self.feedback.append(
            {
                "batch": self.batch,
                "seq": self.seq,
                "trace_id": trace_id,
                **{k: fb.get(k) for k in FEEDBACK_FIELDS},
                "content_hash": content_hash(event),
                "state_hash": feedback_state(fb),
                "line": line,
                "keep": True,
                "staged_at": utcnow(),
            }
        )

    def _maybe_flush(self) -> None:
        if len(self.traces) + len(self.feedback) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self.staged:
            self._sweep()
            self.staged = True
        with self.store.session() as s:
            if self.traces:
                execute(s, insert(STAGE_T), self.traces)
            if self.feedback:
                execute(s, insert(STAGE_F), self.feedback)
        self.traces, self.feedback = [], []

    def _sweep(self) -> None:
        """Remove what imports that died left in the stage tables (their process is gone, or a day passed)."""
        host = socket.gethostname()
        old = utcnow() - STALE_AFTER
        with self.store.session() as s:
            batches = {
                b: t
                for b, t in execute(
                    s, select(STAGE_T.c.batch, func.min(STAGE_T.c.staged_at)).group_by(STAGE_T.c.batch)
                )
            }
            batches |= {
                b: t
                for b, t in execute(
                    s, select(STAGE_F.c.batch, func.min(STAGE_F.c.staged_at)).group_by(STAGE_F.c.batch)
                )
            }
        dead = []
        for b, started in batches.items():
            h, _, rest = b.partition(":")
            pid = rest.partition(":")[0]
            if (h == host and pid.isdigit() and not pid_alive(int(pid))) or (
                started is not None and _utc(started) < old
            ):
                dead.append(b)
        for b in dead:
            log.info("removing rows left in the import stage by a dead import (%s)", b)
            with self.store.session() as s:
                execute(s, delete(STAGE_T).where(STAGE_T.c.batch == b))
                execute(s, delete(STAGE_F).where(STAGE_F.c.batch == b))

    def _drop_stage(self) -> None:
        """Delete this batch's stage rows in short transactions (a failure here only leaves them for the sweep)."""
        try:
            step = 5000
            for lo in range(0, self.seq + 1, step):
                with self.store.session() as s:
                    for t in (STAGE_T, STAGE_F):
                        execute(
                            s, delete(t).where(t.c.batch == self.batch, t.c.seq > lo, t.c.seq <= lo + step)
                        )
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the import's own outcome
            log.warning("could not clean the import stage (%s); a later import removes the rows", e)

    # ----------------------------------------------------------------------------- publish
    def publish(self, also: Callable[[Session], None] | None = None) -> None:
        """Make the import visible in one transaction (``also`` runs inside it: a tick moves its cursor there)."""
        if self.staged:
            self._flush()
            with self.store.session() as s:
                watermark = execute(s, select(func.max(FEEDBACK_T.c.id))).scalar() or 0
            self._mark(self._resolve_staged(), reset=False)
        with self.store.session() as s:
            hold_write_lock(s)
            if self.staged:
                self._conflicts_staged(s)
                ours = select(STAGE_F.c.trace_id).where(STAGE_F.c.batch == self.batch)
                newer = (
                    select(FEEDBACK_T.c.id)
                    .where(FEEDBACK_T.c.id > watermark, FEEDBACK_T.c.trace_id.in_(ours))
                    .limit(1)
                )
                changed = execute(s, newer).first()
                if (
                    changed is not None
                ):  # someone gave feedback on these traces meanwhile: decide again, under the lock
                    self._mark(self._resolve_staged(s), reset=True, session=s)
                self._insert_staged(s)
            else:
                self._conflicts_memory(s)
                drop = self._resolve(
                    s, [(f["seq"], f["trace_id"], f["content_hash"], f["state_hash"]) for f in self.feedback]
                )
                self.feedback = [f for f in self.feedback if f["seq"] not in drop]
                self._insert_memory(s)
            if also is not None:
                also(s)


def _utc(t: Any) -> Any:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
