"""OpenAI chat-completion logs: the request and the response of ``chat.completions.create``.

Many applications already log exactly this pair (the call's keyword arguments and the returned
``ChatCompletion`` serialised with ``model_dump()``), so accepting it as-is saves everyone a
conversion script. One object per line::

    {"request": {"model": "gpt-4o-mini", "messages": [...], "temperature": 0},
     "response": {"id": "chatcmpl-…", "created": 1741569952, "model": "gpt-4o-mini-2024-07-18",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "balance"},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 19, "completion_tokens": 1, "total_tokens": 20}},
     "feedback": {"verdict": "pass"}, "task": "intents", "latency_ms": 412}

Mapping and the choices behind it:

* ``messages`` come from ``request.messages``; list-of-parts content is flattened to text, a
  ``null`` content (an assistant turn that only called tools) becomes ``""``, and keys other than
  ``role``/``content`` (``name``, ``tool_calls``, ``tool_call_id``) are dropped because
  ``Message`` has no place for them.
* ``output`` is ``response.choices[0].message.content``; a missing or null content (a refusal or
  a pure tool call) is an error, since there is no text to learn from.
* ``timestamp`` is ``response.created`` (unix seconds, UTC) unless the line has ``timestamp``.
* ``model_version`` is ``request.model`` unless the line has ``model_version``.
* ``id`` is *not* the response id: the same request retried gets a new response id, and kaizen's
  content hash (content + timestamp) is the stable key. The response id is kept as
  ``metadata.openai_response_id`` so a trace can still be found from the OpenAI side.

Errors name the field in the logged record (``response.choices.0.message.content``,
``request.messages.1.role``), not in kaizen's internal model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kaizen.tools.logs.base import FieldError, explain, flatten_content
from kaizen.tools.schema import TraceIn

_TOP_LEVEL = frozenset(
    {"request", "response", "feedback", "metadata", "task", "latency_ms", "model_version", "id", "timestamp"}
)
_CONTENT = "response.choices.0.message.content"


def _dict(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = obj.get(key)
    if v is None:
        raise FieldError(f"{where}{key}", "Field required")
    if not isinstance(v, dict):
        raise FieldError(f"{where}{key}", "Input should be a valid dictionary")
    return v


class OpenAIChat:
    """Importer for OpenAI chat-completion request/response logs."""

    name = "openai-chat"

    def sniff(self, obj: dict[str, Any]) -> bool:
        """An OpenAI chat log has ``request`` and ``response`` at the top level."""
        return "request" in obj and "response" in obj

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """Map one request/response pair onto ``TraceIn``.

        Args:
            obj: One decoded JSONL line.

        Returns:
            The validated trace.

        Raises:
            FieldError: The record does not fit; ``field`` is the dotted path in ``obj``.
        """
        for key in obj:
            if key not in _TOP_LEVEL:
                raise FieldError(key, "Extra inputs are not permitted")
        request = _dict(obj, "request", "")
        response = _dict(obj, "response", "")

        raw_messages = request.get("messages")
        if not isinstance(raw_messages, list):
            problem = "Field required" if raw_messages is None else "Input should be a valid list"
            raise FieldError("request.messages", problem)
        messages: list[Any] = []
        for i, m in enumerate(raw_messages):
            if not isinstance(m, dict):
                messages.append(m)  # let validation name it
                continue
            content = m.get("content")
            content = "" if content is None else flatten_content(content, f"request.messages.{i}.content")
            messages.append({"role": m.get("role"), "content": content})

        choices = response.get("choices")
        if not isinstance(choices, list) or not choices:
            raise FieldError("response.choices", "missing or empty: the response has no choices")
        first = choices[0]
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise FieldError("response.choices.0.message", "missing: the first choice has no message")
        output = flatten_content(message.get("content"), _CONTENT)
        if output is None:
            raise FieldError(_CONTENT, "missing or null: the response has no text (refusal or tool call?)")

        metadata = obj.get("metadata", {})
        if not isinstance(metadata, dict):
            raise FieldError("metadata", "Input should be a valid dictionary")
        metadata = dict(metadata)
        if response.get("id") is not None:
            metadata["openai_response_id"] = response["id"]

        usage = response.get("usage") or {}
        if not isinstance(usage, dict):
            raise FieldError("response.usage", "Input should be a valid dictionary")

        timestamp = obj.get("timestamp")
        if timestamp is None and response.get("created") is not None:
            created = response["created"]
            if isinstance(created, bool) or not isinstance(created, (int, float)):
                raise FieldError("response.created", "Input should be unix seconds (a number)")
            try:
                timestamp = datetime.fromtimestamp(created, tz=UTC)
            except (OverflowError, OSError, ValueError) as e:
                raise FieldError("response.created", f"not a valid unix time: {e}") from None

        data = {
            "id": obj.get("id"),
            "timestamp": timestamp,
            "task": obj.get("task"),
            "model_version": obj.get("model_version", request.get("model")),
            "messages": messages,
            "output": output,
            "feedback": obj.get("feedback"),
            "metadata": metadata,
            "latency_ms": obj.get("latency_ms"),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }
        try:
            return TraceIn.model_validate(data)
        except ValidationError as e:
            fld, problem = explain(e)
            raise FieldError(self._source_field(fld, obj), problem) from None

    @staticmethod
    def _source_field(fld: str, obj: dict[str, Any]) -> str:
        """Translate a ``TraceIn`` field path back to where the value came from in the log line."""
        head, _, rest = fld.partition(".")
        source = {
            "messages": "request.messages",
            "output": _CONTENT,
            "timestamp": "timestamp" if "timestamp" in obj else "response.created",
            "model_version": "model_version" if "model_version" in obj else "request.model",
            "prompt_tokens": "response.usage.prompt_tokens",
            "completion_tokens": "response.usage.completion_tokens",
        }.get(head, head)
        return f"{source}.{rest}" if rest else source


IMPORTER = OpenAIChat()
