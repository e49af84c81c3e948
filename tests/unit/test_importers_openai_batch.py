"""The OpenAI Batch importer: output lines joined with the input file by ``custom_id``.

Fixtures: ``openai_batch_input.jsonl`` (5 requests) with ``openai_batch_output.jsonl`` (3 results,
out of order; found as the sibling input) and ``openai_batch_bad_output.jsonl`` (a 400, an
expired request, an unknown ``custom_id``, a request with a bad role, two good lines).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs import FORMATS, detect_format, parse_traces
from kaizen.workflows.cli.main import main

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
INPUT = FIX / "openai_batch_input.jsonl"
OUTPUT = FIX / "openai_batch_output.jsonl"
BAD = FIX / "openai_batch_bad_output.jsonl"


def test_parses_with_the_sibling_input_file() -> None:
    res = parse_traces(OUTPUT)
    assert res.format == "openai-batch"
    assert (res.invalid, res.skipped) == ([], [])
    assert [n for n, _ in res.traces] == [1, 2, 3]
    t2, t1, t3 = (t for _, t in res.traces)  # output order, not input order

    assert t1.id == "batch_req_67f3a1c2d4e5f6a7b8c9d0e1"
    assert t1.model_version == "gpt-4o-mini"  # the request's model
    assert [(m.role, m.content) for m in t1.messages][1] == ("user", "Why was my card declined?")
    assert t1.output == "card_declined"
    assert t1.timestamp == datetime.fromtimestamp(1741570000, tz=UTC)
    assert (t1.prompt_tokens, t1.completion_tokens) == (38, 3)
    assert t1.metadata == {
        "channel": "app",  # the request body's metadata
        "openai_batch_custom_id": "req-1",
        "openai_response_id": "chatcmpl-BAT1xq",
    }
    assert t2.messages[1].content == "transfer 50 to Anna"  # content parts flattened
    assert (t3.output, t3.metadata["openai_batch_custom_id"]) == ("transfer", "req-3")


def test_explicit_input_option_and_stable_ids() -> None:
    a = parse_traces(OUTPUT, fmt="openai-batch", options={"batch_input": INPUT})
    b = parse_traces(OUTPUT, options={"batch_input": str(INPUT)})
    assert (
        [t.id for _, t in a.traces]
        == [t.id for _, t in b.traces]
        == [f"batch_req_67f3a1c2d4e5f6a7b8c9d0e{n}" for n in (2, 1, 3)]
    )
    assert [t.model_dump() for _, t in a.traces] == [t.model_dump() for _, t in parse_traces(OUTPUT).traces]


def test_auto_detection() -> None:
    line = json.loads(OUTPUT.read_text().splitlines()[0])
    assert "openai-batch" in FORMATS
    assert detect_format(line) == "openai-batch"


def test_first_bad_line_raises_path_line_field_problem() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(BAD, options={"batch_input": INPUT})
    err = ei.value
    assert (err.line, err.field) == (2, "response.status_code")
    assert (
        str(err) == f"{BAD}:2: response.status_code: 400: the request failed: integer_below_min_value: "
        "Invalid 'max_tokens': integer below minimum value."
    )


def test_skip_invalid_collects_every_bad_line() -> None:
    res = parse_traces(BAD, skip_invalid=True, options={"batch_input": INPUT})
    assert [n for n, _ in res.traces] == [1, 6]
    assert [(e.line, e.field) for e in res.invalid] == [
        (2, "response.status_code"),
        (3, "error"),
        (4, "custom_id"),
        (5, "batch_input.body.messages.0.role"),
    ]
    expired, unknown, role = res.invalid[1:]
    assert "batch_expired" in expired.problem
    assert unknown.problem == f"'req-99' is not in the batch input file {INPUT}"
    assert role.problem.startswith("Input should be 'system'")
    assert f"({INPUT}:5, custom_id 'req-5')" in role.problem


def test_no_input_file_is_a_file_level_error() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(BAD, skip_invalid=True)  # no sibling openai_batch_bad_input.jsonl
    err = ei.value
    assert (err.line, err.field) == (0, "<batch-input>")
    assert "--batch-input FILE" in err.problem and "openai_batch_bad_input.jsonl" in err.problem


def test_missing_input_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(OUTPUT, options={"batch_input": tmp_path / "nope.jsonl"})
    assert (ei.value.path, ei.value.field, ei.value.problem) == (
        str(tmp_path / "nope.jsonl"),
        "<file>",
        "file not found",
    )


def test_importing_the_input_file_says_so() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(INPUT)
    assert (ei.value.line, ei.value.field) == (1, "body")
    assert "*input*" in ei.value.problem


def test_duplicate_custom_id_and_other_endpoints(tmp_path: Path) -> None:
    rows = [json.loads(x) for x in INPUT.read_text().splitlines()]
    rows.append(dict(rows[0]))  # req-1 twice
    rows[2] = {**rows[2], "url": "/v1/embeddings"}  # req-3
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = parse_traces(OUTPUT, skip_invalid=True, options={"batch_input": inp})
    assert [t.metadata["openai_batch_custom_id"] for _, t in res.traces] == ["req-2"]
    problems = {e.line: e.problem for e in res.invalid}
    assert problems[2] == f"'req-1' is on more than one line of {inp} (1, 6)"
    assert "/v1/embeddings; only /v1/chat/completions is supported" in problems[3]


def test_other_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="batch_input"):
        parse_traces(OUTPUT, options={"batch_inptu": INPUT})
    with pytest.raises(ConfigError, match="takes no options"):
        parse_traces(FIX / "kaizen_small.jsonl", options={"batch_input": INPUT})


def test_cli_ingest_with_batch_input_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["-w", str(tmp_path / "ws")]
    assert main(["init", str(tmp_path / "ws")]) == 0
    assert (
        main(
            [
                *w,
                "task",
                "add",
                "intents",
                "--kind",
                "classification",
                "--labels",
                "balance,transfer,card_declined",
            ]
        )
        == 0
    )
    capsys.readouterr()
    copied = tmp_path / "results.jsonl"  # no sibling input: --batch-input is needed
    copied.write_bytes(OUTPUT.read_bytes())
    argv = [*w, "ingest", str(copied), "--batch-input", str(INPUT), "--task", "intents", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["format"], first["imported"], first["duplicates"], first["skipped"]) == (
        "openai-batch",
        3,
        0,
        0,
    )
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["imported"], again["duplicates"]) == (0, 3)
    assert main([*w, "ingest", str(copied), "--task", "intents"]) == 2
    assert "--batch-input FILE" in capsys.readouterr().err
