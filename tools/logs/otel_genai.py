"""OpenTelemetry GenAI spans exported as JSON: one model call per span.

Why: OTel is how many applications already trace their LLM calls (OpenLLMetry, OpenLIT,
pydantic-ai/logfire, the ``opentelemetry-instrumentation-openai-v2`` package …), so a span export
is often the log that exists. Accepted line shapes:

* one span per line, OTLP/JSON style: ``{"traceId", "spanId", "name", "startTimeUnixNano",
  "endTimeUnixNano", "attributes": [{"key": …, "value": {"stringValue" | "intValue" | …}}]}``;
* one span per line as the Python SDK's ``ConsoleSpanExporter``/``span.to_json()`` writes it:
  ``{"name", "context": {"trace_id": "0x…", "span_id": "0x…"}, "start_time": ISO, "end_time": ISO,
  "attributes": {"gen_ai.request.model": …}}``;
* an OTLP export line ``{"resourceSpans": [{"resource", "scopeSpans": [{"spans": [...]}]}]}``
  (a collector file exporter), which yields one record per span (``parse_many``). A bad span
  rejects its whole line: the line stays the unit of an atomic import.

Attributes (semantic conventions for GenAI, checked against opentelemetry.io/docs/specs/semconv/gen-ai):

* messages: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` — a list of
  ``{"role", "parts": [{"type": "text", "content": …}, …]}``, structured or as a JSON string; only
  text parts are kept (tool calls, reasoning, blobs are dropped); the output is the first output
  message (one per choice). ``gen_ai.system_instructions`` (parts, or plain text) becomes a leading
  system message. The legacy flat attributes ``gen_ai.prompt.N.role/content`` and
  ``gen_ai.completion.N.role/content`` (semconv ≤ 1.27, OpenLLMetry) are read when the new ones
  are absent. Messages logged as span *events* (``gen_ai.user.message`` …) are not read.
* ``model_version``: ``gen_ai.request.model``, else ``gen_ai.response.model``.
* tokens: ``gen_ai.usage.input_tokens`` / ``output_tokens`` (legacy ``prompt_tokens`` /
  ``completion_tokens``).
* ``timestamp`` is the span start, ``latency_ms`` its duration.
* ``id`` is ``"<traceId>-<spanId>"`` in lower-case hex (``0x`` dropped): a span's identity in OTel
  and stable across exports, so re-importing creates nothing new.
* ``metadata``: span name and ids, ``service.name``, and the other ``gen_ai.*`` attributes.

Spans that are not model calls are *skipped* with a reason (HTTP and database spans in the same
export; ``gen_ai.operation.name`` such as ``embeddings``, ``execute_tool``, ``invoke_agent``).
A chat span without message attributes is an *error*: content capture is off by default in most
instrumentations, and the message says how to turn it on.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kaizen.tools.logs.base import FieldError, SkipRecord, explain, flatten_content
from kaizen.tools.schema import TraceIn

_INFERENCE_OPS = frozenset({"chat", "text_completion", "generate_content"})
_LEGACY = re.compile(r"gen_ai\.(prompt|completion)\.(\d+)\.(role|content)")
_CONTENT = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
_CAPTURE_HINT = (
    "no gen_ai.input.messages/gen_ai.output.messages (or legacy gen_ai.prompt.N.*) attributes: turn on "
    "content capture, e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true"
)


def _value(v: Any) -> Any:
    """An OTLP ``AnyValue`` (``{"stringValue": …}``, ``{"arrayValue": {"values": […]}}`` …) as plain JSON."""
    if not isinstance(v, dict):
        return v
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in v:
            return v[key]
    if "intValue" in v:  # int64 is a JSON string in OTLP/JSON
        return int(v["intValue"])
    if "arrayValue" in v:
        return [_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return {kv.get("key"): _value(kv.get("value")) for kv in (v["kvlistValue"] or {}).get("values", [])}
    return None


def _attributes(raw: Any, field: str) -> dict[str, Any]:
    """Attributes as a dict, from a dict or an OTLP list of ``{"key", "value"}``."""
    if raw is None or isinstance(raw, dict):
        return raw or {}
    if not isinstance(raw, list):
        raise FieldError(field, "expected an object or a list of {key, value} pairs")
    out: dict[str, Any] = {}
    for i, kv in enumerate(raw):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise FieldError(f"{field}.{i}", 'expected {"key": "...", "value": {"stringValue": "..."}}')
        try:
            out[kv["key"]] = _value(kv.get("value"))
        except (AttributeError, TypeError, ValueError):
            raise FieldError(f"{field}.{kv['key']}", "not a valid OTLP value") from None
    return out


def _json(v: Any, field: str) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError as e:
        raise FieldError(field, f"not valid JSON: {e}") from None


def _text(parts: Any, field: str) -> str | None:
    """The text parts of a message joined with newlines; ``None`` when it has none."""
    if not isinstance(parts, list):
        raise FieldError(field, 'expected a list of parts like {"type": "text", "content": "..."}')
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise FieldError(f"{field}.{j}", 'expected a part object like {"type": "text", "content": "..."}')
        if part.get("type") == "text":
            if not isinstance(part.get("content"), str):
                raise FieldError(f"{field}.{j}.content", "a text part needs a string 'content'")
            texts.append(part["content"])
    return "\n".join(texts) if texts else None


def _messages(v: Any, field: str) -> list[tuple[str, dict[str, Any]]]:
    """``(source field, {role, content})`` per message of ``gen_ai.input/output.messages``."""
    v = _json(v, field)
    if not isinstance(v, list):
        raise FieldError(field, "expected a list of messages like {role, parts: [...]}")
    out = []
    for i, m in enumerate(v):
        if not isinstance(m, dict):
            raise FieldError(f"{field}.{i}", "expected a message object like {role, parts: [...]}")
        if "parts" in m:
            content = _text(m["parts"], f"{field}.{i}.parts")
        else:  # pre-"parts" shape: {role, content}
            content = flatten_content(m.get("content"), f"{field}.{i}.content")
        out.append((f"{field}.{i}", {"role": m.get("role"), "content": content}))
    return out


def _legacy(attrs: dict[str, Any], kind: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    found: dict[int, dict[str, Any]] = {}
    for key, v in attrs.items():
        m = _LEGACY.fullmatch(key)
        if m and m[1] == kind:
            found.setdefault(int(m[2]), {})[m[3]] = v
    return [
        (f"{where}gen_ai.{kind}.{n}", {"role": d.get("role"), "content": d.get("content")})
        for n, d in sorted(found.items())
    ]


def _nanos(v: Any, field: str) -> int | None:
    """Unix nanoseconds from ``startTimeUnixNano`` (number or digit string) or an ISO time."""
    if v is None:
        return None
    if (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.isdigit()):
        return int(v)
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            pass
        else:
            t = t if t.tzinfo else t.replace(tzinfo=UTC)
            return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
    raise FieldError(field, "expected unix nanoseconds or an ISO 8601 time")


def _first(attrs: dict[str, Any], *keys: str) -> tuple[str, Any]:
    for key in keys:
        if attrs.get(key) is not None:
            return key, attrs[key]
    return keys[0], None


class OtelGenAI:
    """Importer for OpenTelemetry GenAI spans (JSON; one span or one OTLP export per line)."""

    name = "otel-genai"

    def sniff(self, obj: dict[str, Any]) -> bool:
        """An OTLP export line, or a span with ``traceId``+``spanId`` or ``context.span_id``."""
        ctx = obj.get("context")
        return (
            "resourceSpans" in obj
            or ("traceId" in obj and "spanId" in obj)
            or (isinstance(ctx, dict) and "span_id" in ctx)
        )

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """The one trace of a single-span line (raises ``SkipRecord`` for a span that is not one)."""
        results = self.parse_many(obj)
        if len(results) != 1:
            raise FieldError("resourceSpans", f"holds {len(results)} spans: use parse_many")
        if isinstance(results[0], SkipRecord):
            raise results[0]
        return results[0]

    def parse_many(self, obj: dict[str, Any]) -> list[TraceIn | SkipRecord]:
        """Every span of the line, each a trace or a ``SkipRecord``; a bad span raises ``FieldError``."""
        if "resourceSpans" not in obj:
            return [self._span(obj, "", {})]
        out: list[TraceIn | SkipRecord] = []
        for i, rs in enumerate(_list(obj, "resourceSpans", "")):
            resource = _resource(rs, f"resourceSpans.{i}.")
            for j, ss in enumerate(_list(rs, "scopeSpans", f"resourceSpans.{i}.")):
                for k, span in enumerate(_list(ss, "spans", f"resourceSpans.{i}.scopeSpans.{j}.")):
                    out.append(self._span(span, f"resourceSpans.{i}.scopeSpans.{j}.spans.{k}.", resource))
        return out or [SkipRecord("an OTLP export line with no spans")]

    def _span(self, span: dict[str, Any], where: str, resource: dict[str, Any]) -> TraceIn | SkipRecord:
        name, a = span.get("name"), f"{where}attributes."
        attrs = _attributes(span.get("attributes"), f"{where}attributes")
        if not any(k.startswith("gen_ai.") for k in attrs):
            return SkipRecord(f"span {name!r} is not a GenAI span (no gen_ai.* attributes)")
        op = attrs.get("gen_ai.operation.name")
        if op is not None and op not in _INFERENCE_OPS:
            return SkipRecord(f"span {name!r} is a {op!r} operation, not a model call")
        conversation = _conversation(attrs, a)
        if conversation is None:
            if op is None:
                return SkipRecord(f"span {name!r} has no gen_ai.operation.name and no messages")
            raise FieldError(f"{where}attributes", _CAPTURE_HINT)
        inputs, output, out_field = conversation

        raw_ctx = span.get("context")
        ctx: dict[str, Any] = raw_ctx if isinstance(raw_ctx, dict) else {}
        trace_id, span_id = span.get("traceId", ctx.get("trace_id")), span.get("spanId", ctx.get("span_id"))
        start_key = "startTimeUnixNano" if "startTimeUnixNano" in span else "start_time"
        end_key = "endTimeUnixNano" if "endTimeUnixNano" in span else "end_time"
        start = _nanos(span.get(start_key), where + start_key)
        end = _nanos(span.get(end_key), where + end_key)
        model_key, model = _first(attrs, "gen_ai.request.model", "gen_ai.response.model")
        in_key, in_tokens = _first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
        out_key, out_tokens = _first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
        resource = resource or _resource(span, where)
        metadata = {"otel_span_name": name, "otel_trace_id": _hex(trace_id), "otel_span_id": _hex(span_id)}
        if resource.get("service.name") is not None:
            metadata["service.name"] = resource["service.name"]
        metadata |= {k: v for k, v in attrs.items() if k.startswith("gen_ai.") and not _is_content(k)}
        data = {
            "id": f"{_hex(trace_id)}-{_hex(span_id)}" if trace_id and span_id else None,
            "timestamp": None if start is None else _datetime(start),
            "model_version": model,
            "messages": [m for _, m in inputs],
            "output": output,
            "metadata": metadata,
            "latency_ms": None if start is None or end is None or end < start else (end - start) / 1e6,
            "prompt_tokens": in_tokens,
            "completion_tokens": out_tokens,
        }
        try:
            return TraceIn.model_validate(data)
        except ValidationError as e:
            fld, problem = explain(e)
            head, _, rest = fld.partition(".")
            i, _, tail = rest.partition(".")
            if head == "messages" and i.isdigit() and int(i) < len(inputs):
                raise FieldError(".".join(x for x in (inputs[int(i)][0], tail) if x), problem) from None
            source = {
                "messages": f"{a}gen_ai.input.messages",
                "output": out_field,
                "model_version": a + model_key,
                "prompt_tokens": a + in_key,
                "completion_tokens": a + out_key,
            }.get(head, where + fld)
            raise FieldError(source, problem) from None


def _conversation(attrs: dict[str, Any], a: str) -> tuple[list[tuple[str, dict[str, Any]]], str, str] | None:
    """``(input messages with their source fields, output text, output field)``; ``None`` without content."""
    if attrs.get("gen_ai.input.messages") is not None or attrs.get("gen_ai.output.messages") is not None:
        inputs = _messages(attrs.get("gen_ai.input.messages", []), f"{a}gen_ai.input.messages")
        outputs = _messages(attrs.get("gen_ai.output.messages", []), f"{a}gen_ai.output.messages")
        out_field = f"{a}gen_ai.output.messages"
    else:
        inputs, outputs = _legacy(attrs, "prompt", a), _legacy(attrs, "completion", a)
        out_field = f"{a}gen_ai.completion"
        if not inputs and not outputs:
            return None
    if not outputs or outputs[0][1]["content"] is None:
        raise FieldError(out_field, "missing, or the first output has no text (a tool call?)")
    system, sys_field = attrs.get("gen_ai.system_instructions"), f"{a}gen_ai.system_instructions"
    if isinstance(system, str) and system.lstrip().startswith("["):
        system = _json(system, sys_field)  # a JSON list of parts; any other string is the text itself
    if isinstance(system, list):
        system = _text(system, sys_field)
    if system is not None and not isinstance(system, str):
        raise FieldError(sys_field, "expected a list of parts or a string")
    if system:
        inputs.insert(0, (sys_field, {"role": "system", "content": system}))
    for _, m in inputs:
        m["content"] = "" if m["content"] is None else m["content"]
    return inputs, outputs[0][1]["content"], out_field


def _resource(holder: dict[str, Any], where: str) -> dict[str, Any]:
    res = holder.get("resource")
    return _attributes(
        res.get("attributes") if isinstance(res, dict) else None, f"{where}resource.attributes"
    )


def _is_content(key: str) -> bool:
    return key in _CONTENT or _LEGACY.fullmatch(key) is not None


def _list(obj: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    v = obj.get(key)
    if not isinstance(v, list):
        raise FieldError(f"{where}{key}", "missing or not a list")
    for i, x in enumerate(v):
        if not isinstance(x, dict):
            raise FieldError(f"{where}{key}.{i}", "expected an object")
    return v


def _hex(v: Any) -> str | None:
    return None if v is None else str(v).lower().removeprefix("0x")


def _datetime(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos // 1_000_000_000, tz=UTC) + timedelta(
        microseconds=nanos % 1_000_000_000 // 1000
    )


IMPORTER = OtelGenAI()
