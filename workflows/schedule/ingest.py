"""Incremental ingestion for the scheduled loop: read only what is new in a log file or directory.

A cursor per (task, file) remembers how many bytes and lines were consumed. Each tick reads from
the cursor to the last complete line (a line still being written is left for the next tick), and
imports those lines **in the same transaction** that moves the cursor: if the tick dies, either
both happened or neither did, so nothing is read twice and nothing is lost. A file whose first
bytes changed, or that shrank, was rotated or rewritten: it is read again from the start (the
importers are idempotent, so lines seen before count as duplicates, not as new traces).

Files named ``*.feedback.jsonl`` hold feedback lines (``kaizen feedback`` format) and are read
after the trace files of the same tick, so feedback can refer to traces that arrived with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs import parse_feedback, parse_traces
from kaizen.tools.store import Store
from kaizen.tools.store.tables import CursorRow, utcnow
from sqlmodel import Session

HEAD_BYTES = 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # one tick reads at most this much of one file; the rest next tick
MAX_ERRORS_KEPT = 20


@dataclass
class IngestReport:
    files: int = 0
    bytes: int = 0
    imported: int = 0
    duplicates: int = 0
    feedback_added: int = 0
    invalid: int = 0
    rotated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("files", "bytes", "imported", "duplicates", "feedback_added", "invalid",
                                              "rotated", "errors")}


def source_files(source: Path) -> list[Path]:
    """The log files under ``source`` (itself if a file): trace files first, then feedback files."""
    if not source.exists():
        raise ConfigError(f"log source {source} does not exist: pass --source PATH or set schedule.source in kaizen.yaml")
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".tmp"))
    return sorted(files, key=lambda p: (p.name.endswith(".feedback.jsonl"), str(p)))


def _head_hash(path: Path, n: int) -> str:
    with path.open("rb") as f:
        return f"{n}:" + hashlib.sha256(f.read(n)).hexdigest()[:16]


def _cursor(store: Store, task: str, path: str) -> CursorRow:
    with store.session() as s:
        return s.get(CursorRow, (task, path)) or CursorRow(task=task, path=path)


def _new_bytes(path: Path, cur: CursorRow, report: IngestReport) -> tuple[bytes, int]:
    """(complete new lines, start offset). Resets the cursor on a rotated/rewritten file."""
    size = path.stat().st_size
    start = cur.offset
    if start and (size < start or _head_hash(path, min(HEAD_BYTES, cur.offset)) != cur.head_hash):
        report.rotated.append(str(path))
        start, cur.lines = 0, 0
    if size <= start:
        return b"", start
    with path.open("rb") as f:
        f.seek(start)
        blob = f.read(min(size - start, MAX_CHUNK_BYTES))
    end = blob.rfind(b"\n")
    return (blob[: end + 1] if end >= 0 else b""), start


def ingest_new(store: Store, task: str, source: Path, work_dir: Path, fmt: str = "auto") -> IngestReport:
    """Import every complete line added to ``source`` since the last call, moving cursors atomically."""
    report = IngestReport()
    work_dir.mkdir(parents=True, exist_ok=True)
    for path in source_files(source):
        key = str(path.resolve())
        cur = _cursor(store, task, key)
        blob, start = _new_bytes(path, cur, report)
        if not blob:
            continue
        report.files += 1
        report.bytes += len(blob)
        chunk = work_dir / ("chunk.feedback.jsonl" if path.name.endswith(".feedback.jsonl") else "chunk.jsonl")
        chunk.write_bytes(blob)
        first_line = cur.lines if start else 0
        new_offset, new_lines = start + len(blob), first_line + blob.count(b"\n")
        head = _head_hash(path, min(HEAD_BYTES, new_offset))

        def move_cursor(s: Session, key: str = key, off: int = new_offset, lines: int = new_lines, head: str = head) -> None:
            row = s.get(CursorRow, (task, key)) or CursorRow(task=task, path=key)
            row.offset, row.lines, row.head_hash, row.updated_at = off, lines, head, utcnow()
            s.add(row)

        _import_chunk(store, task, path, chunk, first_line, fmt, move_cursor, report)
        chunk.unlink(missing_ok=True)
    return report


def _import_chunk(store: Store, task: str, path: Path, chunk: Path, first_line: int, fmt: str, also: Any,
                  report: IngestReport) -> None:
    """Parse one chunk (bad lines are skipped and reported with the *source* file:line) and import it."""
    def relocate(e: LogFormatError) -> str:
        return str(LogFormatError(str(path), first_line + e.line, e.field, e.problem))

    if path.name.endswith(".feedback.jsonl"):
        fres = parse_feedback(chunk, skip_invalid=True)
        items = [(first_line + ln, fb) for ln, fb in fres.items]
        stats = store.add_feedback(items, path=str(path), skip_invalid=True, also=also)
        invalid = fres.invalid
    else:
        try:
            tres = parse_traces(chunk, fmt, skip_invalid=True)
        except LogFormatError as e:  # no readable record at all, or of no known format
            report.invalid += 1
            report.errors.append(relocate(e))
            store.import_traces([], path=str(path), default_task=task, also=also)  # still move past it
            return
        traces = [(first_line + ln, tr) for ln, tr in tres.traces]
        stats = store.import_traces(traces, path=str(path), default_task=task, skip_invalid=True, also=also)
        invalid = tres.invalid
    report.imported += stats.imported
    report.duplicates += stats.duplicates
    report.feedback_added += stats.feedback_added
    report.invalid += len(invalid) + stats.invalid
    report.errors += [relocate(e) for e in invalid][: MAX_ERRORS_KEPT - len(report.errors)]
    report.errors += stats.errors[: max(0, MAX_ERRORS_KEPT - len(report.errors))]


def cursor_positions(store: Store, task: str) -> dict[str, int]:
    """file → bytes consumed (for ``kaizen ticks list`` and tests)."""
    from sqlmodel import select

    with store.session() as s:
        return {r.path: r.offset for r in s.exec(select(CursorRow).where(CursorRow.task == task))}
