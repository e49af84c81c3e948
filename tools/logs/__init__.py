"""Trace and feedback importers: a log file in, validated ``TraceIn`` / ``FeedbackIn`` objects out.

Pure parsing, no database: callers (``kaizen import``, ``kaizen feedback``, the agent) decide
what to store. Keeping it pure makes every format testable on a fixture file alone and lets the
same code validate a file before anything is written (``--dry-run``).

Each log format is one module exposing an ``Importer`` (``name``, ``sniff``, ``parse``); the
registry ``FORMATS`` below is the only place that lists them. To add a format (OpenAI Batch,
OTel GenAI spans, Langfuse, vLLM …) write ``tools/logs/<format>.py`` and add its ``IMPORTER``
to ``_IMPORTERS``. With ``fmt="auto"`` the first record decides the format, in registry order.

Every problem is a ``LogFormatError`` reading ``path:line: field: problem``.
"""

from __future__ import annotations

import os
from typing import Any

from tools.errors import ConfigError, LogFormatError
from tools.logs import kaizen_jsonl, openai_chat
from tools.logs.base import (
    DEFAULT_MAX_LINE_BYTES,
    FieldError,
    Importer,
    ParseResult,
    iter_records,
    read_jsonl,
    to_log_error,
)
from tools.logs.feedback import FeedbackResult, parse_feedback

__all__ = [
    "FORMATS",
    "UNKNOWN_FORMAT",
    "FeedbackResult",
    "FieldError",
    "Importer",
    "LogFormatError",
    "ParseResult",
    "detect_format",
    "parse_feedback",
    "parse_traces",
    "read_jsonl",
]

_IMPORTERS: tuple[Importer, ...] = (kaizen_jsonl.IMPORTER, openai_chat.IMPORTER)

FORMATS: dict[str, Importer] = {imp.name: imp for imp in _IMPORTERS}
"""Format name (as given to ``--format``) → importer, in auto-detection order."""

UNKNOWN_FORMAT = (
    "unknown log format: expected kaizen JSONL (messages+output) or OpenAI chat logs "
    "(request+response); pass --format"
)


def detect_format(obj: dict[str, Any]) -> str:
    """Name of the first registered format whose importer recognises ``obj``.

    Args:
        obj: One decoded record (the first of a file).

    Returns:
        A key of ``FORMATS``.

    Raises:
        ValueError: No importer recognises the record (message: ``UNKNOWN_FORMAT``).
    """
    for name, imp in FORMATS.items():
        if imp.sniff(obj):
            return name
    raise ValueError(UNKNOWN_FORMAT)


def _resolve(fmt: str) -> str:
    name = fmt.strip().lower().replace("_", "-")
    if name == "auto" or name in FORMATS:
        return name
    raise ConfigError(f"unknown log format {fmt!r}: use one of auto, {', '.join(FORMATS)}")


def parse_traces(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    skip_invalid: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ParseResult:
    """Read a trace log file into validated ``TraceIn`` objects.

    Args:
        path: The JSONL log file.
        fmt: A key of ``FORMATS`` (``_`` and ``-`` are interchangeable), or ``"auto"`` to decide
            from the first record.
        skip_invalid: Collect bad lines in ``ParseResult.invalid`` and go on instead of raising.
            Lines before the format is known that are unreadable are skipped too; the first
            readable record still decides the format.
        max_line_bytes: Longest line accepted, in bytes.

    Returns:
        The format used, the parsed traces with their line numbers, and the skipped lines.

    Raises:
        ConfigError: ``fmt`` is not a known format.
        LogFormatError: The first bad line (unless ``skip_invalid``); a missing, unreadable or
            empty file, or a first record of no known format (always).
    """
    name = _resolve(fmt)
    importer: Importer | None = None if name == "auto" else FORMATS[name]
    result = ParseResult(format=name)
    for lineno, item in iter_records(path, max_line_bytes):
        if not isinstance(item, LogFormatError):
            if importer is None:
                try:
                    result.format = detect_format(item)
                except ValueError as e:
                    raise LogFormatError(os.fspath(path), lineno, "<format>", str(e)) from None
                importer = FORMATS[result.format]
            try:
                result.traces.append((lineno, importer.parse(item)))
                continue
            except ValueError as e:  # includes pydantic.ValidationError and FieldError
                item = to_log_error(path, lineno, e)
        if not skip_invalid:
            raise item
        result.invalid.append(item)
    return result
