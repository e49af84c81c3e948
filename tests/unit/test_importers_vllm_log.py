"""The vLLM request-log importer: plain-text lines paired by request id.

Fixtures: ``vllm_requests.log`` — start-up chatter, an old-format request (prompt at INFO) with an
access-log line in between, a new-format request (prompt in the DEBUG ``details`` line, a LoRA
adapter), a streamed response (deltas + complete), a raw completions prompt answered after an
interleaved request, a response whose request is in an earlier file, a request never answered.
``vllm_bad.log`` — a request line cut off mid-prompt, a new-format request logged at INFO only
(no prompt), a streamed response logged as a token count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizen.tools.errors import ConfigError, LogFormatError
from kaizen.tools.logs import detect_text_format, parse_traces
from kaizen.tools.logs.vllm_log import IMPORTER, messages_from_prompt

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
LOG = FIX / "vllm_requests.log"
BAD = FIX / "vllm_bad.log"
SYS = "Classify the customer message into one intent: balance, transfer, card_declined."


def test_parses_requests_paired_with_responses() -> None:
    res = parse_traces(LOG)
    assert res.format == "vllm-log"
    assert res.invalid == []
    assert [n for n, _ in res.traces] == [8, 11, 15, 18, 19]  # the response lines
    t1, t2, t3, t5, t4 = (t for _, t in res.traces)

    assert t1.id == "chatcmpl-1f0c6a3e9b2d4c5e8f7a6b5c4d3e2f10"
    assert [(m.role, m.content) for m in t1.messages] == [
        ("system", SYS),
        ("user", "Why was my card declined?"),
    ]
    assert (t1.output, t1.model_version, t1.timestamp) == ("card_declined", None, None)
    assert (t1.prompt_tokens, t1.completion_tokens) == (4, 4)
    assert t1.metadata == {
        "vllm_prompt_format": "chatml",
        "vllm_logged_at": "03-01 09:01:00",
        "vllm_finish_reason": "stop",
    }

    assert t2.model_version == "intents-v2"  # the LoRA adapter
    assert t2.messages[1].content == "transfer 50 to Anna"  # from the DEBUG details line
    assert (t2.prompt_tokens, t2.completion_tokens) == (6, 1)

    assert t3.messages[1].content == "I don't know how much I have"  # a double-quoted repr
    assert t3.output == "balance"  # the streaming-complete line, not the deltas

    assert [(m.role, m.content) for m in t4.messages] == [("user", "Intent of: how much do I have\nIntent:")]
    assert (t4.output, t4.metadata["vllm_prompt_format"], t4.metadata["vllm_finish_reason"]) == (
        " balance",
        "raw",
        "length",
    )
    assert t5.messages[0].content == "freeze my card"


def test_unpaired_lines_are_skipped_with_a_reason() -> None:
    skipped = parse_traces(LOG).skipped
    assert [n for n, _ in skipped] == [20, 21]
    assert "not in this file" in skipped[0][1]
    assert "no 'Generated response' line" in skipped[1][1]


def test_ids_are_stable() -> None:
    assert [t.id for _, t in parse_traces(LOG).traces] == [
        t.id for _, t in parse_traces(LOG, fmt="vllm_log").traces
    ]


def test_auto_detection_reads_past_the_start_up_lines(tmp_path: Path) -> None:
    assert detect_text_format(LOG) == "vllm-log"
    assert detect_text_format(FIX / "kaizen_small.jsonl") is None
    assert IMPORTER.sniff({"messages": [], "output": ""}) is False
    other = tmp_path / "server.log"
    other.write_text("INFO starting\nINFO ready\n")
    with pytest.raises(LogFormatError) as ei:  # not vLLM, not JSON: the JSONL reader's error as before
        parse_traces(other)
    assert (ei.value.line, ei.value.field) == (1, "<json>")


def test_first_bad_line_raises_path_line_field_problem() -> None:
    with pytest.raises(LogFormatError) as ei:
        parse_traces(BAD)
    err = ei.value
    assert (err.line, err.field) == (4, "prompt")
    assert (
        str(err)
        == f"{BAD}:4: prompt: expected a quoted string: the line is cut off or not a vLLM request log"
    )


def test_skip_invalid_collects_every_bad_request() -> None:
    res = parse_traces(BAD, skip_invalid=True)
    assert [n for n, _ in res.traces] == [3, 11]
    assert [(e.line, e.field) for e in res.invalid] == [(4, "prompt"), (6, "prompt"), (9, "output")]
    assert "VLLM_LOGGING_LEVEL=DEBUG" in res.invalid[1].problem
    assert "token count" in res.invalid[2].problem
    assert res.skipped == []  # the cut-off request's response is not reported twice


def test_text_inside_a_prompt_is_not_mistaken_for_a_log_message(tmp_path: Path) -> None:
    prompt = "<|im_start|>user\nGenerated response x: output: 'nope'<|im_end|>\n<|im_start|>assistant\n"
    log = tmp_path / "v.log"
    log.write_bytes(
        (
            f"INFO 01-01 00:00:00 [logger.py:43] Received request r1: prompt: {prompt!r}, params: None, "
            "prompt_token_ids: None, prompt_embeds shape: None, lora_request: None.\r\n"
            "INFO 01-01 00:00:01 [logger.py:71] Generated response r1: output: 'ok', output_token_ids: [1], "
            "finish_reason: stop\r\n"
        ).encode()
    )
    ((_, t),) = parse_traces(log).traces
    assert (t.messages[0].content, t.output) == ("Generated response x: output: 'nope'", "ok")


def test_prompt_preview_at_info_is_read(tmp_path: Path) -> None:
    log = tmp_path / "v.log"
    log.write_text(
        "INFO 01-01 00:00:00 [logger.py:49] Received request r2: params: SamplingParams(n=1), "
        "lora_request: None, prompt: 'plain prompt'.\n"
        "INFO 01-01 00:00:01 [logger.py:71] Generated response r2: output: 'x', output_token_ids: [], "
        "finish_reason: stop\n"
    )
    ((_, t),) = parse_traces(log, fmt="vllm-log").traces
    assert ([(m.role, m.content) for m in t.messages], t.completion_tokens) == ([("user", "plain prompt")], 0)


@pytest.mark.parametrize(
    ("prompt", "template", "messages"),
    [
        (
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n",
            "chatml",
            [("system", "S"), ("user", "U")],
        ),
        (
            "<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n",
            "chatml",
            [("user", "U1"), ("assistant", "A1"), ("user", "U2")],
        ),
        (
            (
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
                "<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
            ),
            "llama3",
            [("system", "S"), ("user", "U")],
        ),
        ("<|im_start|>wizard\nW<|im_end|>\n", "raw", None),  # unknown role
        ("<|im_start|>user\nU<|im_end|>\ntrailing text", "raw", None),
        ("just text", "raw", None),
    ],
)
def test_messages_from_prompt(prompt: str, template: str, messages: list | None) -> None:
    name, msgs = messages_from_prompt(prompt)
    assert name == template
    assert [(m["role"], m["content"]) for m in msgs] == (messages or [("user", prompt)])


def test_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="takes no options"):
        parse_traces(LOG, options={"batch_input": "x"})
