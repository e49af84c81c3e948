"""The OTel GenAI importer: span lines (OTLP/JSON and Python-SDK JSON) and OTLP export lines.

Fixtures: ``otel_genai_spans.jsonl`` — (1) an OTLP span with the current semconv as JSON strings,
(2) a ``ConsoleSpanExporter`` span with the legacy ``gen_ai.prompt.N.*`` attributes, (3) a
``resourceSpans`` export with an HTTP span, a chat span (structured ``kvlistValue`` messages) and
an ``execute_tool`` span. ``otel_genai_bad.jsonl`` — broken JSON in ``gen_ai.input.messages``, a
chat span without content, a bad role, an export line whose second span has only a tool call.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kaizen.tools.errors import LogFormatError
from kaizen.tools.logs import SkipRecord, detect_format, parse_traces
from kaizen.tools.logs.otel_genai import IMPORTER

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
SPANS = FIX / "otel_genai_spans.jsonl"
BAD = FIX / "otel_genai_bad.jsonl"


def first_line() -> dict:
    return json.loads(SPANS.read_text().splitlines()[0])


def test_parses_every_shape() -> None:
    res = parse_traces(SPANS)
    assert res.format == "otel-genai"
    assert res.invalid == []
    assert [n for n, _ in res.traces] == [1, 2, 3]
    (_, t1), (_, t2), (_, t3) = res.traces

    assert t1.id == "5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13"
    assert [m.role for m in t1.messages] == ["system", "user"]  # gen_ai.system_instructions first
    assert t1.messages[0].content.startswith("Classify the customer message")
    assert (t1.messages[1].content, t1.output) == ("Why was my card declined?", "card_declined")
    assert t1.model_version == "intents-v1"  # request model, not response model
    assert (t1.prompt_tokens, t1.completion_tokens) == (38, 3)  # OTLP intValue strings
    assert t1.timestamp == datetime.fromtimestamp(1741569952, tz=UTC)
    assert t1.latency_ms == pytest.approx(412.0)
    assert t1.metadata["gen_ai.response.model"] == "intents-v1-2025-03"
    assert t1.metadata["gen_ai.response.finish_reasons"] == ["stop"]
    assert "gen_ai.input.messages" not in t1.metadata and "server.address" not in t1.metadata

    assert t2.id == "aaaaaaaaaaaaaaaaaaaaaaaa0c1d2e3f-00f067aa0ba902b7"  # "0x" dropped
    assert [(m.role, m.content) for m in t2.messages][1] == ("user", "transfer 50 to Anna")
    assert (t2.output, t2.prompt_tokens, t2.completion_tokens) == ("transfer", 35, 1)  # legacy attributes
    assert t2.timestamp == datetime(2025, 3, 1, 9, 16, tzinfo=UTC)
    assert t2.latency_ms == pytest.approx(250.0)
    assert t2.metadata["service.name"] == "support-bot"
    assert not any(k.startswith("gen_ai.prompt.") for k in t2.metadata)

    assert [(m.role, m.content) for m in t3.messages] == [("user", "how much do I have")]
    assert (t3.output, t3.metadata["service.name"]) == ("transfer", "support-bot")


def test_non_model_spans_are_skipped_with_a_reason() -> None:
    res = parse_traces(SPANS)
    assert [n for n, _ in res.skipped] == [3, 3]
    assert "'POST /classify' is not a GenAI span" in res.skipped[0][1]
    assert "'execute_tool' operation, not a model call" in res.skipped[1][1]
    http = json.loads(SPANS.read_text().splitlines()[2])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    with pytest.raises(SkipRecord):
        IMPORTER.parse(http)


def test_ids_are_stable_and_shape_independent() -> None:
    assert [t.id for _, t in parse_traces(SPANS).traces] == [t.id for _, t in parse_traces(SPANS).traces]
    span = first_line()
    console = {  # the same span as the Python SDK prints it
        "name": span["name"],
        "context": {"trace_id": "0x" + span["traceId"], "span_id": "0x" + span["spanId"]},
        "start_time": "2025-03-10T01:25:52Z",
        "attributes": {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]},
    }
    assert IMPORTER.parse(console).id == IMPORTER.parse(span).id


def test_auto_detection() -> None:
    assert detect_format(first_line()) == "otel-genai"
    assert detect_format({"resourceSpans": []}) == "otel-genai"
    assert detect_format({"name": "x", "context": {"trace_id": "0x1", "span_id": "0x2"}}) == "otel-genai"


def test_first_bad_line_raises_path_line_field_problem() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(BAD)
    err = ei.value
    assert (err.line, err.field) == (2, "attributes.gen_ai.input.messages")
    assert str(err).startswith(f"{BAD}:2: attributes.gen_ai.input.messages: not valid JSON: ")


def test_skip_invalid_collects_every_bad_line() -> None:
    res = parse_traces(BAD, skip_invalid=True)
    assert [n for n, _ in res.traces] == [1, 6]  # line 5's good span goes with its line
    assert [(e.line, e.field) for e in res.invalid] == [
        (2, "attributes.gen_ai.input.messages"),
        (3, "attributes"),
        (4, "attributes.gen_ai.input.messages.0.role"),
        (5, "resourceSpans.0.scopeSpans.0.spans.1.attributes.gen_ai.output.messages"),
    ]
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true" in res.invalid[1].problem
    assert "tool call" in res.invalid[3].problem


def test_dict_attributes_with_structured_values_and_response_model_fallback() -> None:
    span = {
        "traceId": "01",
        "spanId": "02",
        "startTimeUnixNano": 1_000_000_000,
        "endTimeUnixNano": 1_500_000_000,
        "attributes": {
            "gen_ai.response.model": "m-2025",
            "gen_ai.system_instructions": "Be brief.",  # plain text, not parts
            "gen_ai.input.messages": [
                {"role": "user", "parts": [{"type": "text", "content": "hi"}, {"type": "image", "uri": "x"}]}
            ],
            "gen_ai.output.messages": [
                {
                    "role": "assistant",
                    "parts": [{"type": "reasoning", "content": "…"}, {"type": "text", "content": "hello"}],
                }
            ],
        },
    }
    t = IMPORTER.parse(span)
    assert [(m.role, m.content) for m in t.messages] == [("system", "Be brief."), ("user", "hi")]
    assert (t.output, t.model_version, t.latency_ms, t.id) == ("hello", "m-2025", 500.0, "01-02")


def test_bad_token_count_names_the_attribute(tmp_path: Path) -> None:
    span = first_line()
    for a in span["attributes"]:
        if a["key"] == "gen_ai.usage.output_tokens":
            a["value"] = {"stringValue": "three"}
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps(span) + "\n")
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p)
    assert ei.value.field == "attributes.gen_ai.usage.output_tokens"
