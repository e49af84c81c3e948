"""The shared machinery of the log importers: a streaming JSONL reader, the ``Importer`` protocol
and the conversion of parse failures into ``LogFormatError``.

Why it is split this way: almost every log format kaizen reads is "one JSON object per line", and
what differs is only how one object maps onto ``TraceIn``. So reading, line numbering, size limits
and error wording live here once, and a format is a small module with ``sniff`` and ``parse``. That
keeps error messages identical across formats (``path:line: field: problem``) and makes a new
format one file. The few formats that do not fit "one line, one trace" use optional hooks (see
``Importer``): ``parse_many`` (one line, several traces: an OTLP export), ``bind`` (a second input
file: OpenAI Batch), and text importers (``reads_text``: vLLM's plain-text request log, whose
records span two lines). Well-formed records that are not traces (a Langfuse SPAN row) are reported
as ``SkipRecord`` values rather than errors, so an honest export never needs ``--skip-invalid``.

The reader never holds more than ``max_line_bytes`` of one line in memory: production logs are
large and occasionally contain a runaway record (a base64 image, a looping generation), and that
must end in a clear error, not in the importer being killed for memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, BinaryIO, Protocol, runtime_checkable

from pydantic import ValidationError

from kaizen.tools.errors import LogFormatError
from kaizen.tools.schema import TraceIn

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_SKIP_CHUNK = 1024 * 1024
_BOM = b"\xef\xbb\xbf"
# Content-part types whose ``text`` is kept when a list of parts is flattened to a string
# (chat completions use "text"; the Responses API uses "input_text"/"output_text").
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


class FieldError(ValueError):
    """A record that does not fit its format, pointing at the field *in the source record*.

    Importers raise it when the failing field is not the one pydantic would name (for example an
    OpenAI log whose output lives at ``response.choices.0.message.content``).

    Args:
        field: Dotted path of the offending field in the input object, e.g. ``request.messages.0``.
        problem: What is wrong, in plain words.
    """

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


class SkipRecord(Exception):
    """A well-formed record that is deliberately not a trace (a Langfuse SPAN, a non-GenAI span).

    Importers raise it from ``parse`` (or return it among ``parse_many``'s results); the reader
    records ``(line, reason)`` in ``ParseResult.skipped`` whatever ``skip_invalid`` says, because
    nothing is wrong with the file. It is not a ``ValueError`` so it can never pass for one.

    Args:
        reason: Why the record is not imported, in plain words.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@runtime_checkable
class Importer(Protocol):
    """One log format: recognises a record and turns it into a ``TraceIn``.

    Optional hooks, looked up with ``getattr`` so that the two-method importers stay valid:

    * ``parse_many(obj) -> list[TraceIn | SkipRecord]``: used instead of ``parse`` when one line
      can hold several records (an OTLP ``resourceSpans`` export). A ``ValueError`` still rejects
      the whole line, which keeps a line the unit of atomicity.
    * ``bind(path, options, max_line_bytes) -> Importer``: called once, before the first record,
      to get an importer configured for this file (OpenAI Batch loads its input file here).
      ``options`` are the format-specific options of ``parse_traces``; a format without ``bind``
      accepts none.
    * ``reads_text = True`` with ``sniff_text(line) -> bool`` and
      ``parse_lines(path, lines) -> Iterator[(lineno, TraceIn | SkipRecord | LogFormatError)]``:
      a plain-text log read as a whole (vLLM), for formats whose records are not JSON lines.

    Attributes:
        name: The format's name as given to ``--format`` (e.g. ``"kaizen"``, ``"openai-chat"``).
    """

    name: str

    def sniff(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` (the first record of a file) looks like this format."""
        ...

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """Convert one record; raise ``ValueError``/``FieldError``/``ValidationError`` if it does not fit."""
        ...


@dataclass
class ParseResult:
    """The outcome of importing one trace file.

    Attributes:
        format: Name of the format used (detected or given).
        traces: ``(line number, trace)`` for every record that parsed, in file order.
        invalid: One error per skipped line (only filled with ``skip_invalid=True``).
        skipped: ``(line number, reason)`` for well-formed records that are not traces (see
            ``SkipRecord``); always filled, they are not errors.
        recognised: Records recognised as the format (well-formed or not): a file with none is
            not of that format.
    """

    format: str
    traces: list[tuple[int, TraceIn]] = dataclass_field(default_factory=list)
    invalid: list[LogFormatError] = dataclass_field(default_factory=list)
    skipped: list[tuple[int, str]] = dataclass_field(default_factory=list)
    recognised: int = 0


def parse_record(importer: Importer, obj: dict[str, Any]) -> list[TraceIn | SkipRecord]:
    """Everything one decoded line yields: ``parse_many`` when the importer has it, else ``parse``.

    Raises:
        ValueError: The line does not fit the format (``FieldError``, ``ValidationError`` …).
    """
    many = getattr(importer, "parse_many", None)
    try:
        return list(many(obj)) if many is not None else [importer.parse(obj)]
    except SkipRecord as skip:
        return [skip]


def _size_text(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def iter_records(
    path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, Any] | LogFormatError]]:
    """Stream ``(line number, object)`` pairs, yielding per-line problems as values.

    This is the tolerant core of ``read_jsonl``: a bad line is yielded as a ``LogFormatError`` so
    that callers with ``skip_invalid`` can record it and go on. Problems with the file as a whole
    (missing, unreadable, no records) are raised, because there is nothing to go on with.

    Args:
        path: The JSONL file.
        max_line_bytes: Longest line accepted, in bytes (newline excluded).

    Yields:
        ``(lineno, dict)`` for each JSON object line, ``(lineno, LogFormatError)`` for each bad
        line. Line numbers are 1-based and count blank lines.

    Raises:
        LogFormatError: The file is missing, unreadable or holds no non-blank line.
    """
    p = os.fspath(path)
    for lineno, raw in iter_lines(path, max_line_bytes):
        yield lineno, raw if isinstance(raw, LogFormatError) else _decode(p, lineno, raw)


def iter_text_lines(
    path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Generator[tuple[int, str | LogFormatError], None, None]:
    """Like ``iter_records`` for a plain-text log: ``(lineno, str)`` per non-blank line, ``\\r`` removed."""
    p = os.fspath(path)
    for lineno, raw in iter_lines(path, max_line_bytes, "file is empty: no log lines found"):
        if isinstance(raw, LogFormatError):
            yield lineno, raw
            continue
        try:
            yield lineno, raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            problem = f"not valid UTF-8 at byte {e.start}; re-encode the file as UTF-8"
            yield lineno, LogFormatError(p, lineno, "<encoding>", problem)


def iter_lines(
    path: str | os.PathLike[str],
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    empty_problem: str = "file is empty: no JSON lines found",
) -> Iterator[tuple[int, bytearray | LogFormatError]]:
    """The raw non-blank lines of a file (newline removed), or the error for an over-long line.

    Shared by the JSONL and the plain-text readers so both get the same size limit, line
    numbering, BOM handling and file-level errors.
    """
    p = os.fspath(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed in the finally below, across yields
    except FileNotFoundError:
        raise LogFormatError(p, 0, "<file>", "file not found") from None
    except IsADirectoryError:
        raise LogFormatError(p, 0, "<file>", "is a directory, not a JSONL file") from None
    except PermissionError:
        raise LogFormatError(p, 0, "<file>", "permission denied: cannot read the file") from None
    except OSError as e:
        raise LogFormatError(p, 0, "<file>", f"cannot open: {e.strerror or e}") from None

    seen_any = False
    lineno = 0
    try:
        while True:
            try:
                raw = _read_line(f, max_line_bytes + 1)
            except OSError as e:
                raise LogFormatError(p, lineno + 1, "<file>", f"read error: {e.strerror or e}") from None
            if not raw:
                break
            lineno += 1
            if lineno == 1 and raw.startswith(_BOM):
                del raw[: len(_BOM)]
            ends_line = raw.endswith(b"\n")
            if ends_line:
                del raw[-1:]  # in place: no copy of a long line
            if len(raw) > max_line_bytes:
                seen_any = True
                del raw
                if not ends_line:
                    while (chunk := f.readline(_SKIP_CHUNK)) and not chunk.endswith(b"\n"):
                        pass
                yield (
                    lineno,
                    LogFormatError(
                        p,
                        lineno,
                        "<line>",
                        f"line is longer than {_size_text(max_line_bytes)}; "
                        "split the record or raise max_line_bytes",
                    ),
                )
                continue
            if not raw or raw.isspace():
                continue
            seen_any = True
            yield lineno, raw
    finally:
        f.close()
    if not seen_any:
        raise LogFormatError(p, 0, "<file>", empty_problem)


def _read_line(f: BinaryIO, limit: int) -> bytearray:
    """Read one line of at most ``limit`` bytes, in 1 MiB steps.

    ``BufferedReader.readline(limit)`` gathers pieces and joins them, briefly holding twice the
    line; growing one bytearray keeps the peak near the line itself.
    """
    buf = bytearray()
    while len(buf) < limit:
        piece = f.readline(min(_SKIP_CHUNK, limit - len(buf)))
        if not piece:
            break
        buf += piece
        if piece.endswith(b"\n"):
            break
    return buf


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(path: str, lineno: int, body: bytes | bytearray) -> dict[str, Any] | LogFormatError:
    """Decode one non-blank line into a dict, or return the error describing why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        problem = f"not valid UTF-8 at byte {e.start}; re-encode the file as UTF-8"
        return LogFormatError(path, lineno, "<encoding>", problem)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        return LogFormatError(path, lineno, "<json>", f"invalid JSON: {e.msg} (column {e.colno})")
    except (ValueError, RecursionError) as e:
        return LogFormatError(path, lineno, "<json>", f"invalid JSON: {e}")
    if not isinstance(obj, dict):
        problem = f"expected a JSON object per line, got {_json_type(obj)}"
        return LogFormatError(path, lineno, "<json>", problem)
    return obj


def _json_type(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return "null" if v is None else type(v).__name__


def read_jsonl(
    path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream the JSON objects of a JSONL file, one line at a time.

    Blank lines are skipped (but counted, so line numbers match an editor). A UTF-8 byte-order
    mark on the first line is ignored.

    Args:
        path: The JSONL file.
        max_line_bytes: Longest line accepted, in bytes; longer lines are never read whole.

    Yields:
        ``(lineno, obj)`` with 1-based line numbers.

    Raises:
        LogFormatError: On the first bad line (too long, not UTF-8, invalid JSON, not an object)
            and for a missing, unreadable or empty file.
    """
    for lineno, item in iter_records(path, max_line_bytes):
        if isinstance(item, LogFormatError):
            raise item
        yield lineno, item


def explain(exc: ValueError) -> tuple[str, str]:
    """``(field, problem)`` for a parse failure: the first pydantic error, or an importer's FieldError.

    Args:
        exc: A ``FieldError``, a ``pydantic.ValidationError`` or any other ``ValueError``.

    Returns:
        The dotted field path (``"<record>"`` when unknown) and the problem text.
    """
    if isinstance(exc, FieldError):
        return exc.field, exc.problem
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        if errors:
            first = errors[0]
            loc = ".".join(str(x) for x in first["loc"])
            return loc or "<record>", first["msg"]
    return "<record>", str(exc) or type(exc).__name__


def to_log_error(path: str | os.PathLike[str], lineno: int, exc: ValueError) -> LogFormatError:
    """Wrap a parse failure of line ``lineno`` as a ``LogFormatError`` naming the field."""
    fld, problem = explain(exc)
    return LogFormatError(os.fspath(path), lineno, fld, problem)


def flatten_content(content: Any, field: str) -> Any:
    """Turn a list of content parts into one string; leave anything else for validation to judge.

    Text parts (``{"type": "text", "text": ...}``) are joined with ``"\\n"``; other parts (images,
    audio, files) are dropped, since kaizen trains and evaluates on text.

    Args:
        content: A message's ``content`` as logged.
        field: Dotted path of that content, for error messages.

    Returns:
        The flattened text, or ``content`` unchanged when it is not a list.

    Raises:
        FieldError: A part is not an object, or a text part has no string ``text``.
    """
    if not isinstance(content, list):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise FieldError(
                f"{field}.{j}", 'expected a content part object like {"type": "text", "text": "..."}'
            )
        if part.get("type") in _TEXT_PART_TYPES:
            text = part.get("text")
            if not isinstance(text, str):
                raise FieldError(f"{field}.{j}.text", "text part needs a string 'text'")
            texts.append(text)
    return "\n".join(texts)
