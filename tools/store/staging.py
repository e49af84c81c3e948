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
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlmodel import Session

from kaizen.tools.errors import LogFormatError
from kaizen.tools.proc import pid_alive
from kaizen.tools.schema import FeedbackIn, TraceIn, content_hash
from kaizen.tools.store.tables import FeedbackRow, StageFeedbackRow, StageTraceRow, TaskRow, TraceRow, utcnow

if TYPE_CHECKING:
    from kaizen.tools.store.base import StoreBase
    from kaizen.tools.store.traces import ImportStats

log = logging.getLogger(__name__)

CHUNK = 2000
"""Rows held in memory before they are written to the stage tables (one short transaction each)."""
_IN = 500  # ids per ``IN (...)`` query: far below every database's parameter limit
STALE_AFTER = timedelta(days=1)
_FB_FIELDS = ("verdict", "correction", "reason", "source", "confidence")

TRACE_T = TraceRow.__table__  # type: ignore[attr-defined]
FEEDBACK_T = FeedbackRow.__table__  # type: ignore[attr-defined]
STAGE_T = StageTraceRow.__table__  # type: ignore[attr-defined]
STAGE_F = StageFeedbackRow.__table__  # type: ignore[attr-defined]


def trace_hash(task: str, messages: list[dict[str, Any]], output: str) -> str:
    """What makes two records with one id the same trace: task, messages and output."""
    return content_hash({"task": task, "messages": messages, "output": output})


def feedback_state(fb: dict[str, Any]) -> str:
    """The feedback's content alone (verdict, correction, reason, source, confidence)."""
    return content_hash({k: fb.get(k) for k in _FB_FIELDS})


def hold_write_lock(s: Session) -> None:
    """Take the database's write lock now, so that what this transaction reads next stays true until it commits.

    SQLite (through pysqlite) starts a transaction only at the first write, so reads before it see no
    consistent state; a write that changes nothing, first, makes every later read part of the
    transaction. On PostgreSQL it serialises publishers on one row, briefly.
    """
    _x(s, text("UPDATE meta SET value = value WHERE key = 'schema_version'"))


def _x(s: Session, statement: Any, params: Any = None) -> Any:
    """Run a Core statement in the session's transaction (``params``: a list of rows for executemany)."""
    return (
        s.connection().execute(statement, params) if params is not None else s.connection().execute(statement)
    )


def _chunks(seq: list[Any], n: int = _IN) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class ImportBatch:
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
            if len(chunk) >= CHUNK:
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
            if len(chunk) >= CHUNK:
                self._feedback_chunk(chunk, on_missing)
                chunk = []
        if chunk:
            self._feedback_chunk(chunk, on_missing)

    def _invalid(self, err: LogFormatError) -> None:
        if not self.skip_invalid:
            raise err
        self.stats.invalid += 1
        self.stats.errors.append(str(err))

    def _task_names(self) -> set[str]:
        if self._tasks is None:
            with self.store.session() as s:
                self._tasks = set(_x(s, select(TaskRow.__table__.c.name)).scalars())  # type: ignore[attr-defined]
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
            for part in _chunks(sorted(set(ids))):
                q = select(
                    TRACE_T.c.id, TRACE_T.c.task, TRACE_T.c.messages, TRACE_T.c.output, TRACE_T.c.source
                )
                for tid, task, messages, output, source in _x(s, q.where(TRACE_T.c.id.in_(part))):
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
                for part in _chunks(ask):
                    self.known_ids.update(_x(s, select(TRACE_T.c.id).where(TRACE_T.c.id.in_(part))).scalars())
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
                **{k: fb.get(k) for k in _FB_FIELDS},
                "content_hash": content_hash(event),
                "state_hash": feedback_state(fb),
                "line": line,
                "keep": True,
                "staged_at": utcnow(),
            }
        )

    def _maybe_flush(self) -> None:
        if len(self.traces) + len(self.feedback) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.staged:
            self._sweep()
            self.staged = True
        with self.store.session() as s:
            if self.traces:
                _x(s, insert(STAGE_T), self.traces)
            if self.feedback:
                _x(s, insert(STAGE_F), self.feedback)
        self.traces, self.feedback = [], []

    def _sweep(self) -> None:
        """Remove what imports that died left in the stage tables (their process is gone, or a day passed)."""
        host = socket.gethostname()
        old = utcnow() - STALE_AFTER
        with self.store.session() as s:
            batches = {
                b: t
                for b, t in _x(
                    s, select(STAGE_T.c.batch, func.min(STAGE_T.c.staged_at)).group_by(STAGE_T.c.batch)
                )
            }
            batches |= {
                b: t
                for b, t in _x(
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
                _x(s, delete(STAGE_T).where(STAGE_T.c.batch == b))
                _x(s, delete(STAGE_F).where(STAGE_F.c.batch == b))

    def _drop_stage(self) -> None:
        """Delete this batch's stage rows in short transactions (a failure here only leaves them for the sweep)."""
        try:
            step = 5000
            for lo in range(0, self.seq + 1, step):
                with self.store.session() as s:
                    for t in (STAGE_T, STAGE_F):
                        _x(s, delete(t).where(t.c.batch == self.batch, t.c.seq > lo, t.c.seq <= lo + step))
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the import's own outcome
            log.warning("could not clean the import stage (%s); a later import removes the rows", e)

    # ----------------------------------------------------------------------------- publish
    def publish(self, also: Callable[[Session], None] | None = None) -> None:
        """Make the import visible in one transaction (``also`` runs inside it: a tick moves its cursor there)."""
        if self.staged:
            self._flush()
            with self.store.session() as s:
                watermark = _x(s, select(func.max(FEEDBACK_T.c.id))).scalar() or 0
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
                changed = _x(s, newer).first()
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

    def _resolve(self, s: Session, rows: Iterable[tuple[int, str, str, str]]) -> set[int]:
        """Seqs of feedback to leave out: already-recorded events, and feedback equal to the trace's latest."""
        latest: dict[str, str | None] = {}
        drop: set[int] = set()
        batch = list(rows)
        for part in _chunks(batch, CHUNK):
            need = sorted({tid for _, tid, _, _ in part} - set(latest))
            for ids in _chunks(need):
                newest = (
                    select(func.max(FEEDBACK_T.c.id))
                    .where(FEEDBACK_T.c.trace_id.in_(ids))
                    .group_by(FEEDBACK_T.c.trace_id)
                )
                q = select(FEEDBACK_T.c.trace_id, *[FEEDBACK_T.c[k] for k in _FB_FIELDS]).where(
                    FEEDBACK_T.c.id.in_(newest)
                )
                for tid, *vals in _x(s, q):
                    latest[tid] = feedback_state(dict(zip(_FB_FIELDS, vals, strict=True)))
            for tid in need:
                latest.setdefault(tid, None)
            recorded: set[str] = set()
            if self.by_line:
                for keys in _chunks(sorted({k for _, _, k, _ in part})):
                    recorded.update(
                        _x(
                            s, select(FEEDBACK_T.c.content_hash).where(FEEDBACK_T.c.content_hash.in_(keys))
                        ).scalars()
                    )
            for seq, tid, key, state in part:
                if key in recorded or latest[tid] == state:
                    drop.add(seq)
                else:
                    latest[tid] = state
                    recorded.add(key)
        return drop

    def _staged_feedback(self, s: Session) -> Iterator[tuple[int, str, str, str]]:
        last = 0
        while True:
            q = (
                select(STAGE_F.c.seq, STAGE_F.c.trace_id, STAGE_F.c.content_hash, STAGE_F.c.state_hash)
                .where(STAGE_F.c.batch == self.batch, STAGE_F.c.seq > last)
                .order_by(STAGE_F.c.seq)
                .limit(CHUNK)
            )
            rows = [tuple(r) for r in _x(s, q)]
            if not rows:
                return
            yield from rows  # type: ignore[misc]
            last = rows[-1][0]

    def _resolve_staged(self, s: Session | None = None) -> set[int]:
        if s is not None:
            return self._resolve(s, self._staged_feedback(s))
        with self.store.session() as rs:
            return self._resolve(rs, self._staged_feedback(rs))

    def _mark(self, drop: set[int], *, reset: bool, session: Session | None = None) -> None:
        def run(s: Session, seqs: list[int]) -> None:
            _x(
                s,
                update(STAGE_F)
                .where(STAGE_F.c.batch == self.batch, STAGE_F.c.seq.in_(seqs))
                .values(keep=False),
            )

        if session is not None:
            if reset:
                _x(session, update(STAGE_F).where(STAGE_F.c.batch == self.batch).values(keep=True))
            for seqs in _chunks(sorted(drop)):
                run(session, seqs)
            return
        for seqs in _chunks(sorted(drop), CHUNK):
            with self.store.session() as s:
                run(s, seqs)

    def _conflict(self, s: Session, tid: str, same: bool, where: str, line: int | None) -> bool:
        """A trace this import would add appeared meanwhile: a duplicate (True) or a refused collision (False)."""
        verdict = self.new_verdicts.pop(tid, None)
        self.stats.imported -= 1
        self.stats.failures -= verdict == "fail"
        self.stats.passes -= verdict == "pass"
        self.stats.unlabeled -= verdict is None
        if same:
            self.stats.duplicates += 1
            return True
        self._invalid(
            LogFormatError(
                self.path,
                line or 0,
                "id",
                f"trace id {tid!r} was just stored by another import with "
                f"different content ({where}): refused; give every record its own id",
            )
        )
        return False

    def _conflicts_staged(self, s: Session) -> None:
        q = (
            select(
                STAGE_T.c.seq,
                STAGE_T.c.id,
                STAGE_T.c.content_hash,
                STAGE_T.c.source,
                TRACE_T.c.task,
                TRACE_T.c.messages,
                TRACE_T.c.output,
                TRACE_T.c.source,
            )
            .join(TRACE_T, TRACE_T.c.id == STAGE_T.c.id)
            .where(STAGE_T.c.batch == self.batch)
        )
        for seq, tid, h, ours, task, messages, output, theirs in list(_x(s, q)):
            same = trace_hash(task, messages, output) == h
            line = int(ours.rsplit(":", 1)[1]) if ours and ours.rsplit(":", 1)[-1].isdigit() else None
            _x(s, delete(STAGE_T).where(STAGE_T.c.batch == self.batch, STAGE_T.c.seq == seq))
            if not self._conflict(s, tid, same, f"stored from {theirs}", line):
                _x(s, delete(STAGE_F).where(STAGE_F.c.batch == self.batch, STAGE_F.c.trace_id == tid))

    def _conflicts_memory(self, s: Session) -> None:
        ids = [t["id"] for t in self.traces]
        if not ids:
            return
        found: dict[str, tuple[str, str]] = {}
        for part in _chunks(ids):
            q = select(TRACE_T.c.id, TRACE_T.c.task, TRACE_T.c.messages, TRACE_T.c.output, TRACE_T.c.source)
            for tid, task, messages, output, source in _x(s, q.where(TRACE_T.c.id.in_(part))):
                found[tid] = (trace_hash(task, messages, output), f"stored from {source}")
        if not found:
            return
        keep = []
        for t in self.traces:
            if t["id"] not in found:
                keep.append(t)
                continue
            line = int(t["source"].rsplit(":", 1)[1])
            if not self._conflict(
                s, t["id"], found[t["id"]][0] == t["content_hash"], found[t["id"]][1], line
            ):
                self.feedback = [f for f in self.feedback if f["trace_id"] != t["id"]]
        self.traces = keep

    def _insert_staged(self, s: Session) -> None:
        now = utcnow()
        cols, sel = _copy_columns(TRACE_T, STAGE_T, {"imported_at": now})
        _x(
            s,
            insert(TRACE_T).from_select(
                cols, select(*sel).where(STAGE_T.c.batch == self.batch).order_by(STAGE_T.c.seq)
            ),
        )
        cols, sel = _copy_columns(FEEDBACK_T, STAGE_F, {"created_at": now})
        kept = (
            select(*sel)
            .where(STAGE_F.c.batch == self.batch, STAGE_F.c.keep.is_(True))
            .order_by(STAGE_F.c.seq)
        )
        _x(s, insert(FEEDBACK_T).from_select(cols, kept))
        counts = dict(
            _x(
                s,
                select(STAGE_F.c.verdict, func.count())
                .where(STAGE_F.c.batch == self.batch, STAGE_F.c.keep.is_(True))
                .group_by(STAGE_F.c.verdict),
            ).all()
        )
        self.kept_verdicts = counts
        self.stats.feedback_added = sum(counts.values())

    def _insert_memory(self, s: Session) -> None:
        now = utcnow()
        if self.traces:
            names = {c.name for c in TRACE_T.columns}
            _x(
                s,
                insert(TRACE_T),
                [{k: v for k, v in t.items() if k in names} | {"imported_at": now} for t in self.traces],
            )
        counts: dict[str, int] = {}
        if self.feedback:
            names = {c.name for c in FEEDBACK_T.columns} - {"id"}
            _x(
                s,
                insert(FEEDBACK_T),
                [{k: v for k, v in f.items() if k in names} | {"created_at": now} for f in self.feedback],
            )
            for f in self.feedback:
                counts[f["verdict"]] = counts.get(f["verdict"], 0) + 1
        self.kept_verdicts = counts
        self.stats.feedback_added = sum(counts.values())


def _copy_columns(target: Any, stage: Any, fixed: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Columns of ``target`` filled from the same-named ``stage`` columns (``fixed``: constant values)."""
    cols, sel = [], []
    for c in target.columns:
        if c.name in fixed:
            cols.append(c.name)
            sel.append(literal(fixed[c.name], type_=c.type).label(c.name))
        elif c.name in stage.c:
            cols.append(c.name)
            sel.append(stage.c[c.name])
    return cols, sel


def _utc(t: Any) -> Any:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
