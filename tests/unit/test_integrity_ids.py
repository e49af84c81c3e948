"""Issue 14, items 1 and 2 on real SQLite and PostgreSQL: an id names one trace, and the latest feedback counts.

* A record whose id is already used by a different trace — in another file, earlier in the same file,
  or a vLLM request id a client reused — is refused with an error naming both places, the import
  stays atomic, and no feedback ever lands on content it was not given for.
* Feedback pass → fail → pass ends at pass, whatever files it came in; re-importing a file adds nothing.

Every test runs on both import paths: a small import checked and written in one transaction, and a
large one staged in chunks and published at the end (``CHUNK`` lowered to 2 records), and on both
databases. A writer committing between staging and publishing is part of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from kaizen.tools.errors import LogFormatError
from kaizen.tools.logs import parse_feedback, parse_traces
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import Store, staging
from kaizen.tools.store.tables import FeedbackRow, TraceRow
from kaizen.tools.workspace import find_workspace, init_workspace
from kaizen.workflows.cli.main import main

TASK = TaskSpec(name="intents", kind="classification", labels=["balance", "card_declined", "transfer"])


@pytest.fixture(params=["one transaction", "staged"], autouse=True)
def import_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "staged":
        monkeypatch.setattr(staging, "CHUNK", 2)
    return request.param


@pytest.fixture
def ws_dir(tmp_path: Path, kaizen_db: str | None) -> Path:
    ws, _ = init_workspace(tmp_path / "ws")
    ws.store.add_task(TASK)
    ws.store.close()
    return tmp_path / "ws"


@pytest.fixture
def store(ws_dir: Path) -> Store:
    s = Store(find_workspace(ws_dir).db_url)
    yield s
    s.close()


def jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rec(
    text: str, output: str, verdict: str | None = None, correction: str | None = None, **kw: object
) -> dict:
    r = {"task": "intents", "messages": [{"role": "user", "content": text}], "output": output, **kw}
    if verdict:
        r["feedback"] = {"verdict": verdict} | ({"correction": correction} if correction else {})
    return r


def ingest(store: Store, path: Path, skip_invalid: bool = False):
    return store.import_traces(
        parse_traces(path, skip_invalid=skip_invalid).traces,
        path=str(path),
        default_task=None,
        skip_invalid=skip_invalid,
    )


def rows(store: Store) -> tuple[int, int]:
    with Session(store.engine) as s:
        return (
            s.execute(select(func.count()).select_from(TraceRow)).scalar_one(),
            s.execute(select(func.count()).select_from(FeedbackRow)).scalar_one(),
        )


def view(store: Store, tid: str):
    (v,) = store.traces("intents", ids=[tid])
    return v


# --- item 1: ids --------------------------------------------------------------------------------


def test_an_id_reused_in_another_file_is_refused_and_relabels_nothing(store: Store, tmp_path: Path) -> None:
    first = jsonl(tmp_path / "a.jsonl", rec("how much do I have", "balance", "pass", id="x"))
    ingest(store, first)
    second = jsonl(
        tmp_path / "b.jsonl",
        rec("hello", "balance", id="y"),
        rec("card declined", "balance", "fail", "card_declined", id="x"),
    )
    with pytest.raises(LogFormatError) as ei:
        ingest(store, second)
    msg = str(ei.value)
    assert msg.startswith(f"{second}:2: id:") and f"{first}:1" in msg  # both places named
    assert rows(store) == (1, 1)  # atomic: not even the good line "y" went in
    v = view(store, "x")
    assert (v.messages[0]["content"], v.verdict, v.gold) == ("how much do I have", "pass", "balance")


def test_skip_invalid_reports_the_collision_and_keeps_the_rest(store: Store, tmp_path: Path) -> None:
    ingest(store, jsonl(tmp_path / "a.jsonl", rec("how much do I have", "balance", "pass", id="x")))
    stats = ingest(
        store,
        jsonl(
            tmp_path / "b.jsonl",
            rec("hello", "balance", id="y"),
            rec("card declined", "balance", "fail", "card_declined", id="x"),
        ),
        skip_invalid=True,
    )
    assert (stats.imported, stats.invalid, stats.feedback_added) == (1, 1, 0)
    assert "already used by a different trace" in stats.errors[0]
    assert view(store, "x").gold == "balance"


def test_an_id_used_twice_in_one_file_names_both_lines(store: Store, tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "a.jsonl",
        rec("how much do I have", "balance", "pass", id="x"),
        rec("other", "transfer", id="z"),
        rec("card declined", "balance", "fail", "card_declined", id="x"),
    )
    with pytest.raises(LogFormatError, match=rf"^{f}:3: id: .*\({f}:1\)"):
        ingest(store, f)
    assert rows(store) == (0, 0)


def test_the_same_record_again_is_a_duplicate_and_its_feedback_counts(store: Store, tmp_path: Path) -> None:
    ingest(store, jsonl(tmp_path / "a.jsonl", rec("how much do I have", "balance", id="x")))
    stats = ingest(
        store, jsonl(tmp_path / "b.jsonl", rec("how much do I have", "balance", "fail", "transfer", id="x"))
    )
    assert (stats.imported, stats.duplicates, stats.feedback_added) == (0, 1, 1)
    assert view(store, "x").gold == "transfer"


def vllm_pair(rid: str, text: str, output: str) -> str:
    prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    return (
        f"INFO 01-01 00:00:00 [logger.py:43] Received request {rid}: prompt: {prompt!r}, params: None, "
        "prompt_token_ids: None, prompt_embeds shape: None, lora_request: None.\n"
        f"INFO 01-01 00:00:01 [logger.py:71] Generated response {rid}: output: {output!r}, output_token_ids: None, "
        "finish_reason: stop\n"
    )


def test_a_reused_vllm_request_id_is_refused(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text(
        vllm_pair("req-1", "how much do I have", "balance")
        + vllm_pair("req-1", "my card was declined", "balance")
    )
    with pytest.raises(
        LogFormatError, match=rf"^{log}:4: id: trace id 'req-1' is already used .*\({log}:2\)"
    ):
        store.import_traces(parse_traces(log).traces, path=str(log), default_task="intents")
    # feedback keyed by the request id can only ever reach the first request
    stats = store.import_traces(
        parse_traces(log, skip_invalid=True).traces, path=str(log), default_task="intents", skip_invalid=True
    )
    assert (stats.imported, stats.invalid) == (1, 1)
    assert view(store, "req-1").messages[0]["content"] == "how much do I have"


def test_two_vllm_requests_in_flight_with_one_id_are_refused(tmp_path: Path) -> None:
    """Interleaved, their responses could pair with the wrong prompt: neither is imported."""
    a, b = (
        vllm_pair("dup", "how much do I have", "balance").splitlines(),
        vllm_pair("dup", "card declined", "x").splitlines(),
    )
    log = tmp_path / "vllm.log"
    log.write_text("\n".join([a[0], b[0], a[1], b[1]]) + "\n")
    res = parse_traces(log, skip_invalid=True)
    assert res.traces == []
    assert [(e.line, e.field) for e in res.invalid] == [(2, "request_id")]
    assert "in flight at once (also at line 1)" in res.invalid[0].problem


# --- item 2: the latest feedback counts ---------------------------------------------------------


def fb(tid: str, verdict: str, correction: str | None = None) -> dict:
    return {"trace_id": tid, "verdict": verdict} | ({"correction": correction} if correction else {})


def test_pass_fail_pass_ends_at_pass_across_files(store: Store, tmp_path: Path) -> None:
    ingest(store, jsonl(tmp_path / "t.jsonl", rec("how much do I have", "balance", id="t1")))
    for i, item in enumerate([fb("t1", "pass"), fb("t1", "fail", "transfer"), fb("t1", "pass")]):
        f = jsonl(tmp_path / f"f{i}.jsonl", item)
        assert store.add_feedback(parse_feedback(f).items, path=str(f)).feedback_added == 1
        assert view(store, "t1").verdict == item["verdict"]
    assert view(store, "t1").gold == "balance"


def test_pass_fail_pass_in_one_file_and_reimporting_it_adds_nothing(store: Store, tmp_path: Path) -> None:
    ingest(store, jsonl(tmp_path / "t.jsonl", rec("how much do I have", "balance", id="t1")))
    f = jsonl(tmp_path / "f.jsonl", fb("t1", "pass"), fb("t1", "fail", "transfer"), fb("t1", "pass"))
    assert store.add_feedback(parse_feedback(f).items, path=str(f)).feedback_added == 3
    again = store.add_feedback(parse_feedback(f).items, path=str(f))
    assert (again.feedback_added, again.duplicates) == (0, 3)
    assert view(store, "t1").verdict == "pass" and rows(store)[1] == 3
    # a later fail, then re-importing the old file: the old file must not revert it
    later = jsonl(tmp_path / "later.jsonl", fb("t1", "fail", "transfer"))
    store.add_feedback(parse_feedback(later).items, path=str(later))
    store.add_feedback(parse_feedback(f).items, path=str(f))
    assert view(store, "t1").verdict == "fail"


def test_feedback_without_a_source_file_reverts_too(store: Store, tmp_path: Path) -> None:
    """The serving proxy attaches each POST /feedback as its own import (no file, no line numbers)."""
    from kaizen.tools.schema import FeedbackIn

    ingest(store, jsonl(tmp_path / "t.jsonl", rec("how much do I have", "balance", id="t1")))
    for item in [fb("t1", "pass"), fb("t1", "fail", "transfer"), fb("t1", "pass"), fb("t1", "pass")]:
        store.add_feedback([(1, FeedbackIn.model_validate(item))], path="kaizen serve s1 POST /feedback")
    assert view(store, "t1").verdict == "pass" and rows(store)[1] == 3  # the repeated pass changed nothing


def test_cli_feedback_sequence(ws_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = ["--workspace", str(ws_dir)]
    t = jsonl(tmp_path / "t.jsonl", rec("how much do I have", "balance", id="t1"))
    assert main([*w, "ingest", str(t)]) == 0
    capsys.readouterr()
    for i, item in enumerate([fb("t1", "pass"), fb("t1", "fail", "transfer"), fb("t1", "pass")]):
        assert main([*w, "feedback", str(jsonl(tmp_path / f"f{i}.jsonl", item)), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["feedback_added"] == 1
    assert main([*w, "traces", "stats", "--task", "intents", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passes"] == 1


# --- another writer commits between staging and publishing ---------------------------------------


@pytest.mark.parametrize("skip_invalid", [True, False])
def test_a_writer_between_staging_and_publishing_is_seen(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip_invalid: bool
) -> None:
    """Just before the publishing transaction takes the write lock, another connection stores trace
    "a" (same content, with a "fail") and trace "b" (other content): "a" becomes a duplicate whose
    "pass" is still the latest, "b" is refused, and the other writer's rows are untouched."""
    other = Store(store.url)
    real = staging.hold_write_lock

    def late_writer(s) -> None:
        monkeypatch.setattr(staging, "hold_write_lock", real)
        theirs = jsonl(
            tmp_path / "theirs.jsonl",
            rec("how much do I have", "balance", "fail", "transfer", id="a"),
            rec("something else", "transfer", id="b"),
        )
        ingest(other, theirs)
        real(s)

    monkeypatch.setattr(staging, "hold_write_lock", late_writer)
    ours = jsonl(
        tmp_path / "ours.jsonl",
        rec("how much do I have", "balance", "pass", id="a"),
        rec("card declined", "balance", "fail", "card_declined", id="b"),
        rec("hello", "balance", id="c"),
    )
    if not skip_invalid:
        with pytest.raises(LogFormatError, match=r"trace id 'b' was just stored by another import"):
            ingest(store, ours)
        assert rows(store) == (2, 1) and view(store, "a").verdict == "fail"
        other.close()
        return
    stats = ingest(store, ours, skip_invalid=True)
    other.close()
    assert (stats.imported, stats.duplicates, stats.invalid, stats.feedback_added) == (1, 1, 1, 1)
    assert view(store, "a").verdict == "pass" and view(store, "b").messages[0]["content"] == "something else"
    assert view(store, "b").verdict is None and rows(store) == (3, 2)
