"""vLLM server request logs (``vllm serve --enable-log-requests --enable-log-outputs``): plain text.

Why: a team serving its small model with vLLM often has no application-side logging, but the
server can log every prompt and output. These are text lines, not JSON, and one trace spans two
of them, so this is a text importer (``reads_text``): it reads the whole file, pairs lines by
request id and ignores every other line. The formats, from ``vllm/entrypoints/logger.py``
(``RequestLogger``; each line is prefixed ``LEVEL MM-DD HH:MM:SS [logger.py:N]``, newer releases
add ``(APIServer pid=N)`` in front)::

    # up to v0.10 (INFO)
    Received request %s: prompt: %r, params: %s, prompt_token_ids: %s, prompt_embeds shape: %s,
        lora_request: %s[, prompt_adapter_request: %s].
    # later releases: INFO without the prompt, the prompt in a DEBUG line logged just before it
    Request %s details: prompt: %r, prompt_token_ids: %s, prompt_embeds shape: %s.
    Received request %s: params: %s, lora_request: %s.
    # with --enable-log-request-prompts: a prompt preview at INFO (max --max-log-len, else 4096 chars)
    Received request %s: params: %s, lora_request: %s, prompt: %r.
    # outputs (--enable-log-outputs); streaming logs deltas (ignored here) and a complete line
    Generated response %s%s: output: %r, output_token_ids: %s, finish_reason: %s
        (%s after the id: "" | " (streaming delta)" | " (streaming complete)")

Mapping and the choices behind it:

* The prompt is the rendered chat template. Messages are recovered from ChatML
  (``<|im_start|>role\\n…<|im_end|>``: SmolLM2, Qwen) or Llama 3 headers; the trailing generation
  prompt (``<|im_start|>assistant\\n``) is dropped. Any other prompt is kept whole as one user
  message; ``metadata.vllm_prompt_format`` says which (``chatml``, ``llama3`` or ``raw``).
* ``id`` is the request id (``chatcmpl-…``/``cmpl-…``, a random UUID unless the client sets
  ``X-Request-Id``): fixed in the log, so a re-import adds nothing.
* ``model_version`` is the LoRA adapter's ``lora_name`` when the request used one, else unset
  (vLLM does not log the served model name per request).
* The log time has no year, so ``timestamp`` is unset; the logged ``MM-DD HH:MM:SS`` of the
  response is kept in ``metadata.vllm_logged_at``. Token counts are the lengths of the logged
  token-id lists (``prompt_token_ids`` is only logged by some versions).
* Not errors but *skipped* (``ParseResult.skipped``): a request with no response line (aborted,
  still running, or in the next log file), a response whose request is not in the file (an
  earlier file), further choices of a request with ``n > 1``.
* Errors (per request, at its line): a request whose prompt was not logged (newer vLLM at INFO:
  set ``VLLM_LOGGING_LEVEL=DEBUG`` or ``--enable-log-request-prompts``), a streamed response
  logged only as ``<streaming_complete: N tokens>``, a line whose quoted text is cut off.
* vLLM cuts prompts and outputs at ``--max-log-len`` without a marker; kaizen cannot tell.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from kaizen.tools.errors import LogFormatError
from kaizen.tools.logs.base import FieldError, SkipRecord, explain, to_log_error
from kaizen.tools.schema import TraceIn

_TIME = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR)\s+(\d\d-\d\d \d\d:\d\d:\d\d)")
_RECEIVED = re.compile(r"Received request (\S+): (.*)")
_DETAILS = re.compile(r"Request (\S+) details: (prompt: .*)")
_GENERATED = re.compile(r"Generated response (\S+?)( \(streaming (?:delta|complete)\))?: (output: .*)")
_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|None""", re.DOTALL)
_IDS = re.compile(r"(prompt_token_ids|output_token_ids): \[([^\]]*)\]")
_LORA = re.compile(r"lora_name='([^']*)'")
_FINISH = re.compile(r"finish_reason: (\w+)")
_NO_TEXT = re.compile(r"<streaming_complete: \d+ tokens>")
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_TEMPLATES = (  # (name, one message, what may follow the last message)
    (
        "chatml",
        re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n?", re.DOTALL),
        re.compile(r"\s*(<\|im_start\|>assistant\n?)?\s*"),
    ),
    (
        "llama3",
        re.compile(
            r"(?:<\|begin_of_text\|>)?<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>",
            re.DOTALL,
        ),
        re.compile(r"(<\|start_header_id\|>assistant<\|end_header_id\|>\n\n)?"),
    ),
)


def _literal(text: str, pos: int, field: str) -> tuple[str | None, int]:
    """The Python string literal (``%r``) or ``None`` at ``text[pos:]``, and where it ends."""
    m = _STRING.match(text, pos)
    if m is not None:
        try:
            return (None if m[0] == "None" else ast.literal_eval(m[0])), m.end()
        except (TypeError, ValueError, SyntaxError):
            pass
    raise FieldError(field, "expected a quoted string: the line is cut off or not a vLLM request log")


def _count(name: str, text: str) -> int | None:
    m = next((m for m in _IDS.finditer(text) if m[1] == name), None)
    return None if m is None else len([x for x in m[2].split(",") if x.strip()])


def messages_from_prompt(prompt: str) -> tuple[str, list[dict[str, str]]]:
    """``(template name, messages)`` recovered from a rendered prompt; ``("raw", [user prompt])`` otherwise."""
    for name, message, tail in _TEMPLATES:
        pos, msgs = 0, []
        while (m := message.match(prompt, pos)) and m[1] in _ROLES:
            msgs.append({"role": m[1], "content": m[2]})
            pos = m.end()
        if msgs and tail.fullmatch(prompt, pos):
            return name, msgs
    return "raw", [{"role": "user", "content": prompt}]


class VllmLog:
    """Importer for vLLM's plain-text request/response log lines."""

    name = "vllm-log"
    reads_text = True

    def sniff(self, obj: dict[str, Any]) -> bool:
        """Never a JSON record: this format is recognised by ``sniff_text``."""
        return False

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """Not used: records span two text lines (see ``parse_lines``)."""
        raise FieldError("<record>", "vllm-log is a plain-text format, not JSON lines")

    def sniff_text(self, line: str) -> bool:
        """A request, request-details or response line of vLLM's ``RequestLogger``."""
        return bool(_RECEIVED.search(line) or _GENERATED.search(line) or _DETAILS.search(line))

    def parse_lines(
        self,
        path: str | os.PathLike[str],
        lines: Iterable[tuple[int, str | LogFormatError]],
        carry: dict[str, Any] | None = None,
    ) -> Iterator[tuple[int, TraceIn | SkipRecord | LogFormatError]]:
        """Pair request and response lines by request id; yield a trace per answered request.

        Args:
            path: The log file (for error messages).
            lines: Its ``(line number, text)`` pairs.
            carry: Requests left unanswered by an earlier chunk of the same log (``carry["requests"]``:
                request id → what was read of it). Given, unanswered requests are left there for
                the next chunk instead of being reported as skipped, and responses pair with
                requests of earlier chunks (the scheduled loop reads a growing log in pieces).

        Yields:
            ``(line, trace)`` at the response line; ``(line, SkipRecord)`` for unpaired lines;
            ``(line, LogFormatError)`` for unreadable lines, unusable requests, and a request id
            used by two requests in flight at once (their responses cannot be told apart).
        """
        pending: dict[str, dict[str, Any]] = carry.setdefault("requests", {}) if carry is not None else {}
        done: set[str] = set()
        broken: set[str] = set()
        for lineno, line in lines:
            if isinstance(line, LogFormatError):
                yield lineno, line
                continue
            # the earliest match is the log message itself; later ones are inside a quoted prompt/output
            found = [m for m in (r.search(line) for r in (_DETAILS, _RECEIVED, _GENERATED)) if m]
            m = min(found, key=lambda x: x.start()) if found else None
            if m is None or (m.re is _GENERATED and m[2] == " (streaming delta)"):
                continue
            rid = m[1]
            try:
                if m.re is not _GENERATED:
                    part = "received" if m.re is _RECEIVED else "details"
                    req = pending.get(rid)
                    if req is not None and req.get(part):
                        first = req.get("line")
                        pending.pop(rid)
                        broken.add(rid)
                        where = f"line {first}" if first else "an earlier chunk of the log"
                        yield (
                            lineno,
                            LogFormatError(
                                os.fspath(path),
                                lineno,
                                "request_id",
                                f"request id {rid} is used by two requests in flight at once (also at {where}): their "
                                "responses cannot be told apart, so neither is imported; make request ids unique "
                                "(a client reusing X-Request-Id?)",
                            ),
                        )
                        continue
                    broken.discard(rid)
                    req = pending.setdefault(rid, {"line": lineno})
                    req[part] = True
                    req["line"] = lineno if m.re is _RECEIVED else req["line"]
                    self._request(req, m[2])
                    continue
                req = pending.pop(rid, None)
                if req is None:
                    if rid in done:
                        yield lineno, SkipRecord(f"response {rid}: another choice of a request with n > 1")
                    elif rid not in broken:
                        why = "its 'Received request' line is not in this file (an earlier log file?)"
                        yield lineno, SkipRecord(f"response {rid}: {why}")
                    continue
                done.add(rid)
                t = _TIME.search(line, 0, m.start())
                yield self._trace(path, rid, req, m[3], lineno, t[1] if t else None)
            except FieldError as e:
                broken.add(rid)
                pending.pop(rid, None)
                yield lineno, to_log_error(path, lineno, e)
        if carry is not None:
            return  # what is unanswered waits in carry["requests"] for the next chunk
        for rid, req in pending.items():
            why = "no 'Generated response' line (aborted, still running, or logged without --enable-log-outputs)"
            yield req["line"], SkipRecord(f"request {rid}: {why}")

    @staticmethod
    def _request(req: dict[str, Any], rest: str) -> None:
        """Fill ``req`` from the text after ``Received request ID: `` or ``Request ID details: ``."""
        if rest.startswith("prompt: "):
            req["prompt"], end = _literal(rest, len("prompt: "), "prompt")
            rest = rest[end:]
        else:
            at = rest.find(", prompt: ", max(rest.find("lora_request: "), 0))
            if at >= 0:
                req["prompt"], _ = _literal(rest, at + len(", prompt: "), "prompt")
                rest = rest[:at]
        if (n := _count("prompt_token_ids", rest)) is not None:
            req["prompt_tokens"] = n
        if lora := _LORA.search(rest):
            req["lora"] = lora[1]

    @staticmethod
    def _trace(
        path: str | os.PathLike[str],
        rid: str,
        req: dict[str, Any],
        rest: str,
        lineno: int,
        logged_at: str | None,
    ) -> tuple[int, TraceIn | LogFormatError]:
        output, end = _literal(rest, len("output: "), "output")
        if output is None or _NO_TEXT.fullmatch(output):
            raise FieldError(
                "output", f"vLLM logged no text for {rid} (a streamed response logged as a token count)"
            )
        prompt = req.get("prompt")
        if prompt is None:
            problem = (
                f"vLLM logged no prompt text for {rid} (newer vLLM logs prompts at DEBUG only: run it with "
                "VLLM_LOGGING_LEVEL=DEBUG or --enable-log-request-prompts; or the request sent token ids)"
            )
            at = req.get("line") or lineno  # a request carried from an earlier chunk: report at its response
            return at, LogFormatError(os.fspath(path), at, "prompt", problem)
        template, messages = messages_from_prompt(prompt)
        metadata = {"vllm_prompt_format": template, "vllm_logged_at": logged_at}
        if finish := _FINISH.search(rest, end):
            metadata["vllm_finish_reason"] = finish[1]
        data = {
            "id": rid,
            "model_version": req.get("lora"),
            "messages": messages,
            "output": output,
            "metadata": metadata,
            "prompt_tokens": req.get("prompt_tokens"),
            "completion_tokens": _count("output_token_ids", rest[end:]),
        }
        try:
            return lineno, TraceIn.model_validate(data)
        except ValidationError as e:  # not expected: roles are checked, counts are ints
            fld, problem = explain(e)
            return lineno, LogFormatError(os.fspath(path), lineno, fld, problem)


IMPORTER = VllmLog()
