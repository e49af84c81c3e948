"""OpenAI Batch API results: the output file, joined with the input file it answers.

A batch is two JSONL files. The *input* file, one request per line::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [...], "max_tokens": 5}}

and the *output* file OpenAI writes, one result per line, in any order::

    {"id": "batch_req_…", "custom_id": "req-1",
     "response": {"status_code": 200, "request_id": "…", "body": {<chat.completion object>}},
     "error": null}

The output holds no messages, so the importer needs both: the output file is the file being
imported (its lines are the records, counted and reported), and the input file is found with
``options={"batch_input": PATH}`` (``kaizen ingest OUT --batch-input IN``) or, failing that, next
to the output file with ``output`` replaced by ``input`` in its name (``x_output.jsonl`` →
``x_input.jsonl``). The input is indexed by ``custom_id`` in memory when the import starts; only
``model``, ``messages`` and ``metadata`` of each body are kept.

Choices:

* The joined pair is mapped exactly like an ``openai-chat`` line (that importer does the work),
  and errors are renamed to where the value lives: ``response.body.choices.0.message.content`` in
  the output, ``batch_input.body.messages.1.role`` (with the input file and line) in the input.
* ``id`` is the output line's ``id`` (``batch_req_…``): unique per request and fixed in the
  file, so re-importing the file is a no-op, while identical requests of one batch stay distinct.
  ``custom_id`` is kept as ``metadata.openai_batch_custom_id`` to join feedback keyed by it.
* A failed request (``error`` set, or a ``status_code`` other than 200) is an invalid record:
  there is no output to learn from, and ``--skip-invalid`` lists them.
* Only ``/v1/chat/completions`` requests are supported; other endpoints are named in the error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs.base import DEFAULT_MAX_LINE_BYTES, FieldError, iter_records
from kaizen.tools.logs.openai_chat import IMPORTER as OPENAI_CHAT
from kaizen.tools.schema import TraceIn

_CHAT_URL = "/v1/chat/completions"
_KEPT_BODY_KEYS = ("model", "messages", "metadata")
_INPUT_NOT_OUTPUT = (
    "this is a Batch *input* line: import the output file and pass this one with --batch-input"
)


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        code, message = err.get("code"), err.get("message")
        return ": ".join(str(x) for x in (code, message) if x) or "no details"
    return str(err)


class BatchInput:
    """The batch input file, indexed by ``custom_id`` (line number, url, trimmed body)."""

    def __init__(self, path: str | os.PathLike[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self.path = os.fspath(path)
        self.requests: dict[str, tuple[int, Any, Any]] = {}
        self.duplicates: dict[str, int] = {}
        self.unreadable: list[str] = []
        for lineno, item in iter_records(path, max_line_bytes):
            if isinstance(item, LogFormatError):
                self.unreadable.append(str(item))
                continue
            cid = item.get("custom_id")
            if not isinstance(cid, str):
                self.unreadable.append(f"line {lineno}")
                continue
            if cid in self.requests:
                self.duplicates.setdefault(cid, lineno)
                continue
            body = item.get("body")
            if isinstance(body, dict):
                body = {k: body[k] for k in _KEPT_BODY_KEYS if k in body}
            self.requests[cid] = (lineno, item.get("url"), body)

    def lookup(self, cid: str) -> tuple[int, dict[str, Any]]:
        """``(input line, body)`` of a request; ``FieldError`` on ``custom_id`` when it cannot be used."""
        if cid not in self.requests:
            problem = f"{cid!r} is not in the batch input file {self.path}"
            if self.unreadable:
                problem += f" ({len(self.unreadable)} input lines unusable, first: {self.unreadable[0]})"
            raise FieldError("custom_id", problem)
        lineno, url, body = self.requests[cid]
        where = f"{self.path}:{lineno}"
        if cid in self.duplicates:
            dup = self.duplicates[cid]
            raise FieldError(
                "custom_id", f"{cid!r} is on more than one line of {self.path} ({lineno}, {dup})"
            )
        if url not in (None, _CHAT_URL):
            raise FieldError(
                "custom_id", f"request {cid!r} ({where}) is for {url}; only {_CHAT_URL} is supported"
            )
        if not isinstance(body, dict):
            raise FieldError("batch_input.body", f"request {cid!r} ({where}) has no body object")
        return lineno, body


def sibling_input(path: str | os.PathLike[str]) -> Path | None:
    """The input file a Batch output file names by convention: ``output`` → ``input`` in its name (None without ``output``)."""
    p = Path(path)
    i = p.name.rfind("output")
    return None if i < 0 else p.with_name(p.name[:i] + "input" + p.name[i + len("output") :])


class OpenAIBatch:
    """Importer for OpenAI Batch API output files (needs the input file: see ``bind``)."""

    name = "openai-batch"
    options = ("batch_input",)

    def __init__(self, batch_input: BatchInput | None = None):
        self.batch_input = batch_input

    def sniff(self, obj: dict[str, Any]) -> bool:
        """A batch line has ``custom_id`` and ``response``/``error`` (output) or ``body`` (input, refused later)."""
        return "custom_id" in obj and ("response" in obj or "error" in obj or "body" in obj)

    def bind(self, path: str | os.PathLike[str], options: dict[str, Any], max_line_bytes: int) -> OpenAIBatch:
        """An importer holding the indexed input file of the output file ``path``.

        Raises:
            ConfigError: An option other than ``batch_input``.
            LogFormatError: No input file given or found next to ``path``, or it cannot be read.
        """
        unknown = sorted(set(options) - {"batch_input"})
        if unknown:
            raise ConfigError(
                f"format {self.name} takes only the batch_input option (given: {', '.join(unknown)})"
            )
        given = options.get("batch_input")
        sibling = sibling_input(path)
        if given is None and (sibling is None or not sibling.is_file()):
            for lineno, first in iter_records(path, max_line_bytes):
                if isinstance(first, dict) and "body" in first and "response" not in first:
                    raise LogFormatError(os.fspath(path), lineno, "body", _INPUT_NOT_OUTPUT)
                break
            looked = f" (looked for {sibling})" if sibling else ""
            raise LogFormatError(
                os.fspath(path),
                0,
                "<batch-input>",
                "a Batch output file holds no messages: pass the batch input file with --batch-input FILE"
                + looked,
            )
        return OpenAIBatch(BatchInput(given if given is not None else sibling, max_line_bytes))  # type: ignore[arg-type]

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """Join one output line with its request and map the pair like an ``openai-chat`` line.

        Raises:
            FieldError: A failed request, an unknown ``custom_id``, or a pair that does not fit.
        """
        if "body" in obj and "response" not in obj:
            raise FieldError("body", _INPUT_NOT_OUTPUT)
        if obj.get("error") is not None:
            raise FieldError("error", f"the request failed: {_error_text(obj['error'])}")
        response = obj.get("response")
        if not isinstance(response, dict):
            raise FieldError("response", "missing or not an object")
        status, body = response.get("status_code"), response.get("body")
        if status != 200:
            detail = (
                _error_text(body.get("error"))
                if isinstance(body, dict) and body.get("error")
                else "no details"
            )
            raise FieldError("response.status_code", f"{status}: the request failed: {detail}")
        cid = obj.get("custom_id")
        if not isinstance(cid, str):
            raise FieldError("custom_id", "missing or not a string")
        if self.batch_input is None:
            raise FieldError(
                "custom_id", "no batch input file: use parse_traces(..., options={'batch_input': PATH})"
            )
        lineno, request = self.batch_input.lookup(cid)
        raw_metadata = request.get("metadata")
        metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        pair = {
            "id": obj.get("id"),
            "request": {k: v for k, v in request.items() if k != "metadata"},
            "response": body,
            "metadata": {**metadata, "openai_batch_custom_id": cid},
        }
        try:
            return OPENAI_CHAT.parse(pair)
        except FieldError as e:
            head, _, rest = e.field.partition(".")
            rest = f".{rest}" if rest else ""
            if head == "request":
                where = f"{self.batch_input.path}:{lineno}, custom_id {cid!r}"
                raise FieldError(f"batch_input.body{rest}", f"{e.problem} ({where})") from None
            raise FieldError(f"response.body{rest}" if head == "response" else e.field, e.problem) from None


IMPORTER = OpenAIBatch()
