"""Issue 14, item 3: the tick's cursor only moves past what was imported or reported.

Real workspaces on SQLite and PostgreSQL and real files that grow between ticks: vLLM request and response lines
logged in different ticks (and across a rotation), a line over the size limit, an OpenAI Batch
output in the source, and feedback that arrives one tick before its trace.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlmodel import select

from kaizen.tools.errors import ConfigError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store.tables import PendingRow
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.schedule import ingest as tick_ingest
from kaizen.workflows.schedule import pending as tick_pending
from kaizen.workflows.schedule.ingest import cursor_positions, ingest_new

TASK = "intents"
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.fixture
def ws(tmp_path: Path, kaizen_db: str | None):
    w, _ = init_workspace(tmp_path / "ws")
    w.store.add_task(
        TaskSpec(name=TASK, kind="classification", labels=["balance", "transfer", "card_declined"])
    )
    yield w
    w.store.close()


def request(rid: str, text: str) -> str:
    prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    return (
        f"INFO 01-01 00:00:00 [logger.py:43] Received request {rid}: prompt: {prompt!r}, params: None, "
        "prompt_token_ids: None, prompt_embeds shape: None, lora_request: None.\n"
    )


def response(rid: str, output: str) -> str:
    return f"INFO 01-01 00:00:01 [logger.py:71] Generated response {rid}: output: {output!r}, output_token_ids: None, finish_reason: stop\n"


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def tick(ws, src: Path, **kw):
    return ingest_new(ws.store, TASK, src, ws.artifact_dir("t"), **kw)


def texts(ws) -> dict[str, str]:
    return {t.id: t.messages[-1]["content"] for t in ws.store.traces(TASK)}


def test_vllm_request_and_response_in_different_ticks_pair_later(ws, tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text(
        "INFO 01-01 00:00:00 [api_server.py:1] vLLM API server version 0.10.0\n"
        + request("r1", "balance please")
        + response("r1", "balance")
        + request("r2", "send 20 to bob")
    )
    r1 = tick(ws, log)
    assert (r1.imported, r1.pending_requests, r1.invalid) == (1, 1, 0)
    assert (
        cursor_positions(ws.store, TASK)[str(log.resolve())] == log.stat().st_size
    )  # moved past the waiting request
    r2 = tick(ws, log)  # nothing new: the request keeps waiting, nothing is reported twice
    assert (r2.imported, r2.pending_requests, r2.files) == (0, 1, 0)
    append(
        log,
        "INFO 01-01 00:00:02 [metrics.py:1] Avg prompt throughput: 1.0 tokens/s\n"
        + response("r2", "transfer"),
    )
    r3 = tick(ws, log)
    assert (r3.imported, r3.pending_requests, r3.invalid) == (1, 0, 0)
    assert texts(ws) == {"r1": "balance please", "r2": "send 20 to bob"}


def test_a_request_pairs_with_its_response_after_a_rotation(ws, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "vllm.log").write_text(request("r1", "balance please"))
    assert tick(ws, src).pending_requests == 1
    shutil.move(src / "vllm.log", src / "vllm.log.1")
    (src / "vllm.log").write_text(response("r1", "balance"))
    r = tick(ws, src)
    assert (r.imported, r.pending_requests) == (1, 0) and texts(ws) == {"r1": "balance please"}


def test_a_request_id_reused_in_a_later_tick_is_reported(ws, tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text(request("r1", "balance please") + response("r1", "balance"))
    tick(ws, log)
    append(log, request("r1", "my card was declined"))
    assert tick(ws, log).pending_requests == 1
    append(log, response("r1", "balance"))
    r = tick(ws, log)
    assert (r.imported, r.invalid) == (0, 1) and r.errors[0].startswith(
        f"{log}:4: id: trace id 'r1' is already used"
    )
    assert texts(ws) == {"r1": "balance please"}


def test_waiting_requests_are_bounded_and_reported(
    ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tick_pending, "PENDING_MAX", 2)
    log = tmp_path / "vllm.log"
    log.write_text("".join(request(f"r{i}", f"message {i}") for i in range(3)))
    r = tick(ws, log)
    assert (r.pending_requests, r.invalid) == (2, 1)
    assert r.errors[0].startswith(f"{log}:1: request_id: vLLM request r0 dropped")
    append(log, response("r0", "balance") + response("r2", "balance"))
    r = tick(ws, log)
    assert r.imported == 1 and list(texts(ws).values()) == ["message 2"]


def test_a_line_over_the_size_limit_is_reported_and_passed(
    ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tick_ingest, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(tick_ingest, "MAX_CHUNK_BYTES", 4000)  # the long line does not even fit one chunk
    good = (
        json.dumps({"messages": [{"role": "user", "content": "balance please"}], "output": "balance"}) + "\n"
    )
    huge = json.dumps({"messages": [{"role": "user", "content": "x" * 6000}], "output": "balance"})
    f = tmp_path / "app.jsonl"
    f.write_text(good + huge[:5000])  # the long line is still being written
    assert tick(ws, f).imported == 1
    r = tick(ws, f)
    assert r.imported == 0 and r.invalid == 0 and "not finished yet" in r.errors[0]  # reported, not silent
    append(f, huge[5000:] + "\n" + good.replace("balance please", "my balance"))
    r = tick(
        ws, f
    )  # the long line ends: reported, passed, and the line after it is read (not 0 bytes forever)
    assert r.invalid == 1 and r.errors[0].startswith(f"{f}:2: <line>: line is longer than 1000 bytes")
    assert r.imported == 1 and cursor_positions(ws.store, TASK)[str(f.resolve())] == f.stat().st_size
    assert sorted(texts(ws).values()) == ["balance please", "my balance"]


def batch_dir(tmp_path: Path, sibling: bool = True) -> Path:
    src = tmp_path / "batches"
    src.mkdir()
    shutil.copy(FIX / "openai_batch_output.jsonl", src / "batch_output.jsonl")
    if sibling:
        shutil.copy(FIX / "openai_batch_input.jsonl", src / "batch_input.jsonl")
    return src


def n_records(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def test_openai_batch_output_in_a_tick_finds_its_sibling_input(ws, tmp_path: Path) -> None:
    src = batch_dir(tmp_path)
    r = tick(ws, src)
    out = src / "batch_output.jsonl"
    assert (
        r.files == 1 and r.imported + r.invalid == n_records(out) and r.imported > 0
    )  # the input file is not a log
    assert str((src / "batch_input.jsonl").resolve()) not in cursor_positions(ws.store, TASK)


def test_openai_batch_without_its_input_keeps_the_cursor_until_it_is_given(ws, tmp_path: Path) -> None:
    src = batch_dir(tmp_path, sibling=False)
    out = src / "batch_output.jsonl"
    r = tick(ws, src)
    assert (
        r.imported == 0 and "--batch-input" in r.errors[0] and "read again once this is fixed" in r.errors[0]
    )
    assert cursor_positions(ws.store, TASK).get(str(out.resolve()), 0) == 0  # nothing unread is passed
    elsewhere = tmp_path / "inputs" / "requests.jsonl"
    elsewhere.parent.mkdir()
    shutil.copy(FIX / "openai_batch_input.jsonl", elsewhere)
    r = tick(ws, src, batch_input=elsewhere)  # schedule.batch_input / tick --batch-input
    assert r.imported > 0 and r.imported + r.invalid == n_records(out)
    assert cursor_positions(ws.store, TASK)[str(out.resolve())] == out.stat().st_size


def test_feedback_one_tick_before_its_trace_waits(ws, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    trace = {
        "id": "t1",
        "messages": [{"role": "user", "content": "my card was declined"}],
        "output": "balance",
    }
    (src / "app.feedback.jsonl").write_text(
        json.dumps({"trace_id": "t1", "verdict": "fail", "correction": "card_declined"}) + "\n"
    )
    r = tick(ws, src)
    assert (r.feedback_added, r.pending_feedback, r.invalid) == (0, 1, 0)
    (src / "app.jsonl").write_text(json.dumps(trace) + "\n")
    r = tick(ws, src)
    assert (r.imported, r.feedback_added, r.pending_feedback) == (1, 1, 0)
    (v,) = ws.store.traces(TASK)
    assert (v.verdict, v.gold) == ("fail", "card_declined")
    with ws.store.session() as s:
        assert list(s.exec(select(PendingRow))) == []


def test_waiting_feedback_keeps_its_order_and_expires(
    ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    src = tmp_path / "logs"
    src.mkdir()
    fb = src / "a.feedback.jsonl"
    fb.write_text(
        json.dumps({"trace_id": "t1", "verdict": "fail", "correction": "transfer"})
        + "\n"
        + json.dumps({"trace_id": "gone", "verdict": "pass"})
        + "\n"
    )
    tick(ws, src)
    append(
        fb, json.dumps({"trace_id": "t1", "verdict": "pass"}) + "\n"
    )  # a later verdict, still before the trace
    assert tick(ws, src).pending_feedback == 3
    (src / "b.jsonl").write_text(
        json.dumps({"id": "t1", "messages": [{"role": "user", "content": "hi"}], "output": "balance"}) + "\n"
    )
    monkeypatch.setitem(
        tick_pending.PENDING_TTL, "feedback", timedelta(seconds=-1)
    )  # everything still waiting is too old
    r = tick(ws, src)
    assert ws.store.traces(TASK)[0].verdict is None  # expired before the trace came: dropped, not misapplied
    assert r.invalid == 3 and r.pending_feedback == 0
    assert any(e.startswith(f"{fb}:2: trace_id: no trace with id 'gone'") for e in r.errors)


def test_waiting_feedback_is_applied_in_the_order_it_arrived(ws, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "a.feedback.jsonl").write_text(
        json.dumps({"trace_id": "t1", "verdict": "fail", "correction": "transfer"}) + "\n"
    )
    tick(ws, src)
    (src / "b.feedback.jsonl").write_text(json.dumps({"trace_id": "t1", "verdict": "pass"}) + "\n")
    tick(ws, src)
    (src / "c.jsonl").write_text(
        json.dumps({"id": "t1", "messages": [{"role": "user", "content": "hi"}], "output": "balance"}) + "\n"
    )
    r = tick(ws, src)
    assert (r.feedback_added, r.pending_feedback) == (2, 0)
    assert ws.store.traces(TASK)[0].verdict == "pass"


def test_unknown_schedule_format_is_refused_at_load(ws, tmp_path: Path) -> None:
    from kaizen.tools.config import load_settings

    (tmp_path / "k.yaml").write_text("schedule:\n  format: bogus\n")
    with pytest.raises(
        ConfigError, match=r"schedule.format: unknown log format 'bogus': use one of auto, kaizen"
    ):
        load_settings(tmp_path / "k.yaml")
    from kaizen.workflows.schedule.job import policy_for

    with pytest.raises(
        ConfigError, match=r"^schedule.format: unknown log format 'bogus'"
    ) as ei:  # tick --format bogus
        policy_for(ws, {"format": "bogus"})
    assert "\n" not in str(ei.value)
