"""Trace and feedback importers: a log file in, validated ``TraceIn`` / ``FeedbackIn`` objects out.

Pure parsing, no database: callers (``kaizen ingest``, ``kaizen tick``, ``kaizen feedback``) decide
what to store. Keeping it pure makes every format testable on a fixture file alone and lets the
same code validate a whole file before anything is written.

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
    "detected_format",
    "iter_traces",
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

_READ_FIELDS = frozenset({"<line>", "<encoding>", "<file>", "<json>"})
"""Fields of errors about reading a line at all (not about a record of the format)."""

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
    importer: Importer,
    name: str,
    path: str | os.PathLike[str],
    options: dict[str, Any],
    max_line_bytes: int,
    lenient: bool = False,
) -> Importer:
    bind = getattr(importer, "bind", None)
    if bind is not None:
        takes = getattr(importer, "options", None)
        if lenient and takes is not None:
            options = {k: v for k, v in options.items() if k in takes}
        return bind(path, options, max_line_bytes)
    if options and not lenient:
        raise ConfigError(f"format {name} takes no options (given: {', '.join(sorted(options))})")
    return importer


def _jsonl_outcomes(
    path: str | os.PathLike[str],
    result: ParseResult,
    max_line_bytes: int,
    options: dict[str, Any],
    skip_invalid: bool,
    lenient: bool,
) -> Iterator[tuple[int, TraceIn | SkipRecord | LogFormatError]]:
    importer: Importer | None = None if result.format == "auto" else FORMATS[result.format]
    explicit = importer is not None
    bound: Importer | None = None
    for lineno, item in iter_records(path, max_line_bytes):
        if isinstance(item, LogFormatError):
            yield lineno, item
            continue
        if importer is None:
            try:
                result.format = detect_format(item)
            except ValueError as e:
                err = LogFormatError(os.fspath(path), lineno, "<format>", str(e))
                if not skip_invalid:
                    raise err from None
                yield lineno, err  # with skip_invalid a stray record is one bad line; the next may decide
                continue
            importer = FORMATS[result.format]
        if bound is None:
            bound = _bind(importer, result.format, path, options, max_line_bytes, lenient)
        if bound.sniff(item):
            result.recognised += 1
        try:
            outcomes: list[TraceIn | SkipRecord] = parse_record(bound, item)
        except ValueError as e:  # includes pydantic.ValidationError and FieldError
            err = to_log_error(path, lineno, e)
            if explicit:
                looks = _looks_like(item)
                if looks is not None and looks != result.format:
                    err = LogFormatError(
                        err.path,
                        err.line,
                        err.field,
                        f"{err.problem} (this record looks like {looks}: "
                        f"pass --format {looks} or --format auto)",
                    )
            yield lineno, err
            continue
        for outcome in outcomes:
            yield lineno, outcome


def _looks_like(obj: dict[str, Any]) -> str | None:
    try:
        return detect_format(obj)
    except ValueError:
        return None


def detected_format(path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str:
    """What ``path`` looks like, in words: a format name, or why none fits (for error messages)."""
    text = detect_text_format(path, max_line_bytes)
    if text is not None:
        return text
    try:
        for _, item in iter_records(path, max_line_bytes):
            if isinstance(item, LogFormatError):
                continue
            return _looks_like(item) or "JSON lines of no known log format"
    except LogFormatError as e:
        return e.problem
    return "no JSON records and no known text log lines"


def iter_traces(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    skip_invalid: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    options: Mapping[str, Any] | None = None,
    *,
    require_records: bool = True,
    lenient_options: bool = False,
    carry: dict[str, Any] | None = None,
) -> tuple[ParseResult, Iterator[tuple[int, TraceIn]]]:
    """Stream the traces of a log file: ``(result, traces)``, ``traces`` read lazily, one record at a time.

    ``result.invalid``, ``result.skipped`` and ``result.format`` fill in while ``traces`` is consumed;
    ``result.traces`` stays empty (``parse_traces`` collects it). Arguments and errors are those of
    ``parse_traces``; errors are raised while iterating.

    Args:
        require_records: A file in which no record is recognised is an error naming the format
            expected and the one the file looks like. The scheduled loop reads chunks, where a
            stretch of start-up chatter is normal, and turns this off.
        lenient_options: Drop options the format does not take instead of refusing them (the
            scheduled loop passes the same options to every file of a source).
        carry: State kept between successive chunks of one log by formats whose records span lines
            (``vllm-log``: requests still waiting for their response line). Such an importer
            reads what an earlier call left and leaves what is still unfinished, instead of
            reporting it as skipped. Other formats ignore it.
    """
    name = _resolve(fmt)
    if name == "auto":
        name = detect_text_format(path, max_line_bytes) or "auto"
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    result = ParseResult(format=name)
    return result, _drive(
        path, name, result, skip_invalid, max_line_bytes, opts, require_records, lenient_options, carry
    )


def _drive(
    path: str | os.PathLike[str],
    name: str,
    result: ParseResult,
    skip_invalid: bool,
    max_line_bytes: int,
    opts: dict[str, Any],
    require_records: bool,
    lenient: bool,
    carry: dict[str, Any] | None,
) -> Iterator[tuple[int, TraceIn]]:
    importer = FORMATS.get(name)
    if importer is not None and getattr(importer, "reads_text", False):
        importer = _bind(importer, name, path, opts, max_line_bytes, lenient)
        lines = iter_text_lines(path, max_line_bytes)
        parse_lines = importer.parse_lines  # type: ignore[attr-defined]
        outcomes = parse_lines(path, lines, carry=carry) if carry is not None else parse_lines(path, lines)
    else:
        outcomes = _jsonl_outcomes(path, result, max_line_bytes, opts, skip_invalid, lenient)
    text = importer is not None and getattr(importer, "reads_text", False)
    for lineno, outcome in outcomes:
        if isinstance(outcome, SkipRecord):
            result.recognised += text
            result.skipped.append((lineno, outcome.reason))
        elif isinstance(outcome, LogFormatError):
            result.recognised += text and outcome.field not in _READ_FIELDS
            if not skip_invalid:
                raise outcome
            result.invalid.append(outcome)
        else:
            result.recognised += text
            yield lineno, outcome
    if require_records and not result.recognised:
        expected = "a known log format" if result.format == "auto" else f"format {result.format}"
        first = result.invalid[0] if result.invalid else None
        bad = f" ({len(result.invalid)} bad lines; first: {first.field}: {first.problem})" if first else ""
        raise LogFormatError(
            os.fspath(path),
            first.line if first else 0,
            "<format>",
            f"no record of {expected} in the file{bad}; the file looks like "
            f"{detected_format(path, max_line_bytes)}: pass the right --format (or --format auto)",
        )


def parse_traces(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    skip_invalid: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ParseResult:
    """Read a trace log file into validated ``TraceIn`` objects.

    Args:
        path: The log file (JSONL, or plain text for a text format such as ``vllm-log``).
        fmt: A key of ``FORMATS`` (``_`` and ``-`` are interchangeable), or ``"auto"`` to decide
            from the head of the file (a text format) or its first record.
        skip_invalid: Collect bad lines in ``ParseResult.invalid`` and go on instead of raising.
            With ``"auto"``, a record of no known format before the format is decided is one such
            bad line; the first recognised record decides the format.
        max_line_bytes: Longest line accepted, in bytes.
        options: Format-specific options, handed to the importer's ``bind`` (``None`` values are
            dropped): ``{"batch_input": PATH}`` for ``openai-batch``. A format without options
            rejects any.
        **kwargs: ``require_records``, ``lenient_options``, ``carry``: see ``iter_traces``.

    Returns:
        The format used, the parsed traces with their line numbers, the bad lines (``invalid``,
        with ``skip_invalid``) and the well-formed records that are not traces (``skipped``).

    Raises:
        ConfigError: ``fmt`` is not a known format, or options it does not take.
        LogFormatError: The first bad line (unless ``skip_invalid``); a missing, unreadable or
            empty file, a first record of no known format (without ``skip_invalid``), or a file in
            which no record of the format is recognised (always; it names the expected format and
            the one the file looks like).
    """
    result, traces = iter_traces(path, fmt, skip_invalid, max_line_bytes, options, **kwargs)
    result.traces.extend(traces)
    return result
