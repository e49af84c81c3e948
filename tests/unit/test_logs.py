"""Tests of the log importers (tools.logs): formats, error messages, skip_invalid, size limits.

The importers are the first thing a new user runs against their own data, so the error messages
(``path:line: field: problem``) are asserted as carefully as the happy paths.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs import FORMATS, detect_format, parse_feedback, parse_traces, read_jsonl
from kaizen.tools.logs.base import ParseResult
from kaizen.tools.schema import FeedbackIn, TraceIn

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def write_lines(path: Path, *lines: str | dict) -> Path:
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def kaizen_line(text: str = "hi", output: str = "balance", **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": text}], "output": output, **extra}


# --- kaizen JSONL -----------------------------------------------------------------------------


def test_kaizen_small_parses_all_fields() -> None:
    res = parse_traces(FIX / "kaizen_small.jsonl")
    assert isinstance(res, ParseResult)
    assert res.format == "kaizen"
    assert res.invalid == []
    assert [n for n, _ in res.traces] == [1, 2, 3, 4, 5, 6]
    traces = {t.id: t for _, t in res.traces}
    assert all(t.task == "intents" for t in traces.values())

    t1 = traces["t-001"]
    assert t1.timestamp == datetime(2025, 3, 1, 9, 15, tzinfo=UTC)
    assert t1.model_version == "intents-v1"
    assert [m.role for m in t1.messages] == ["system", "user"]
    assert t1.output == "balance"
    assert t1.feedback is not None and t1.feedback.verdict == "pass" and t1.feedback.source == "human"
    assert t1.metadata == {"channel": "app"}
    assert (t1.latency_ms, t1.prompt_tokens, t1.completion_tokens) == (182.5, 41, 1)

    t3 = traces["t-003"]
    assert t3.feedback is not None
    assert (t3.feedback.verdict, t3.feedback.correction) == ("fail", "card_declined")

    assert traces["t-004"].feedback is None  # unlabeled

    t6 = traces["t-006"]
    assert t6.feedback is not None
    assert (t6.feedback.source, t6.feedback.confidence, t6.feedback.correction) == ("judge", 0.85, "balance")


def test_content_parts_are_flattened_to_text() -> None:
    res = parse_traces(FIX / "kaizen_small.jsonl")
    t5 = next(t for _, t in res.traces if t.id == "t-005")
    # two text parts joined with a newline; the image part is dropped
    assert t5.messages[1].content == "Payment declined again.\nSee the receipt."


def test_malformed_content_part_names_the_part(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "user", "content": ["oops"]}], "output": "x"}
    p = write_lines(tmp_path / "t.jsonl", bad)
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p)
    assert (ei.value.line, ei.value.field) == (1, "messages.0.content.0")


def test_bad_role_names_the_field(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "bot", "content": "x"}], "output": "y"}
    p = write_lines(tmp_path / "t.jsonl", kaizen_line(), bad)
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p)
    assert (ei.value.line, ei.value.field) == (2, "messages.0.role")
    assert "Input should be 'system', 'user'" in ei.value.problem


def test_unknown_field_is_an_error_not_dropped(tmp_path: Path) -> None:
    p = write_lines(tmp_path / "t.jsonl", kaizen_line(outptu="typo"))
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p)
    assert ei.value.field == "outptu"


# --- OpenAI chat logs -------------------------------------------------------------------------


def test_openai_chat_small_parses() -> None:
    res = parse_traces(FIX / "openai_chat_small.jsonl")
    assert res.format == "openai-chat"
    assert res.invalid == []
    assert len(res.traces) == 4
    (n1, t1), (_, t2), (_, t3), (_, t4) = res.traces

    assert n1 == 1
    assert t1.id is None  # content hash, not the response id
    assert t1.metadata == {"openai_response_id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"}
    assert t1.timestamp == datetime.fromtimestamp(1741569952, tz=UTC)
    assert t1.timestamp.tzinfo is not None
    assert t1.model_version == "gpt-4o-mini"  # request.model
    assert [m.role for m in t1.messages] == ["developer", "user"]
    assert t1.output == "card_declined"
    assert (t1.prompt_tokens, t1.completion_tokens) == (38, 3)
    assert t1.task == "intents" and t1.latency_ms == 412
    assert t1.feedback is None

    assert t2.messages[1].content == "transfer 50 to Anna"  # content parts flattened
    assert t2.feedback is not None and t2.feedback.verdict == "pass"

    assert t3.feedback is not None and t3.feedback.correction == "balance"
    assert t3.metadata == {
        "user_tier": "free",
        "openai_response_id": "chatcmpl-B9MC7aT4xkN0Rzq3V1Jm8Zb2c9HgW",
    }

    assert t4.model_version == "intents-prod-2025-03"  # explicit model_version wins


def _openai_line(content: object = "balance", **extra: object) -> dict:
    return {
        "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "response": {
            "id": "r1",
            "created": 1700000000,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        },
        **extra,
    }


def test_openai_null_content_names_response_field(tmp_path: Path) -> None:
    p = write_lines(tmp_path / "o.jsonl", _openai_line(), _openai_line(content=None))
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p)
    assert (ei.value.line, ei.value.field) == (2, "response.choices.0.message.content")
    assert str(ei.value).startswith(f"{p}:2: response.choices.0.message.content: ")


def test_openai_errors_point_into_the_request(tmp_path: Path) -> None:
    bad = _openai_line()
    bad["request"]["messages"] = [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]
    p = write_lines(tmp_path / "o.jsonl", bad, _openai_line(feedback={"verdict": "maybe"}))
    res = parse_traces(p, skip_invalid=True)
    assert [(e.line, e.field) for e in res.invalid] == [
        (1, "request.messages.1.role"),
        (2, "feedback.verdict"),
    ]


def test_openai_tool_call_turn_and_extra_keys(tmp_path: Path) -> None:
    line = _openai_line()
    line["request"]["messages"] = [
        {"role": "user", "content": "hi", "name": "alice"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]
    ((_, t),) = parse_traces(write_lines(tmp_path / "o.jsonl", line)).traces
    assert [(m.role, m.content) for m in t.messages] == [("user", "hi"), ("assistant", ""), ("tool", "42")]


# --- feedback ---------------------------------------------------------------------------------


def test_feedback_small_parses() -> None:
    res = parse_feedback(FIX / "feedback_small.jsonl")
    assert res.invalid == []
    assert [n for n, _ in res.items] == [1, 2, 3]
    assert all(isinstance(f, FeedbackIn) for _, f in res.items)
    (_, a), (_, b), (_, c) = res.items
    assert (a.trace_id, a.verdict, a.source) == ("t-004", "pass", "human")
    assert (b.trace_id, b.verdict, b.correction) == ("t-002", "fail", "balance")
    assert (c.source, c.confidence) == ("judge", 0.6)


def test_feedback_bad_lines(tmp_path: Path) -> None:
    p = write_lines(
        tmp_path / "f.jsonl",
        {"trace_id": "a", "verdict": "pass"},
        {"trace_id": "b", "verdict": "maybe"},
        {"verdict": "fail"},
        "not json",
        {"trace_id": "c", "verdict": "fail", "confidence": 2},
    )
    with pytest.raises(LogFormatError) as ei:
        parse_feedback(p)
    assert (ei.value.line, ei.value.field) == (2, "verdict")
    res = parse_feedback(p, skip_invalid=True)
    assert [n for n, _ in res.items] == [1]
    assert [(e.line, e.field) for e in res.invalid] == [
        (2, "verdict"),
        (3, "trace_id"),
        (4, "<json>"),
        (5, "confidence"),
    ]


def test_feedback_empty_file_raises() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_feedback(FIX / "empty.jsonl", skip_invalid=True)
    assert (ei.value.line, ei.value.field) == (0, "<file>")


# --- malformed fixtures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "field", "problem"),
    [
        ("bad_json.jsonl", 2, "<json>", "invalid JSON: "),
        ("missing_messages.jsonl", 3, "messages", "Field required"),
        ("bad_verdict.jsonl", 3, "feedback.verdict", "Input should be 'pass' or 'fail'"),
        ("empty.jsonl", 0, "<file>", "file is empty: no JSON lines found"),
    ],
)
def test_malformed_fixture_message(name: str, line: int, field: str, problem: str) -> None:
    path = FIX / name
    with pytest.raises(LogFormatError) as ei:
        parse_traces(path)
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert err.problem.startswith(problem)
    assert str(err) == f"{path}:{line}: {field}: {err.problem}"


@pytest.mark.parametrize(
    ("name", "good_lines", "bad_line"),
    [
        ("bad_json.jsonl", [1, 3], 2),
        ("missing_messages.jsonl", [1, 2, 4], 3),
        ("bad_verdict.jsonl", [1, 4], 3),
    ],
)
def test_skip_invalid_keeps_good_lines(name: str, good_lines: list[int], bad_line: int) -> None:
    res = parse_traces(FIX / name, skip_invalid=True)
    assert res.format == "kaizen"
    assert [n for n, _ in res.traces] == good_lines
    assert [e.line for e in res.invalid] == [bad_line]
    assert all(isinstance(t, TraceIn) for _, t in res.traces)


def test_empty_file_raises_even_with_skip_invalid(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="file is empty"):
        parse_traces(FIX / "empty.jsonl", skip_invalid=True)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n\n")
    with pytest.raises(LogFormatError, match="file is empty"):
        parse_traces(blank, skip_invalid=True)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jsonl"
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p, skip_invalid=True)
    assert (ei.value.line, ei.value.field, ei.value.problem) == (0, "<file>", "file not found")


def test_non_object_and_bad_utf8_lines(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_bytes((json.dumps(kaizen_line()) + "\n[1, 2]\n").encode() + b'{"output": "\xff"}\n' + b"NaN\n")
    res = parse_traces(p, skip_invalid=True)
    assert [n for n, _ in res.traces] == [1]
    assert [(e.line, e.field) for e in res.invalid] == [(2, "<json>"), (3, "<encoding>"), (4, "<json>")]
    assert "got an array" in res.invalid[0].problem


def test_bom_and_crlf_and_no_trailing_newline(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    a, b = (json.dumps(kaizen_line(x)).encode() for x in "ab")
    p.write_bytes(b"\xef\xbb\xbf" + a + b"\r\n" + b)  # BOM, CRLF, no final newline
    res = parse_traces(p)
    assert [t.messages[0].content for _, t in res.traces] == ["a", "b"]


def test_read_jsonl_streams_objects(tmp_path: Path) -> None:
    p = write_lines(tmp_path / "t.jsonl", {"a": 1}, "", {"b": 2})
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (3, {"b": 2})]
    with pytest.raises(LogFormatError) as ei:
        list(read_jsonl(write_lines(tmp_path / "u.jsonl", {"a": 1}, "{")))
    assert (ei.value.line, ei.value.field) == (2, "<json>")


# --- size limit -------------------------------------------------------------------------------


def _write_huge_line(path: Path, n_bytes: int) -> None:
    """Line 1 good, line 2 a JSON string of ``n_bytes`` 'a's, line 3 good; written in chunks."""
    chunk = b"a" * (1024 * 1024)
    with open(path, "wb") as f:
        f.write(json.dumps(kaizen_line("first")).encode() + b"\n")
        f.write(b'{"messages": [{"role": "user", "content": "x"}], "output": "')
        for _ in range(n_bytes // len(chunk)):
            f.write(chunk)
        f.write(b'"}\n')
        f.write(json.dumps(kaizen_line("third")).encode() + b"\n")


def test_50mb_line_raises_quickly_without_reading_it_whole(tmp_path: Path) -> None:
    p = tmp_path / "huge.jsonl"
    _write_huge_line(p, 50 * 1024 * 1024)
    assert p.stat().st_size > 50 * 1024 * 1024

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(LogFormatError) as ei:
            parse_traces(p)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = ei.value
    assert (err.line, err.field) == (2, "<line>")
    assert err.problem == "line is longer than 16 MiB; split the record or raise max_line_bytes"
    assert elapsed < 10
    assert peak < 24 * 1024 * 1024, f"peak memory {peak / 2**20:.1f} MiB: the long line was read whole"


def test_long_line_skipped_and_following_lines_counted(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    _write_huge_line(p, 3 * 1024 * 1024)
    res = parse_traces(p, skip_invalid=True, max_line_bytes=1024 * 1024)
    assert [(n, t.messages[0].content) for n, t in res.traces] == [(1, "first"), (3, "third")]
    assert [(e.line, e.field) for e in res.invalid] == [(2, "<line>")]
    assert "longer than 1 MiB" in res.invalid[0].problem


def test_line_exactly_at_limit_is_accepted(tmp_path: Path) -> None:
    line = json.dumps(kaizen_line("x" * 100)).encode()
    p = tmp_path / "t.jsonl"
    p.write_bytes(line + b"\n" + line)
    assert len(parse_traces(p, max_line_bytes=len(line)).traces) == 2
    with pytest.raises(LogFormatError, match="longer than"):
        parse_traces(p, max_line_bytes=len(line) - 1)


# --- format selection -------------------------------------------------------------------------


def test_auto_detect() -> None:
    assert set(FORMATS) >= {"kaizen", "openai-chat"}
    assert detect_format({"messages": [], "output": ""}) == "kaizen"
    assert detect_format({"request": {}, "response": {}}) == "openai-chat"
    with pytest.raises(ValueError, match="unknown log format"):
        detect_format({"prompt": "x", "completion": "y"})
    assert parse_traces(FIX / "kaizen_small.jsonl", fmt="auto").format == "kaizen"
    assert parse_traces(FIX / "openai_chat_small.jsonl").format == "openai-chat"


def test_unknown_format_record(tmp_path: Path) -> None:
    p = write_lines(tmp_path / "t.jsonl", {"prompt": "x", "completion": "y"})
    with pytest.raises(LogFormatError) as ei:
        parse_traces(p, skip_invalid=True)
    assert (ei.value.line, ei.value.field) == (1, "<format>")
    assert "pass --format" in ei.value.problem


def test_auto_detect_skips_unreadable_leading_lines(tmp_path: Path) -> None:
    p = write_lines(tmp_path / "t.jsonl", "{broken", kaizen_line())
    res = parse_traces(p, skip_invalid=True)
    assert res.format == "kaizen"
    assert [n for n, _ in res.traces] == [2]
    assert [e.line for e in res.invalid] == [1]


def test_explicit_format(tmp_path: Path) -> None:
    assert len(parse_traces(FIX / "openai_chat_small.jsonl", fmt="openai_chat").traces) == 4
    # a kaizen file read as openai-chat: every line fails, naming the first missing field
    with pytest.raises(LogFormatError) as ei:
        parse_traces(FIX / "kaizen_small.jsonl", fmt="openai-chat")
    assert ei.value.line == 1


def test_unknown_explicit_format_is_config_error() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_traces(FIX / "kaizen_small.jsonl", fmt="langsmith")
    assert "kaizen" in str(ei.value) and "openai-chat" in str(ei.value)


# --- identity ---------------------------------------------------------------------------------


def test_same_content_different_timestamp_gives_different_content_id(tmp_path: Path) -> None:
    p = write_lines(
        tmp_path / "t.jsonl",
        kaizen_line(timestamp="2025-03-01T09:00:00Z"),
        kaizen_line(timestamp="2025-03-01T09:00:05Z"),
        kaizen_line(timestamp="2025-03-01T09:00:05Z"),
    )
    (_, a), (_, b), (_, c) = parse_traces(p).traces
    assert a.content_id("intents") != b.content_id("intents")
    assert b.content_id("intents") == c.content_id("intents")
