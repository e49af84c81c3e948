"""Incremental ingestion for the scheduled loop: read only what is new in a log file or directory.

A cursor per (task, file) remembers how many bytes and lines were consumed. Each tick reads from
the cursor to the last complete line (a line still being written is left for the next tick), and
imports those lines **in the same transaction** that moves the cursor: if the tick dies, either
both happened or neither did, so nothing is read twice and nothing is lost. A file whose first
bytes changed, or that shrank, was rotated or rewritten: it is read again from the start (the
importers are idempotent, so lines seen before count as duplicates, not as new traces).

**The cursor only moves past what was imported or reported.** Every line behind it was imported,
reported as invalid (``file:line: field: problem`` in the tick's record), or is waiting, bounded and
counted, in ``pending_record`` (``kaizen.workflows.schedule.pending``):

* a vLLM request line whose response line is not logged yet (a request in flight at tick time)
  waits for the tick that reads its response — in this file or the next one after a rotation;
* feedback for a trace that has not arrived yet waits for the tick that imports the trace;
* waiting ends after ``PENDING_TTL`` or beyond ``PENDING_MAX`` records (oldest first), and each
  record that stops waiting is reported as invalid, with where it was read.

A problem with a whole chunk rather than its lines — an OpenAI Batch output whose input file cannot
be found — is reported and the cursor stays, so the records are read once it is fixed. A line
longer than ``MAX_LINE_BYTES`` is reported and skipped once it ends (never read into memory).

Files named ``*.feedback.jsonl`` hold feedback lines (``kaizen feedback`` format) and are read
after the trace files of the same tick, so feedback can refer to traces that arrived with it.
OpenAI Batch input files beside their output files are read as the output's input, not as logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs import detect_text_format, parse_feedback, parse_traces
from kaizen.tools.logs.base import DEFAULT_MAX_LINE_BYTES
from kaizen.tools.logs.openai_batch import sibling_input
from kaizen.tools.schema import FeedbackIn
from kaizen.tools.store import Store
from kaizen.tools.store.tables import CursorRow, PendingRow
from kaizen.workflows.schedule.pending import Pending

log = logging.getLogger(__name__)

HEAD_BYTES = 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # one tick reads at most this much of one file; the rest next tick
MAX_LINE_BYTES = DEFAULT_MAX_LINE_BYTES  # a longer line is reported and skipped
MAX_ERRORS_KEPT = 20
_SCAN = 1024 * 1024


@dataclass
class IngestReport:
    files: int = 0
    bytes: int = 0
    imported: int = 0
    duplicates: int = 0
    feedback_added: int = 0
    invalid: int = 0
    pending_requests: int = 0  # vLLM requests waiting for their response line
    pending_feedback: int = 0  # feedback waiting for its trace
    rotated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def error(self, text: str, count: int = 1) -> None:
        """Report ``count`` invalid records; the first ``MAX_ERRORS_KEPT`` messages are kept."""
        self.invalid += count
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "files",
                "bytes",
                "imported",
                "duplicates",
                "feedback_added",
                "invalid",
                "pending_requests",
                "pending_feedback",
                "rotated",
                "errors",
            )
        }


def is_feedback_file(path: Path) -> bool:
    return path.name.endswith(".feedback.jsonl")


def _is_batch_input(path: Path) -> bool:
    """An OpenAI Batch *input* file (its first record is a request with a ``body``, no ``response``)."""
    if "input" not in path.name:
        return False
    try:
        with path.open("rb") as f:
            first = json.loads(f.readline(64 * 1024) or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and "custom_id" in first and "body" in first and "response" not in first


def source_files(source: Path, batch_input: Path | None = None) -> list[Path]:
    """The log files under ``source`` (itself if a file): trace files first, then feedback files.

    OpenAI Batch input files (the configured one, and any file whose first record is a batch request)
    are left out: they are read as the input of their output file.
    """
    if not source.exists():
        raise ConfigError(
            f"log source {source} does not exist: pass --source PATH or set schedule.source in kaizen.yaml"
        )
    if source.is_file():
        return [source]
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".tmp")
    )
    skip = {batch_input.resolve()} if batch_input is not None else set()
    files = [p for p in files if p.resolve() not in skip and not _is_batch_input(p)]
    return sorted(files, key=lambda p: (is_feedback_file(p), str(p)))


def _head_hash(path: Path, n: int) -> str:
    with path.open("rb") as f:
        return f"{n}:" + hashlib.sha256(f.read(n)).hexdigest()[:16]


def _next_newline(path: Path, pos: int) -> int | None:
    """Offset of the first ``\\n`` at or after ``pos``, read in 1 MiB steps (None: not written yet)."""
    with path.open("rb") as f:
        f.seek(pos)
        while piece := f.read(_SCAN):
            i = piece.find(b"\n")
            if i >= 0:
                return pos + i
            pos += len(piece)
    return None


@dataclass
class _Window:
    blob: bytes  # complete new lines
    start: int  # their offset in the file
    first_line: int  # lines consumed before ``start``
    skip_to: int | None = None  # an over-long first line ends here (its newline): report it, move past it


def _window(path: Path, cur: CursorRow, report: IngestReport) -> _Window:
    """The complete new lines after the cursor. Resets the cursor on a rotated/rewritten file."""
    size = path.stat().st_size
    start = cur.offset
    if start and (size < start or _head_hash(path, min(HEAD_BYTES, cur.offset)) != cur.head_hash):
        report.rotated.append(str(path))
        start, cur.lines = 0, 0
    first_line = cur.lines if start else 0
    if size <= start:
        return _Window(b"", start, first_line)
    with path.open("rb") as f:
        f.seek(start)
        blob = f.read(min(size - start, MAX_CHUNK_BYTES))
    end = blob.rfind(b"\n")
    if end >= 0:
        return _Window(blob[: end + 1], start, first_line)
    if len(blob) <= MAX_LINE_BYTES:
        return _Window(b"", start, first_line)  # a line still being written: wait for its end
    nl = _next_newline(path, start + len(blob))
    if nl is None:
        report.error(
            f"{path}:{first_line + 1}: <line>: line is longer than {MAX_LINE_BYTES} bytes and not finished yet; "
            "it is skipped once it ends",
            count=0,
        )
        return _Window(b"", start, first_line)
    return _Window(b"", start, first_line, skip_to=nl + 1)


def _existing(path: Path | None) -> Path | None:
    return path if path is not None and path.is_file() else None


# ------------------------------------------------------------------------------------ the tick
def ingest_new(
    store: Store,
    task: str,
    source: Path,
    work_dir: Path,
    fmt: str = "auto",
    *,
    batch_input: str | Path | None = None,
) -> IngestReport:
    """Import every complete line added to ``source`` since the last call, moving cursors atomically.

    Args:
        store: The workspace's store.
        task: The task lines without a ``task`` belong to.
        source: A log file or a directory of them.
        work_dir: Where this tick writes the chunks it parses.
        fmt: The log format (``--format``); ``auto`` decides per file.
        batch_input: OpenAI Batch: the input file of the source's output file (default: each output
            file's sibling with ``output`` → ``input`` in its name).
    """
    report = IngestReport()
    work_dir.mkdir(parents=True, exist_ok=True)
    pending = Pending(store, task, report)
    batch = Path(batch_input) if batch_input else None
    files = source_files(source, batch)
    traces_done = False
    for path in files:
        if is_feedback_file(path) and not traces_done:
            pending.retry_feedback(report)  # traces of this tick are in: earlier feedback goes first
            traces_done = True
        _ingest_file(store, task, path, work_dir, fmt, batch, pending, report)
    if not traces_done:
        pending.retry_feedback(report)
    if pending.requests_dirty:
        pending.save_requests()
    report.pending_requests, report.pending_feedback = pending.counts()
    return report


def _ingest_file(
    store: Store,
    task: str,
    path: Path,
    work_dir: Path,
    fmt: str,
    batch: Path | None,
    pending: Pending,
    report: IngestReport,
) -> None:
    key = str(path.resolve())
    for _ in range(1000):  # over-long lines are skipped one by one; then one window of complete lines is read
        w = _window(path, store.cursor(task, key), report)
        if w.skip_to is None:
            break
        line = w.first_line + 1
        report.error(
            f"{path}:{line}: <line>: line is longer than {MAX_LINE_BYTES} bytes; skipped "
            "(split the record, or log less per line)"
        )
        store.import_traces(
            [],
            path=str(path),
            default_task=task,
            also=_mover(task, key, w.skip_to, line, _head_hash(path, min(HEAD_BYTES, w.skip_to))),
        )
    else:
        return
    if not w.blob:
        return
    report.files += 1
    report.bytes += len(w.blob)
    new_offset, new_lines = w.start + len(w.blob), w.first_line + w.blob.count(b"\n")
    move = _mover(task, key, new_offset, new_lines, _head_hash(path, min(HEAD_BYTES, new_offset)))
    if not w.blob.strip():
        store.import_traces(
            [], path=str(path), default_task=task, also=move
        )  # blank lines only: nothing to read
        return
    chunk = work_dir / ("chunk.feedback.jsonl" if is_feedback_file(path) else "chunk.jsonl")
    chunk.write_bytes(w.blob)
    try:
        _import_chunk(store, task, path, chunk, w.first_line, fmt, batch, pending, move, report)
    finally:
        chunk.unlink(missing_ok=True)


def _mover(task: str, key: str, off: int, lines: int, head: str) -> Any:
    def move_cursor(s: Session) -> None:
        Store.move_cursor(s, task, key, off, lines, head)

    return move_cursor


def _import_chunk(
    store: Store,
    task: str,
    path: Path,
    chunk: Path,
    first_line: int,
    fmt: str,
    batch: Path | None,
    pending: Pending,
    move: Any,
    report: IngestReport,
) -> None:
    """Parse one chunk (bad lines are reported with the *source* file:line) and import it with the cursor move."""

    def relocate(e: LogFormatError) -> str:
        if e.path != str(chunk):  # about another file (a batch input): as it is
            return str(e)
        return str(
            LogFormatError(str(path), first_line + e.line if e.line else first_line + 1, e.field, e.problem)
        )

    if is_feedback_file(path):
        fres = parse_feedback(chunk, skip_invalid=True, max_line_bytes=MAX_LINE_BYTES)
        items = [(first_line + ln, fb) for ln, fb in fres.items]
        early: list[tuple[int, FeedbackIn]] = []

        def also(s: Session) -> None:
            move(s)
            store.add_pending(
                s,
                (
                    PendingRow(
                        task=task,
                        kind="feedback",
                        key=fb.trace_id,
                        source=str(path),
                        line=line,
                        payload=fb.model_dump(mode="json"),
                    )
                    for line, fb in early
                ),
            )

        stats = store.add_feedback(
            items,
            path=str(path),
            skip_invalid=True,
            by_line=True,
            also=also,
            on_missing=lambda line, fb: early.append((line, fb)),
        )
        invalid = fres.invalid
    else:
        if fmt == "auto":  # a text log is recognised by its head, not by a chunk that may hold only chatter
            fmt = detect_text_format(path, MAX_LINE_BYTES) or "auto"
        carry = pending.carry()
        before = {rid: dict(req) for rid, req in carry["requests"].items()}
        try:
            tres = parse_traces(
                chunk,
                fmt,
                skip_invalid=True,
                max_line_bytes=MAX_LINE_BYTES,
                options={"batch_input": batch or _existing(sibling_input(path))},
                require_records=False,
                lenient_options=True,
                carry=carry,
            )
        except (
            LogFormatError
        ) as e:  # the chunk as a whole cannot be read (no batch input …): the cursor stays
            pending.requests.clear()
            pending.requests.update(before)
            report.error(f"{relocate(e)} (the file is read again once this is fixed)", count=0)
            log.warning("tick: %s", relocate(e))
            return
        if carry["requests"] != before:  # only a vLLM log changes what waits
            pending.after_chunk(path, first_line, {tr.id for _, tr in tres.traces})
        traces = [(first_line + ln, tr) for ln, tr in tres.traces]

        def also(s: Session) -> None:
            move(s)
            pending.save_requests(s)

        stats = store.import_traces(traces, path=str(path), default_task=task, skip_invalid=True, also=also)
        pending.requests_dirty = False
        invalid = tres.invalid
    report.imported += stats.imported
    report.duplicates += stats.duplicates
    report.feedback_added += stats.feedback_added
    for bad in invalid:
        report.error(relocate(bad))
    for text in stats.errors:
        report.error(text)


def cursor_positions(store: Store, task: str) -> dict[str, int]:
    """file → bytes consumed (for ``kaizen ticks list`` and tests)."""
    return store.cursor_positions(task)
