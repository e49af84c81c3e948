"""The dashboard's questions about traces: counts per verdict, a filtered page, one trace with all its feedback.

Browsing differs from the agent's reads (``traces``): it filters and pages in SQL instead of loading a
task's every trace, and it shows a trace's whole feedback history, not only the latest. "Latest
feedback" is the same rule everywhere: the feedback row with the highest id of each trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, or_
from sqlmodel import col, select

from kaizen.tools.store.base import StoreBase, get_or_raise
from kaizen.tools.store.tables import FeedbackRow, TraceRow


@dataclass
class TracePage:
    """One page of traces (each with its latest feedback, or None), the number matching, and the versions seen."""

    total: int
    rows: list[tuple[TraceRow, FeedbackRow | None]]
    model_versions: list[str]


def _with_latest_feedback() -> Any:
    """``select(TraceRow, FeedbackRow)``: each trace joined with its latest feedback (None when it has none)."""
    latest = (
        select(FeedbackRow.trace_id.label("tid"), func.max(FeedbackRow.id).label("fid"))  # type: ignore[attr-defined]
        .group_by(FeedbackRow.trace_id)
        .subquery()
    )
    return (
        select(TraceRow, FeedbackRow)
        .join(latest, latest.c.tid == TraceRow.id, isouter=True)
        .join(FeedbackRow, col(FeedbackRow.id) == latest.c.fid, isouter=True)
    )


class BrowseStore(StoreBase):
    """Read-only queries for browsing a task's traces and their feedback."""

    def verdict_counts(self, task: str) -> dict[str | None, int]:
        """Latest verdict → number of the task's traces (``None``: traces without feedback)."""
        with self.session() as s:
            rows = s.exec(
                _with_latest_feedback()
                .where(TraceRow.task == task)
                .with_only_columns(FeedbackRow.verdict, func.count())
                .group_by(FeedbackRow.verdict)
            ).all()
        return {v: n for v, n in rows}

    def labelled_verdicts(self, task: str) -> list[tuple[datetime | None, datetime, str]]:
        """(timestamp, imported at, latest verdict) of the task's traces that have feedback."""
        with self.session() as s:
            return [
                tuple(r)  # type: ignore[misc]
                for r in s.exec(
                    _with_latest_feedback()
                    .where(TraceRow.task == task, col(FeedbackRow.verdict).is_not(None))
                    .with_only_columns(TraceRow.timestamp, TraceRow.imported_at, FeedbackRow.verdict)
                ).all()
            ]

    def browse_traces(
        self,
        tasks: list[str],
        *,
        verdict: str | None = None,
        model_version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        ids: Iterable[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> TracePage:
        """The traces of ``tasks`` matching every filter given, newest first, one page of them.

        ``verdict``: a latest verdict, or ``"unlabeled"`` for traces without feedback; ``since`` (inclusive)
        and ``until`` (exclusive) bound the trace's timestamp; ``text`` matches the output or the messages
        (case-insensitive substring) or is the trace's id; ``ids`` keeps only those traces.
        """
        query = _with_latest_feedback().where(col(TraceRow.task).in_(tasks))
        if verdict == "unlabeled":
            query = query.where(col(FeedbackRow.id).is_(None))
        elif verdict:
            query = query.where(FeedbackRow.verdict == verdict)
        if model_version:
            query = query.where(TraceRow.model_version == model_version)
        if since:
            query = query.where(col(TraceRow.timestamp) >= since)
        if until:
            query = query.where(col(TraceRow.timestamp) < until)
        if text:
            like = f"%{text.strip()}%"
            query = query.where(
                or_(
                    col(TraceRow.output).ilike(like),
                    cast(TraceRow.messages, String).ilike(like),
                    col(TraceRow.id) == text.strip(),
                )
            )
        if ids is not None:
            query = query.where(col(TraceRow.id).in_(sorted(ids)))
        with self.session() as s:
            total = s.exec(query.with_only_columns(func.count()).order_by(None)).one()
            total = int(total[0] if isinstance(total, tuple) or hasattr(total, "_fields") else total)
            rows = s.exec(
                query.order_by(
                    col(TraceRow.timestamp).desc(), col(TraceRow.imported_at).desc(), col(TraceRow.id)
                )
                .limit(limit)
                .offset(offset)
            ).all()
            versions = sorted(
                v
                for v in s.exec(
                    select(TraceRow.model_version).where(col(TraceRow.task).in_(tasks)).distinct()
                ).all()
                if v
            )
        return TracePage(total=total, rows=[(tr, fb) for tr, fb in rows], model_versions=versions)

    def trace_with_feedback(self, trace_id: str) -> tuple[TraceRow, list[FeedbackRow]]:
        """A trace and every feedback on it, oldest first.

        Raises:
            NotFoundError: No trace has that id.
        """
        with self.session() as s:
            tr = get_or_raise(s, TraceRow, trace_id, f"trace {trace_id!r} not found")
            feedback = list(
                s.exec(
                    select(FeedbackRow).where(FeedbackRow.trace_id == trace_id).order_by(col(FeedbackRow.id))
                )
            )
        return tr, feedback
