"""Trace and feedback importers: a log file in, validated ``TraceIn`` / ``FeedbackIn`` objects out.

Pure parsing, no database: callers (``kaizen import``, ``kaizen feedback``, the agent) decide
what to store. Keeping it pure makes every format testable on a fixture file alone and lets the
same code validate a file before anything is written (``--dry-run``).

Each log format is one module exposing an ``Importer`` (``name``, ``sniff``, ``parse``, and the
optional hooks described on ``Importer``); the registry ``FORMATS`` below is the only place that
lists them. Formats: ``kaizen`` (kaizen JSONL), ``openai-chat`` (request/response pairs),
``openai-batch`` (Batch API output + its input file), ``otel-genai`` (OpenTelemetry GenAI spans),
``langfuse`` (observation exports) and ``vllm-log`` (vLLM's plain-text request log). To add one,
write ``tools/logs/<format>.py`` and add its ``IMPORTER`` to ``_IMPORTERS``.

With ``fmt="auto"``, a file whose head is a plain-text log recognised by a text importer is read
as that format; otherwise the first JSON record decides, in registry order.

Every problem is a ``LogFormatError`` reading ``path:line: field: problem``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import closing
from typing import Any

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs import kaizen_jsonl, langfuse, openai_batch, openai_chat, otel_genai, vllm_log
from kaizen.tools.logs.base import (
    DEFAULT_MAX_LINE_BYTES,
    FieldError,
    Importer,
    ParseResult,
    SkipRecord,
    iter_records,
    iter_text_lines,
    parse_record,
    read_jsonl,
    to_log_error,
)
from kaizen.tools.logs.feedback import FeedbackResult, parse_feedback
from kaizen.tools.schema import TraceIn

__all__ = [
    "FORMATS",
    "UNKNOWN_FORMAT",
    "FeedbackResult",
    "FieldError",
    "Importer",
    "LogFormatError",
    "ParseResult",
    "SkipRecord",
    "detect_format",
    "detect_text_format",
    "parse_feedback",
    "parse_traces",
    "read_jsonl",
]

_IMPORTERS: tuple[Importer, ...] = (
    kaizen_jsonl.IMPORTER,
    openai_chat.IMPORTER,
    openai_batch.IMPORTER,
    otel_genai.IMPORTER,
    langfuse.IMPORTER,
    vllm_log.IMPORTER,
)

FORMATS: dict[str, Importer] = {imp.name: imp for imp in _IMPORTERS}
"""Format name (as given to ``--format``) → importer, in auto-detection order."""

UNKNOWN_FORMAT = (
    "unknown log format: expected kaizen JSONL (messages+output), OpenAI chat logs "
    "(request+response), OpenAI Batch output (custom_id+response), OTel GenAI spans "
    "(traceId+spanId or resourceSpans), Langfuse observations (id+traceId+type) or a vLLM "
    "request log (text lines with 'Received request'); pass --format"
)

_TEXT_SNIFF_LINES = 5000
"""How many leading lines auto-detection reads looking for a text format: a vLLM log starts with
a few hundred lines of start-up chatter before its first request."""


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


def detect_text_format(
    path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> str | None:
    """Name of the text format whose importer recognises a line near the top of ``path``, if any.

    Stops at the first line that looks like a JSON object (a JSONL file is decided by its first
    record instead) and after ``_TEXT_SNIFF_LINES`` lines. File-level problems return ``None`` so
    that the JSONL reader reports them in its usual words.
    """
    text_importers = [(n, imp) for n, imp in FORMATS.items() if getattr(imp, "reads_text", False)]
    try:
        with closing(iter_text_lines(path, max_line_bytes)) as lines:
            for i, (_, line) in enumerate(lines):
                if i >= _TEXT_SNIFF_LINES or (isinstance(line, str) and line.lstrip().startswith("{")):
                    return None
                if isinstance(line, str):
                    for name, imp in text_importers:
                        if imp.sniff_text(line):  # type: ignore[attr-defined]
                            return name
    except LogFormatError:
        return None
    return None


def _bind(
    importer: Importer, name: str, path: str | os.PathLike[str], options: dict[str, Any], max_line_bytes: int
) -> Importer:
    bind = getattr(importer, "bind", None)
    if bind is not None:
        return bind(path, options, max_line_bytes)
    if options:
        raise ConfigError(f"format {name} takes no options (given: {', '.join(sorted(options))})")
    return importer


def _jsonl_outcomes(
    path: str | os.PathLike[str], result: ParseResult, max_line_bytes: int, options: dict[str, Any]
) -> Iterator[tuple[int, TraceIn | SkipRecord | LogFormatError]]:
    importer: Importer | None = None if result.format == "auto" else FORMATS[result.format]
    bound: Importer | None = None
    for lineno, item in iter_records(path, max_line_bytes):
        if isinstance(item, LogFormatError):
            yield lineno, item
            continue
        if importer is None:
            try:
                result.format = detect_format(item)
            except ValueError as e:
                raise LogFormatError(os.fspath(path), lineno, "<format>", str(e)) from None
            importer = FORMATS[result.format]
        if bound is None:
            bound = _bind(importer, result.format, path, options, max_line_bytes)
        try:
            outcomes: list[TraceIn | SkipRecord] = parse_record(bound, item)
        except ValueError as e:  # includes pydantic.ValidationError and FieldError
            yield lineno, to_log_error(path, lineno, e)
            continue
        for outcome in outcomes:
            yield lineno, outcome


def parse_traces(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    skip_invalid: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    options: Mapping[str, Any] | None = None,
) -> ParseResult:
    """Read a trace log file into validated ``TraceIn`` objects.

    Args:
        path: The log file (JSONL, or plain text for a text format such as ``vllm-log``).
        fmt: A key of ``FORMATS`` (``_`` and ``-`` are interchangeable), or ``"auto"`` to decide
            from the head of the file (a text format) or its first record.
        skip_invalid: Collect bad lines in ``ParseResult.invalid`` and go on instead of raising.
            Lines before the format is known that are unreadable are skipped too; the first
            readable record still decides the format.
        max_line_bytes: Longest line accepted, in bytes.
        options: Format-specific options, handed to the importer's ``bind`` (``None`` values are
            dropped): ``{"batch_input": PATH}`` for ``openai-batch``. A format without options
            rejects any.

    Returns:
        The format used, the parsed traces with their line numbers, the bad lines (``invalid``,
        with ``skip_invalid``) and the well-formed records that are not traces (``skipped``).

    Raises:
        ConfigError: ``fmt`` is not a known format, or options it does not take.
        LogFormatError: The first bad line (unless ``skip_invalid``); a missing, unreadable or
            empty file, or a first record of no known format (always).
    """
    name = _resolve(fmt)
    if name == "auto":
        name = detect_text_format(path, max_line_bytes) or "auto"
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    result = ParseResult(format=name)
    importer = FORMATS.get(name)
    if importer is not None and getattr(importer, "reads_text", False):
        importer = _bind(importer, name, path, opts, max_line_bytes)
        outcomes = importer.parse_lines(path, iter_text_lines(path, max_line_bytes))  # type: ignore[attr-defined]
    else:
        outcomes = _jsonl_outcomes(path, result, max_line_bytes, opts)
    for lineno, outcome in outcomes:
        if isinstance(outcome, SkipRecord):
            result.skipped.append((lineno, outcome.reason))
        elif isinstance(outcome, LogFormatError):
            if not skip_invalid:
                raise outcome
            result.invalid.append(outcome)
        else:
            result.traces.append((lineno, outcome))
    return result
