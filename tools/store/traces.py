"""Traces and their feedback: the atomic import, and the reads the agent and the scheduled loop make.

A trace is what the deployed model did; its latest feedback says whether that was right. Imports
are staged outside any long transaction and published at once (``kaizen.tools.store.staging``);
the reads here give each trace with its latest feedback (``TraceView``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from kaizen.tools.schema import FeedbackIn, TraceIn
from kaizen.tools.store.base import StoreBase
from kaizen.tools.store.staging import ImportBatch
from kaizen.tools.store.tables import FeedbackRow, TraceRow


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


class TraceStore(StoreBase):
    """Importing traces and feedback; every trace with its latest feedback."""

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

    # ------------------------------------------------------------ what the scheduled loop watches
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
