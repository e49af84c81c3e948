"""Langfuse observation exports (JSONL): the GENERATION rows are model calls.

Why: teams that trace with Langfuse already have every call, its model and usage there; an
export (the public API's observations, one per line, or the blob-storage export) is the log.
Example line (public API, camelCase)::

    {"id": "obs-1", "traceId": "tr-1", "type": "GENERATION", "name": "classify",
     "startTime": "2025-03-01T09:15:00.000Z", "endTime": "2025-03-01T09:15:00.412Z",
     "model": "intents-v1", "input": [{"role": "user", "content": "card declined?"}],
     "output": {"role": "assistant", "content": "card_declined"},
     "usage": {"input": 19, "output": 1, "total": 20}, "metadata": {"channel": "app"}}

The blob-storage export's snake_case names (``trace_id``, ``start_time`` as
``2024-05-29 13:46:19.963000`` UTC, ``provided_model_name``, ``usage_details``) are read too.

Mapping and the choices behind it:

* Only ``type == "GENERATION"`` rows are traces. An export also holds SPAN, EVENT, AGENT, TOOL …
  rows; those are *skipped with a reason* (``ParseResult.skipped``), not errors, because they are
  a normal part of every export and must not force ``--skip-invalid``.
* ``input`` / ``output`` may be JSON strings (the blob export stores them so) or objects. Input: a
  list of chat messages, ``{"messages": [...]}``, one ``{role, content}`` message, or plain text
  (one user message). Output: text, a ``{role, content}`` message, a one-message list, or a
  chat-completion ``{"choices": [...]}``. List-of-parts content is flattened to text; keys other
  than ``role``/``content`` are dropped, as for OpenAI chat logs.
* ``id`` is the observation id: unique in Langfuse and stable, so a re-import adds nothing and
  Langfuse scores (keyed by observation id) can be attached as kaizen feedback.
* ``timestamp`` is ``startTime``; ``latency_ms`` is ``endTime - startTime``.
* tokens: ``usageDetails``/``usage`` ``input``/``output`` (or ``promptTokens``/``completionTokens``).
* ``metadata``: the observation's metadata plus ``langfuse_trace_id`` and ``langfuse_name``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kaizen.tools.logs.base import FieldError, SkipRecord, explain, flatten_content
from kaizen.tools.schema import TraceIn


def _get(obj: dict[str, Any], *keys: str) -> tuple[str, Any]:
    """The first present key among the camelCase/snake_case spellings, and its value."""
    for key in keys:
        if obj.get(key) is not None:
            return key, obj[key]
    return keys[0], None


def _decoded(v: Any) -> Any:
    """A JSON string's value when it holds an object or a list; any other value unchanged."""
    if isinstance(v, str) and v.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _time(v: Any, field: str) -> datetime | None:
    if v is None:
        return None
    try:
        t = datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        t = None
    if t is None:
        raise FieldError(field, "expected an ISO 8601 time")
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # the blob export writes naive UTC


def _messages(v: Any) -> tuple[str, list[Any]]:
    """``(source field, messages)`` from a generation's input."""
    v = _decoded(v)
    if isinstance(v, dict) and "messages" in v:
        v, field = v["messages"], "input.messages"
    else:
        field = "input"
    if isinstance(v, str):
        return field, [{"role": "user", "content": v}]
    if isinstance(v, dict) and "role" in v:
        v = [v]
    if not isinstance(v, list) or not v:
        raise FieldError(field, "expected chat messages, {messages: [...]} or text")
    out: list[Any] = []
    for i, m in enumerate(v):
        if isinstance(m, dict):
            content = m.get("content")
            content = "" if content is None else flatten_content(content, f"{field}.{i}.content")
            m = {"role": m.get("role"), "content": content}
        out.append(m)
    return field, out


def _output(v: Any) -> Any:
    v = _decoded(v)
    field = "output"
    if isinstance(v, list) and len(v) == 1:
        v, field = v[0], "output.0"
    if isinstance(v, dict) and isinstance(v.get("choices"), list) and v["choices"]:
        first = v["choices"][0]
        v, field = (first.get("message") if isinstance(first, dict) else None), "output.choices.0.message"
    if isinstance(v, dict) and "content" in v:
        v, field = flatten_content(v["content"], f"{field}.content"), f"{field}.content"
    if not isinstance(v, str):
        raise FieldError(
            field, "missing or not text (expected a string, a {role, content} message or {choices: [...]})"
        )
    return v


class Langfuse:
    """Importer for Langfuse observation exports (GENERATION rows; other types are skipped)."""

    name = "langfuse"

    def sniff(self, obj: dict[str, Any]) -> bool:
        """An observation has ``id``, ``type`` and ``traceId`` (``trace_id`` in the blob export)."""
        return "id" in obj and "type" in obj and ("traceId" in obj or "trace_id" in obj)

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """Map one GENERATION row onto ``TraceIn``; raise ``SkipRecord`` for any other type.

        Raises:
            SkipRecord: The row is not a GENERATION.
            FieldError: The row does not fit; ``field`` is the path in ``obj``.
        """
        kind = obj.get("type")
        if kind != "GENERATION":
            raise SkipRecord(f"observation type {kind!r} is not a GENERATION")
        in_field, messages = _messages(obj.get("input"))
        output = _output(obj.get("output"))
        start_key, start = _get(obj, "startTime", "start_time")
        end_key, end = _get(obj, "endTime", "end_time")
        start, end = _time(start, start_key), _time(end, end_key)
        model_key, model = _get(obj, "model", "providedModelName", "provided_model_name")
        usage_key, usage = _get(obj, "usageDetails", "usage_details", "usage")
        usage = _decoded(usage) if usage is not None else {}
        if not isinstance(usage, dict):
            raise FieldError(usage_key, "Input should be a valid dictionary")
        tokens: dict[str, tuple[str, Any]] = {}  # kaizen field -> (source field, value)
        for kaizen_field, keys in (
            ("prompt_tokens", ("input", "promptTokens")),
            ("completion_tokens", ("output", "completionTokens")),
        ):
            key, value = _get(usage, *keys)  # else the top-level promptTokens/completionTokens
            tokens[kaizen_field] = (
                (f"{usage_key}.{key}", value) if value is not None else (keys[1], obj.get(keys[1]))
            )
        metadata = _decoded(obj.get("metadata"))
        if not isinstance(metadata, dict):
            metadata = {} if metadata is None else {"langfuse_metadata": metadata}
        _, trace_id = _get(obj, "traceId", "trace_id")
        metadata = {**metadata, "langfuse_trace_id": trace_id, "langfuse_name": obj.get("name")}
        data = {
            "id": obj.get("id"),
            "timestamp": start,
            "model_version": model,
            "messages": messages,
            "output": output,
            "metadata": metadata,
            "latency_ms": (end - start).total_seconds() * 1000 if start and end and end >= start else None,
            "prompt_tokens": tokens["prompt_tokens"][1],
            "completion_tokens": tokens["completion_tokens"][1],
        }
        try:
            return TraceIn.model_validate(data)
        except ValidationError as e:
            fld, problem = explain(e)
            head, _, rest = fld.partition(".")
            source = {
                "messages": in_field,
                "model_version": model_key,
                "prompt_tokens": tokens["prompt_tokens"][0],
                "completion_tokens": tokens["completion_tokens"][0],
            }.get(head, head)
            raise FieldError(f"{source}.{rest}" if rest else source, problem) from None


IMPORTER = Langfuse()
