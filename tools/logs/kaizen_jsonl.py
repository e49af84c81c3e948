"""kaizen's own JSONL trace format: one ``TraceIn`` per line, almost verbatim.

This is the format to convert anything else into when no importer exists yet, so it is kept
close to ``TraceIn`` (and as strict: unknown fields are errors, not silently dropped). The one
convenience is that message content may be a list of content parts as chat APIs log it; those
are flattened to text so logs can be dumped as-is.

Example line::

    {"task": "intents", "messages": [{"role": "user", "content": "What's my balance?"}],
     "output": "balance", "feedback": {"verdict": "pass"}}
"""

from __future__ import annotations

from typing import Any

from kaizen.tools.logs.base import flatten_content
from kaizen.tools.schema import TraceIn


class KaizenJsonl:
    """Importer for kaizen JSONL (``messages`` + ``output`` per line)."""

    name = "kaizen"

    def sniff(self, obj: dict[str, Any]) -> bool:
        """A kaizen record has ``messages`` and ``output`` at the top level."""
        return "messages" in obj and "output" in obj

    def parse(self, obj: dict[str, Any]) -> TraceIn:
        """Validate one record as ``TraceIn``, flattening list-of-parts message content.

        Args:
            obj: One decoded JSONL line.

        Returns:
            The validated trace.

        Raises:
            FieldError: A content part is malformed.
            pydantic.ValidationError: The record does not fit ``TraceIn`` (locations match the
                record's own field paths, e.g. ``messages.0.role``).
        """
        messages = obj.get("messages")
        if isinstance(messages, list):
            flat = []
            for i, m in enumerate(messages):
                if isinstance(m, dict) and isinstance(m.get("content"), list):
                    m = {**m, "content": flatten_content(m["content"], f"messages.{i}.content")}
                flat.append(m)
            obj = {**obj, "messages": flat}
        return TraceIn.model_validate(obj)


IMPORTER = KaizenJsonl()
