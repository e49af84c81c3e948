"""The trace log and the feedback sink of one ``kaizen serve`` (no HTTP here).

* **Trace log.** Each answered request is one kaizen trace JSONL line (``TraceIn``, validated before it
  is written, then flushed and fsynced): the messages *as the caller sent them*, the output, the version
  and skill that answered, latency and token counts. ``kaizen ingest`` and ``kaizen tick --source`` read
  the file unchanged. Writes are serialised by a lock, so concurrent requests never interleave lines.
* **Feedback.** Attached in the store when the trace was already ingested, else appended to
  ``<task>.feedback.jsonl`` next to the log (the scheduled loop reads ``*.feedback.jsonl`` after the
  traces). Feedback is only taken for a trace this server answered (remembered, or found in the log
  after a restart) or one already in the store.

The methods block (file writes with fsync, store queries): the web app calls them from worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from kaizen.tools.errors import ProxyError
from kaizen.tools.schema import FeedbackIn, TaskSpec, TraceIn
from kaizen.tools.store import Store

if TYPE_CHECKING:
    from kaizen.workflows.serve.router import Route

log = logging.getLogger(__name__)

KNOWN_IDS_KEPT = 1_000_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class TraceLog:
    """Appends trace lines to ``log_path`` and feedback to the file beside it (or to ``store``)."""

    def __init__(
        self,
        *,
        task: TaskSpec,
        log_path: Path,
        store: Store | None = None,
        server_id: str = "",
        prompt_mode: str = "render",
        fsync: bool = True,
    ):
        self.task = task
        self.log_path = Path(log_path)
        self.feedback_path = self.log_path.with_name(
            self.log_path.name.removesuffix(".jsonl") + ".feedback.jsonl"
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.store, self.server_id = store, server_id
        self.prompt_mode, self.fsync = prompt_mode, fsync
        self._log = threading.Lock()
        self._ids: set[str] = set()
        self._ids_order: deque[str] = deque()

    def _append(self, path: Path, text: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())

    def write_trace(self, line: dict[str, Any]) -> bool:
        """Append one trace line if it is a valid ``TraceIn`` (flush + fsync); False when it is not."""
        try:
            TraceIn.model_validate(line)
        except ValidationError as exc:
            log.warning("serve: trace %s not logged: %s", line.get("id"), exc.errors(include_url=False)[:1])
            return False
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._log:
            self._append(self.log_path, text)
            self._ids.add(line["id"])
            self._ids_order.append(line["id"])
            while len(self._ids_order) > KNOWN_IDS_KEPT:
                self._ids.discard(self._ids_order.popleft())
        return True

    def trace_line(
        self,
        *,
        trace_id: str,
        route: Route,
        is_canary: bool,
        messages: list[dict[str, Any]],
        output: str,
        latency_ms: float,
        upstream_ms: float,
        usage: dict[str, Any] | None,
        finish_reason: str | None,
        stream: bool,
    ) -> dict[str, Any]:
        usage = usage or {}
        return {
            "id": trace_id,
            "timestamp": now_iso(),
            "task": self.task.name,
            "model_version": route.version,
            "messages": messages,
            "output": output,
            "latency_ms": round(latency_ms, 2),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "metadata": {
                "skill_version": route.skill_version,
                "canary": is_canary,
                "prompt": self.prompt_mode,
                "finish_reason": finish_reason,
                "upstream_ms": round(upstream_ms, 2),
                "stream": stream,
                "server": self.server_id,
            },
        }

    def known_trace(self, trace_id: str) -> bool:
        """Served by this proxy: remembered, or found in the log file (after a restart)."""
        if trace_id in self._ids:
            return True
        if not self.log_path.exists():
            return False
        needle = json.dumps({"id": trace_id})[:-1].encode()  # '{"id": "kz-…"' — how every line starts
        with open(self.log_path, "rb") as f:
            return any(line.startswith(needle) for line in f)

    def feedback(self, body: Any) -> dict[str, Any]:
        """Attach feedback in the store if the trace is there, else append it to the feedback file."""
        if not isinstance(body, dict):
            raise ProxyError(
                400,
                "the request body must be a JSON object {trace_id, verdict, correction?, reason?, source?}",
            )
        try:
            fb = FeedbackIn.model_validate(body)
        except ValidationError as exc:
            from kaizen.tools.logs.base import explain

            fld, problem = explain(exc)
            raise ProxyError(400, f"{fld}: {problem}") from None
        if fb.verdict == "fail" and fb.correction is not None and not fb.correction.strip():
            raise ProxyError(400, "correction: an empty correction; leave it out if there is none")
        if self.store is not None and self.store.traces(self.task.name, ids=[fb.trace_id]):
            stats = self.store.add_feedback([(1, fb)], path=f"kaizen serve {self.server_id} POST /feedback")
            return {"trace_id": fb.trace_id, "stored": "store", "added": stats.feedback_added == 1}
        if not self.known_trace(fb.trace_id):
            raise ProxyError(
                404,
                f"unknown trace id {fb.trace_id!r}: feedback is taken for traces this server answered "
                f"(logged in {self.log_path}) or traces already in the store",
                "not_found",
            )
        line = json.dumps(fb.model_dump(exclude_none=True), ensure_ascii=False) + "\n"
        with self._log:
            self._append(self.feedback_path, line)
        return {"trace_id": fb.trace_id, "stored": "file", "path": str(self.feedback_path)}
