"""The publishing half of an import: one short transaction that makes a staged import visible.

``ImportBatch`` (``kaizen.tools.store.staging``) stages an import in chunks and then publishes it; its
``publish`` holds the write lock and calls what is here (the ``Publishing`` mixin): drop the feedback
that would change nothing (an event already recorded, or equal to the trace's latest), notice traces
another writer stored meanwhile (a duplicate, or a refused collision), and copy what is left into the
live tables with ``INSERT … SELECT`` (staged) or one ``executemany`` (a small import kept in memory).
The row helpers both halves share live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlmodel import Session

from kaizen.tools.errors import LogFormatError
from kaizen.tools.schema import content_hash
from kaizen.tools.store.tables import FeedbackRow, StageFeedbackRow, StageTraceRow, TraceRow, utcnow

if TYPE_CHECKING:
    from kaizen.tools.store.base import StoreBase
    from kaizen.tools.store.traces import ImportStats

IN_QUERY = 500  # ids per ``IN (...)`` query: far below every database's parameter limit
FEEDBACK_FIELDS = ("verdict", "correction", "reason", "source", "confidence")

TRACE_T = TraceRow.__table__  # type: ignore[attr-defined]
FEEDBACK_T = FeedbackRow.__table__  # type: ignore[attr-defined]
STAGE_T = StageTraceRow.__table__  # type: ignore[attr-defined]
STAGE_F = StageFeedbackRow.__table__  # type: ignore[attr-defined]


def trace_hash(task: str, messages: list[dict[str, Any]], output: str) -> str:
    """What makes two records with one id the same trace: task, messages and output."""
    return content_hash({"task": task, "messages": messages, "output": output})


def feedback_state(fb: dict[str, Any]) -> str:
    """The feedback's content alone (verdict, correction, reason, source, confidence)."""
    return content_hash({k: fb.get(k) for k in FEEDBACK_FIELDS})


def execute(s: Session, statement: Any, params: Any = None) -> Any:
    """Run a Core statement in the session's transaction (``params``: a list of rows for executemany)."""
    return (
        s.connection().execute(statement, params) if params is not None else s.connection().execute(statement)
    )


def chunked(seq: list[Any], n: int = IN_QUERY) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class Publishing:
    """``ImportBatch``'s publishing half (a mixin: the state it reads is set by ``ImportBatch.__init__``)."""

    store: StoreBase
    path: str
    skip_invalid: bool
    by_line: bool
    stats: ImportStats
    batch: str
    chunk: int
    new_verdicts: dict[str, str | None]
    traces: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    kept_verdicts: dict[str, int]

    def _invalid(self, err: LogFormatError) -> None:  # both halves report a bad record through it
        if not self.skip_invalid:
            raise err
        self.stats.invalid += 1
        self.stats.errors.append(str(err))

    def _resolve(self, s: Session, rows: Iterable[tuple[int, str, str, str]]) -> set[int]:
        """Seqs of feedback to leave out: already-recorded events, and feedback equal to the trace's latest."""
        latest: dict[str, str | None] = {}
        drop: set[int] = set()
        batch = list(rows)
        for part in chunked(batch, self.chunk):
            need = sorted({tid for _, tid, _, _ in part} - set(latest))
            for ids in chunked(need):
                newest = (
                    select(func.max(FEEDBACK_T.c.id))
                    .where(FEEDBACK_T.c.trace_id.in_(ids))
                    .group_by(FEEDBACK_T.c.trace_id)
                )
                q = select(FEEDBACK_T.c.trace_id, *[FEEDBACK_T.c[k] for k in FEEDBACK_FIELDS]).where(
                    FEEDBACK_T.c.id.in_(newest)
                )
                for tid, *vals in execute(s, q):
                    latest[tid] = feedback_state(dict(zip(FEEDBACK_FIELDS, vals, strict=True)))
            for tid in need:
                latest.setdefault(tid, None)
            recorded: set[str] = set()
            if self.by_line:
                for keys in chunked(sorted({k for _, _, k, _ in part})):
                    recorded.update(
                        execute(
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
                .limit(self.chunk)
            )
            rows = [tuple(r) for r in execute(s, q)]
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
            execute(
                s,
                update(STAGE_F)
                .where(STAGE_F.c.batch == self.batch, STAGE_F.c.seq.in_(seqs))
                .values(keep=False),
            )

        if session is not None:
            if reset:
                execute(session, update(STAGE_F).where(STAGE_F.c.batch == self.batch).values(keep=True))
            for seqs in chunked(sorted(drop)):
                run(session, seqs)
            return
        for seqs in chunked(sorted(drop), self.chunk):
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
        for seq, tid, h, ours, task, messages, output, theirs in list(execute(s, q)):
            same = trace_hash(task, messages, output) == h
            line = int(ours.rsplit(":", 1)[1]) if ours and ours.rsplit(":", 1)[-1].isdigit() else None
            execute(s, delete(STAGE_T).where(STAGE_T.c.batch == self.batch, STAGE_T.c.seq == seq))
            if not self._conflict(s, tid, same, f"stored from {theirs}", line):
                execute(s, delete(STAGE_F).where(STAGE_F.c.batch == self.batch, STAGE_F.c.trace_id == tid))

    def _conflicts_memory(self, s: Session) -> None:
        ids = [t["id"] for t in self.traces]
        if not ids:
            return
        found: dict[str, tuple[str, str]] = {}
        for part in chunked(ids):
            q = select(TRACE_T.c.id, TRACE_T.c.task, TRACE_T.c.messages, TRACE_T.c.output, TRACE_T.c.source)
            for tid, task, messages, output, source in execute(s, q.where(TRACE_T.c.id.in_(part))):
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
        execute(
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
        execute(s, insert(FEEDBACK_T).from_select(cols, kept))
        counts = dict(
            execute(
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
            execute(
                s,
                insert(TRACE_T),
                [{k: v for k, v in t.items() if k in names} | {"imported_at": now} for t in self.traces],
            )
        counts: dict[str, int] = {}
        if self.feedback:
            names = {c.name for c in FEEDBACK_T.columns} - {"id"}
            execute(
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
