"""The Langfuse importer: GENERATION observations become traces; SPAN/EVENT rows are skipped.

Fixtures: ``langfuse_observations.jsonl`` — a SPAN (first, so detection must not depend on the
type), a GENERATION from the public API, an EVENT, a GENERATION with JSON-string input/output
(``{messages}`` and a chat completion), a blob-storage-export row (snake_case), and an old-style
row with top-level ``promptTokens``. ``langfuse_bad.jsonl`` — null output, a bad role, a numeric
input, a SPAN, an unreadable ``startTime``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kaizen.tools.errors import LogFormatError
from kaizen.tools.logs import SkipRecord, detect_format, parse_traces
from kaizen.tools.logs.langfuse import IMPORTER

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
OBS = FIX / "langfuse_observations.jsonl"
BAD = FIX / "langfuse_bad.jsonl"


def rows(path: Path = OBS) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_parses_generations_and_skips_the_rest() -> None:
    res = parse_traces(OBS)
    assert res.format == "langfuse"
    assert res.invalid == []
    assert [n for n, _ in res.traces] == [2, 4, 5, 6]
    assert res.skipped == [
        (1, "observation type 'SPAN' is not a GENERATION"),
        (3, "observation type 'EVENT' is not a GENERATION"),
    ]
    t1, t2, t3, t4 = (t for _, t in res.traces)

    assert t1.id == "obs-gen-1"
    assert [m.role for m in t1.messages] == ["system", "user"]
    assert t1.output == "card_declined"  # {role, content} output
    assert t1.model_version == "intents-v1"
    assert t1.timestamp == datetime(2025, 3, 1, 9, 15, 0, 100000, tzinfo=UTC)
    assert t1.latency_ms == pytest.approx(412.0)
    assert (t1.prompt_tokens, t1.completion_tokens) == (38, 3)
    assert t1.metadata == {
        "channel": "app",
        "langfuse_trace_id": "b8c0e4f1-2d3a-4b5c-9d8e-7f6a5b4c3d2e",
        "langfuse_name": "classify",
    }

    assert t2.messages[1].content == "transfer 50 to Anna"  # JSON-string {messages}, parts flattened
    assert t2.output == "transfer"  # JSON-string chat completion

    assert (t3.id, t3.model_version, t3.output) == ("obs-gen-3", "intents-v1", "transfer")  # blob export
    assert t3.timestamp == datetime(2025, 3, 1, 9, 17, tzinfo=UTC)  # naive export time taken as UTC
    assert (t3.latency_ms, t3.prompt_tokens, t3.completion_tokens) == (pytest.approx(300.0), 34, 1)
    assert t3.metadata["user_tier"] == "free"  # JSON-string metadata

    assert [(m.role, m.content) for m in t4.messages] == [
        ("user", "Intent of: my card got declined\nIntent:")
    ]
    assert (t4.prompt_tokens, t4.completion_tokens, t4.latency_ms) == (12, 3, None)


def test_ids_are_stable() -> None:
    ids = [t.id for _, t in parse_traces(OBS).traces]
    assert (
        ids
        == [t.id for _, t in parse_traces(OBS).traces]
        == ["obs-gen-1", "obs-gen-2", "obs-gen-3", "obs-gen-4"]
    )


def test_auto_detection() -> None:
    first = rows()[0]
    assert first["type"] == "SPAN"
    assert detect_format(first) == "langfuse"
    assert detect_format(rows()[4]) == "langfuse"  # snake_case blob export
    with pytest.raises(SkipRecord):
        IMPORTER.parse(first)


def test_first_bad_line_raises_path_line_field_problem() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(BAD)
    err = ei.value
    assert (err.line, err.field) == (2, "output")
    assert str(err) == f"{BAD}:2: output: {err.problem}" and err.problem.startswith("missing or not text")


def test_skip_invalid_collects_every_bad_line() -> None:
    res = parse_traces(BAD, skip_invalid=True)
    assert [n for n, _ in res.traces] == [1, 7]
    assert [(e.line, e.field) for e in res.invalid] == [
        (2, "output"),
        (3, "input.0.role"),
        (4, "input"),
        (6, "startTime"),
    ]
    assert [n for n, _ in res.skipped] == [5]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"usageDetails": {"input": "lots"}}, "usageDetails.input"),
        ({"input": {"messages": [{"role": "bot", "content": "x"}]}}, "input.messages.0.role"),
        ({"model": 7}, "model"),
        ({"output": {"choices": [{"message": {"content": None}}]}}, "output.choices.0.message.content"),
    ],
)
def test_errors_name_the_source_field(change: dict, field: str) -> None:
    row = {**rows()[1], **change}
    with pytest.raises(ValueError) as ei:
        IMPORTER.parse(row)
    assert ei.value.field == field  # type: ignore[attr-defined]


def test_output_and_input_variants() -> None:
    row = {
        **rows()[1],
        "input": {"role": "user", "content": "hi"},
        "output": [{"role": "assistant", "content": "yo"}],
    }
    t = IMPORTER.parse(row)
    assert ([(m.role, m.content) for m in t.messages], t.output) == ([("user", "hi")], "yo")
    assert (
        IMPORTER.parse({**row, "output": '"quoted"'}).output == '"quoted"'
    )  # text that merely looks like JSON
