"""The scheduled loop without training: incremental ingestion with cursors (new files once, appended
lines, partial lines, rotation, a tick killed half-way), the trigger policy, ticks refused while
another holds the task, and stale ticks marked interrupted. Real SQLite workspaces throughout."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kaizen.tools import lock
from kaizen.tools.config import ScheduleSettings
from kaizen.tools.errors import ConfigError, LockedError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store.tables import RunRow, TickRow
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.schedule import job as schedule
from kaizen.workflows.schedule.ingest import cursor_positions, ingest_new
from kaizen.workflows.schedule.policy import decide, failure_rate_rise, novel_share

TASK = "intents"
NEVER = {"min_new_failures": 10_000, "min_failure_rate_rise": 1.0, "drift_threshold": 1.0}


@pytest.fixture
def ws(tmp_path: Path, kaizen_db: str | None):
    """A workspace on SQLite, and again on PostgreSQL (``kaizen_db``): cursors, atomic ingestion, ticks, policy."""
    w, _ = init_workspace(tmp_path / "ws")
    w.store.add_task(TaskSpec(name=TASK, kind="classification", labels=["balance", "transfer"]))
    yield w
    w.store.close()


def line(
    text: str, verdict: str | None = "pass", output: str = "balance", ts: str = "2026-11-01T10:00:00"
) -> str:
    rec = {"timestamp": ts, "messages": [{"role": "user", "content": text}], "output": output}
    if verdict:
        rec["feedback"] = {"verdict": verdict} | ({"correction": "transfer"} if verdict == "fail" else {})
    return json.dumps(rec) + "\n"


def n_traces(ws) -> int:  # noqa: ANN001
    return len(ws.store.traces(TASK))


# ------------------------------------------------------------------------------------ ingest
def test_new_files_are_picked_up_once(ws, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "a.jsonl").write_text(line("what is my balance") + line("send money", "fail"))
    r1 = ingest_new(ws.store, TASK, src, tmp_path / "w")
    assert (r1.imported, r1.files) == (2, 1)
    r2 = ingest_new(ws.store, TASK, src, tmp_path / "w")
    assert (r2.imported, r2.duplicates, r2.files) == (0, 0, 0)  # nothing re-read
    (src / "b.jsonl").write_text(line("balance please"))
    r3 = ingest_new(ws.store, TASK, src, tmp_path / "w")
    assert (r3.imported, r3.files) == (1, 1) and n_traces(ws) == 3


def test_appended_lines_and_partial_last_line(ws, tmp_path: Path) -> None:
    f = tmp_path / "app.jsonl"
    f.write_text(line("one"))
    assert ingest_new(ws.store, TASK, f, tmp_path / "w").imported == 1
    partial = line("two")
    with f.open("a") as fh:
        fh.write(partial[:20])  # the writer is mid-line
    assert ingest_new(ws.store, TASK, f, tmp_path / "w").imported == 0
    with f.open("a") as fh:
        fh.write(partial[20:] + line("three"))
    assert ingest_new(ws.store, TASK, f, tmp_path / "w").imported == 2
    assert cursor_positions(ws.store, TASK)[str(f.resolve())] == f.stat().st_size


def test_rotated_file_is_read_from_the_start(ws, tmp_path: Path) -> None:
    f = tmp_path / "app.jsonl"
    f.write_text(line("one") + line("two"))
    ingest_new(ws.store, TASK, f, tmp_path / "w")
    f.write_text(line("three"))  # logrotate: same name, new content, shorter
    r = ingest_new(ws.store, TASK, f, tmp_path / "w")
    assert r.rotated == [str(f)] and r.imported == 1 and n_traces(ws) == 3


def test_bad_lines_are_skipped_and_reported_with_the_source_line(ws, tmp_path: Path) -> None:
    f = tmp_path / "app.jsonl"
    f.write_text(line("one"))
    ingest_new(ws.store, TASK, f, tmp_path / "w")
    with f.open("a") as fh:
        fh.write(line("two") + "{not json\n" + line("three"))
    r = ingest_new(ws.store, TASK, f, tmp_path / "w")
    assert r.imported == 2 and r.invalid == 1
    assert r.errors[0].startswith(f"{f}:3:")


def test_feedback_files_are_read_after_traces(ws, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "a.feedback.jsonl").write_text("")
    (src / "z.jsonl").write_text(line("what is my balance", verdict=None))
    ingest_new(ws.store, TASK, src, tmp_path / "w")
    tid = ws.store.traces(TASK)[0].id
    (src / "a.feedback.jsonl").write_text(
        json.dumps({"trace_id": tid, "verdict": "fail", "correction": "balance"}) + "\n"
    )
    r = ingest_new(ws.store, TASK, src, tmp_path / "w")
    assert r.feedback_added == 1 and ws.store.traces(TASK)[0].verdict == "fail"


def test_a_tick_killed_mid_ingestion_loses_nothing_and_doubles_nothing(
    ws, tmp_path: Path, monkeypatch
) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    for name in "abc":
        (src / f"{name}.jsonl").write_text("".join(line(f"{name} message {i}") for i in range(3)))
    real = ws.store.import_traces
    calls = {"n": 0}

    def dies_on_second_file(*a, **kw):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process is killed inside the second file's transaction
        return real(*a, **kw)

    monkeypatch.setattr(ws.store, "import_traces", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        schedule.tick(ws, TASK, overrides={"source": str(src)} | NEVER)
    assert n_traces(ws) == 3 and ws.store.list_ticks(TASK)[0].status == "interrupted"
    monkeypatch.setattr(ws.store, "import_traces", real)
    row = schedule.tick(ws, TASK, overrides={"source": str(src)} | NEVER)
    assert row.ingested["imported"] == 6 and row.ingested["duplicates"] == 0 and n_traces(ws) == 9
    assert row.status == "skipped"


def test_a_tick_left_running_by_a_dead_process_is_marked_interrupted(ws, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    ws.store.save_tick(TickRow(id="old", task=TASK, status="running", pid=dead.pid))
    lock.acquire(ws.store, TASK, "old")
    from kaizen.tools.store.tables import LockRow

    with ws.store.session() as s:  # the dead tick still holds the lock
        row = s.get(LockRow, TASK)
        row.pid = dead.pid
        s.add(row)
    f = tmp_path / "app.jsonl"
    f.write_text(line("one"))
    new = schedule.tick(ws, TASK, overrides={"source": str(f)} | NEVER)
    old = next(t for t in ws.store.list_ticks(TASK) if t.id == "old")
    assert new.status == "skipped" and old.status == "interrupted" and "died" in old.error


def test_concurrent_ticks_are_refused_and_recorded(ws, tmp_path: Path) -> None:
    f = tmp_path / "app.jsonl"
    f.write_text(line("one"))
    lock.acquire(ws.store, TASK, "someone-else")  # a live holder: this very process
    with pytest.raises(LockedError, match="busy"):
        schedule.tick(ws, TASK, overrides={"source": str(f)})
    (t,) = ws.store.list_ticks(TASK)
    assert t.status == "busy" and n_traces(ws) == 0


def test_tick_without_a_source_says_how_to_give_one(ws) -> None:
    with pytest.raises(ConfigError, match="--source"):
        schedule.tick(ws, TASK)
    with pytest.raises(ConfigError, match="duration"):
        schedule.tick(ws, TASK, overrides={"source": "x", "cooldown": "soon"})


# ------------------------------------------------------------------------------------ policy
def policy(**kw) -> ScheduleSettings:  # noqa: ANN003
    return ScheduleSettings(**({"min_new_failures": 5, "rate_window": 5, "min_new_for_drift": 5} | kw))


def ingest_lines(ws, tmp_path: Path, lines: list[str], name: str) -> None:  # noqa: ANN001
    f = tmp_path / name
    f.write_text("".join(lines))
    ingest_new(ws.store, TASK, f, tmp_path / "w")


def test_policy_skips_when_nothing_changed_and_triggers_on_new_failures(ws, tmp_path: Path) -> None:
    d = decide(ws.store, TASK, policy())
    assert not d.trigger and d.reasons == ["nothing new since the last repair"]
    ingest_lines(ws, tmp_path, [line(f"balance {i}") for i in range(6)], "a.jsonl")
    assert not decide(ws.store, TASK, policy()).trigger
    ingest_lines(ws, tmp_path, [line(f"move cash {i}", "fail") for i in range(5)], "b.jsonl")
    d = decide(ws.store, TASK, policy())
    assert d.trigger and d.metrics["new_failures"] == 5 and "new failures: 5" in d.reasons[0]


def test_policy_cooldown_and_daily_budget(ws, tmp_path: Path) -> None:
    ingest_lines(ws, tmp_path, [line(f"move cash {i}", "fail") for i in range(9)], "b.jsonl")
    ws.store.save_run(RunRow(id="r1", task=TASK, workflow="repair", status="promoted", thread_id="r1"))
    d = decide(ws.store, TASK, policy(cooldown="1h"))
    assert not d.trigger and d.reasons[0].startswith("cooldown")
    d = decide(ws.store, TASK, policy(cooldown="1s"), now=datetime.now(UTC) + timedelta(seconds=5))
    assert not d.trigger and d.reasons == ["nothing new since the last repair"]
    d = decide(
        ws.store,
        TASK,
        policy(cooldown="1s", max_runs_per_day=1),
        now=datetime.now(UTC) + timedelta(seconds=5),
    )
    assert not d.trigger and d.reasons[0].startswith("budget")


def test_policy_triggers_when_the_failure_rate_rises_after_a_promotion(ws, tmp_path: Path) -> None:
    from kaizen.tools import registry

    registry.promote(ws.store, TASK, "base", actor="test")  # a promotion event to measure from
    ingest_lines(ws, tmp_path, [line(f"balance {i}") for i in range(5)], "a.jsonl")
    ingest_lines(
        ws,
        tmp_path,
        [line(f"move cash {i}", "fail") for i in range(3)] + [line(f"bal {i}") for i in range(2)],
        "b.jsonl",
    )
    d = decide(ws.store, TASK, policy(min_new_failures=100, min_failure_rate_rise=0.5))
    assert (
        d.trigger
        and d.metrics["failure_rate_after_promotion"] == 0.0
        and d.metrics["failure_rate_now"] == 0.6
    )


def test_failure_rate_rise_needs_two_windows() -> None:
    assert failure_rate_rise(["pass"] * 9, 5) is None
    assert failure_rate_rise(["pass"] * 5 + ["fail"] * 5, 5) == (0.0, 1.0)


def test_drift_is_the_share_of_unlike_inputs() -> None:
    ref = ["what is my account balance", "transfer money to savings", "how much money is in my account"]
    assert novel_share(ref, ["balance of my account please", "transfer cash to savings"]) == 0.0
    assert novel_share(ref, ["my card got declined at the shop", "transfer money now"]) == 0.5
