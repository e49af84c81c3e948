"""The tick's waiting records: what the cursor has moved past but could not be imported yet.

Two kinds wait, bounded and counted, in ``pending_record`` (see ``kaizen.workflows.schedule.ingest``):
a vLLM request line whose response line is not logged yet (carried between chunks and files), and
feedback for a trace that has not arrived yet. Waiting ends after ``PENDING_TTL`` or beyond
``PENDING_MAX`` records (oldest first); each record that stops waiting is reported as invalid, with
where it was read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from kaizen.tools.logs.vllm_log import messages_from_prompt
from kaizen.tools.schema import FeedbackIn
from kaizen.tools.store import Store
from kaizen.tools.store.tables import PendingRow, utcnow

if TYPE_CHECKING:
    from kaizen.workflows.schedule.ingest import IngestReport

PENDING_MAX = 10_000  # waiting records per task and kind; beyond it the oldest are dropped (reported)
PENDING_TTL = {"vllm-request": timedelta(hours=24), "feedback": timedelta(days=7)}


class Pending:
    """The task's waiting records: vLLM requests (carried between chunks) and early feedback."""

    def __init__(self, store: Store, task: str, report: IngestReport):
        self.store, self.task, self.report = store, task, report
        self.requests: dict[str, dict[str, Any]] = {}
        now = utcnow()
        expired: list[PendingRow] = []
        for row in store.pending(task, "vllm-request"):
            if _utc(row.first_seen) < now - PENDING_TTL["vllm-request"]:
                expired.append(row)
                continue
            self.requests[row.key] = dict(row.payload) | {
                "line": None,
                "source": row.source,
                "abs_line": row.line,
                "first_seen": _utc(row.first_seen).isoformat(),
            }
        for row in expired:
            report.error(
                f"{row.source}:{row.line}: request_id: vLLM request {row.key} got no response line within "
                f"{_age(PENDING_TTL['vllm-request'])}; dropped"
            )
        self.requests_dirty = bool(expired)

    def carry(self) -> dict[str, Any]:
        """What ``parse_traces`` continues from (the vLLM importer reads and updates ``requests``)."""
        return {"requests": self.requests}

    def after_chunk(self, path: Path, first_line: int, answered: set[str | None]) -> None:
        """Give requests first seen in this chunk their place in the file, then enforce the cap.

        A request already stored as a trace with the same prompt (a rotated file read again from the
        start) was answered long ago: it does not wait. (One with another prompt is a reused request
        id: it waits, and is refused, with the reason, when its response arrives.)
        """
        now = utcnow().isoformat()
        fresh = [rid for rid, req in self.requests.items() if "source" not in req and rid not in answered]
        stored = self.store.trace_messages(fresh)
        for rid in list(self.requests):
            req = self.requests[rid]
            if "source" not in req:
                if rid in stored and stored[rid] == messages_from_prompt(req.get("prompt") or "")[1]:
                    del self.requests[rid]
                    continue
                req["source"], req["abs_line"], req["first_seen"] = (
                    str(path),
                    first_line + (req.get("line") or 0),
                    now,
                )
            req["line"] = None
        over = len(self.requests) - PENDING_MAX
        if over > 0:
            for rid in sorted(self.requests, key=lambda r: self.requests[r]["first_seen"])[:over]:
                req = self.requests.pop(rid)
                self.report.error(
                    f"{req['source']}:{req['abs_line']}: request_id: vLLM request {rid} dropped: more than "
                    f"{PENDING_MAX} requests waiting for a response line"
                )
        self.requests_dirty = True

    def save_requests(self, s: Session | None = None) -> None:
        """The waiting requests as they are now (inside an import's transaction when ``s`` is given)."""
        if not self.requests_dirty:
            return
        rows = []
        for rid, req in self.requests.items():
            payload = {k: v for k, v in req.items() if k not in ("line", "source", "abs_line", "first_seen")}
            rows.append(
                PendingRow(
                    task=self.task,
                    kind="vllm-request",
                    key=rid,
                    source=req["source"],
                    line=req["abs_line"] or 0,
                    payload=payload,
                    first_seen=datetime.fromisoformat(req["first_seen"]),
                )
            )
        self.store.replace_pending(self.task, "vllm-request", rows, s)

    def retry_feedback(self, report: IngestReport) -> None:
        """Attach waiting feedback whose trace has arrived; drop what waited too long or beyond the cap (reported)."""
        rows = self.store.pending(self.task, "feedback")
        if not rows:
            return
        now = utcnow()
        drop = [r for r in rows if _utc(r.first_seen) < now - PENDING_TTL["feedback"]]
        live = [r for r in rows if r not in drop]
        drop += live[: max(0, len(live) - PENDING_MAX)]
        live = live[max(0, len(live) - PENDING_MAX) :]
        for r in drop:
            report.error(
                f"{r.source}:{r.line}: trace_id: no trace with id {r.key!r} arrived within "
                f"{_age(PENDING_TTL['feedback'])} (or over {PENDING_MAX} waiting); feedback dropped"
            )
        runs: list[list[PendingRow]] = []  # consecutive rows of one source, in the order they arrived
        for r in live:
            if runs and runs[-1][0].source == r.source:
                runs[-1].append(r)
            else:
                runs.append([r])
        for group in runs:
            self._retry(group, report)
        self.store.drop_pending(r.id for r in drop)

    def _retry(self, group: list[PendingRow], report: IngestReport) -> None:
        waiting: set[int | None] = set()
        row_of: dict[int, int | None] = {}
        items: list[tuple[int, FeedbackIn]] = []
        for r in group:
            fb = FeedbackIn.model_validate(r.payload)
            row_of[id(fb)] = r.id
            items.append((r.line, fb))

        def done(s: Session) -> None:
            self.store.drop_pending((r.id for r in group if r.id not in waiting), s)

        stats = self.store.add_feedback(
            items,
            path=group[0].source,
            skip_invalid=True,
            by_line=True,
            also=done,
            on_missing=lambda _line, fb: waiting.add(row_of[id(fb)]),
        )
        report.feedback_added += stats.feedback_added
        report.duplicates += stats.duplicates

    def counts(self) -> tuple[int, int]:
        kinds = [r.kind for r in self.store.pending(self.task)]
        return kinds.count("vllm-request"), kinds.count("feedback")


def _age(d: timedelta) -> str:
    return f"{d.days} days" if d.days else f"{int(d.total_seconds() // 3600)} h"


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t
