"""The store on real SQLite files: workspace init, trace import (atomic, idempotent), feedback,
statistics, the SQLite settings in force, and refusing databases that are not kaizen's."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from kaizen.tools.errors import ConfigError, LogFormatError, NotFoundError, WorkspaceError
from kaizen.tools.logs import parse_feedback, parse_traces
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import ImportStats, Store
from kaizen.tools.store.tables import SCHEMA_VERSION, FeedbackRow, TraceRow
from kaizen.tools.workspace import init_workspace

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
INTENTS = TaskSpec(name="intents", kind="classification", labels=["balance", "transfer", "card_declined"])


@pytest.fixture
def store(tmp_path: Path, kaizen_db: str | None) -> Store:
    """A workspace's store on SQLite, and again on PostgreSQL (``kaizen_db``)."""
    ws, _ = init_workspace(tmp_path / "ws")
    s = Store(ws.db_url)
    s.add_task(INTENTS)
    yield s
    s.close()


def counts(store: Store) -> dict[str, int]:
    """Row count of every table: 'the db is unchanged' means these are equal."""
    with Session(store.engine) as s:
        return {
            t.name: s.execute(select(func.count()).select_from(t)).scalar_one()
            for t in SQLModel.metadata.sorted_tables
        }


def ingest(
    store: Store, path: Path, task: str | None = None, skip_invalid: bool = False, **kw
) -> ImportStats:
    """What ``kaizen ingest`` does: parse the whole file, then import it in one transaction."""
    result = parse_traces(path, skip_invalid=skip_invalid, **kw)
    stats = store.import_traces(result.traces, path=str(path), default_task=task, skip_invalid=skip_invalid)
    stats.invalid += len(result.invalid)
    return stats


def write_jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def line(text: str, output: str = "balance", **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": text}], "output": output, **extra}


# --- workspace ----------------------------------------------------------------------------------


def test_init_twice_is_safe(tmp_path: Path) -> None:
    ws, created = init_workspace(tmp_path)
    assert created
    assert (tmp_path / ".kaizen" / "kaizen.db").exists()
    assert (tmp_path / ".kaizen" / "artifacts").is_dir()
    edited = ws.config_path.read_text() + "# my own note\n"
    ws.config_path.write_text(edited)

    ws2, created2 = init_workspace(tmp_path)
    assert not created2
    assert ws2.config_path.read_text() == edited, "kaizen.yaml must never be overwritten"
    store = Store(ws2.db_url)
    versions = store.list_model_versions()
    assert [v.name for v in versions] == ["base"]
    assert versions[0].kind == "base" and versions[0].base_ref == "smollm2-135m"
    store.close()


def test_new_task_starts_at_base(store: Store) -> None:
    assert store.get_alias("intents", "production").model_version == "base"
    assert store.get_alias("intents", "previous") is None
    assert [e.action for e in store.alias_history("intents")] == ["init"]
    with pytest.raises(ConfigError, match="already exists"):
        store.add_task(INTENTS)
    with pytest.raises(NotFoundError, match="unknown task 'nope'"):
        store.get_task("nope")


# --- trace import -------------------------------------------------------------------------------


def test_import_kaizen_fixture(store: Store) -> None:
    stats = ingest(store, FIX / "kaizen_small.jsonl")
    assert (stats.imported, stats.duplicates, stats.invalid) == (6, 0, 0)
    assert (stats.failures, stats.passes, stats.unlabeled) == (2, 3, 1)
    assert stats.feedback_added == 5
    c = counts(store)
    assert (c["trace"], c["feedback"]) == (6, 5)

    views = {v.id: v for v in store.traces("intents")}
    assert list(views) == ["t-001", "t-002", "t-003", "t-004", "t-005", "t-006"]  # oldest first
    t3 = views["t-003"]
    assert (t3.verdict, t3.correction, t3.gold) == ("fail", "card_declined", "card_declined")
    assert views["t-004"].verdict is None and views["t-004"].gold is None
    assert views["t-005"].messages[1]["content"] == "Payment declined again.\nSee the receipt."
    assert views["t-001"].metadata == {"channel": "app"}
    assert views["t-006"].feedback_source == "judge"


def test_reimport_imports_nothing_new(store: Store) -> None:
    ingest(store, FIX / "kaizen_small.jsonl")
    before = counts(store)
    again = ingest(store, FIX / "kaizen_small.jsonl")
    assert (again.imported, again.duplicates, again.feedback_added) == (0, 6, 0)
    assert (again.failures, again.passes, again.unlabeled) == (0, 0, 0)
    assert counts(store) == before


def test_import_openai_fixture(store: Store) -> None:
    stats = ingest(store, FIX / "openai_chat_small.jsonl", task="intents")
    assert (stats.imported, stats.duplicates, stats.invalid) == (4, 0, 0)
    assert (stats.failures, stats.passes, stats.unlabeled) == (1, 1, 2)
    views = store.traces("intents")
    assert len(views) == 4
    by_output = {v.messages[-1]["content"]: v for v in views}
    v = by_output["transfer 50 to Anna"]  # content parts flattened
    assert v.model_version == "gpt-4o-mini" and v.verdict == "pass"
    assert by_output["Hello, is anyone there?"].model_version == "intents-prod-2025-03"
    assert ingest(store, FIX / "openai_chat_small.jsonl", task="intents").duplicates == 4


def test_openai_fixture_without_default_task_is_refused_whole(store: Store) -> None:
    before = counts(store)
    with pytest.raises(LogFormatError) as ei:
        ingest(store, FIX / "openai_chat_small.jsonl")
    assert ei.value.line == 4 and ei.value.field == "task"
    assert "--task" in str(ei.value)
    assert counts(store) == before


def make_50mb_line(tmp_path: Path) -> Path:
    path = tmp_path / "huge.jsonl"
    with path.open("w") as f:
        f.write(json.dumps(line("fine", task="intents", id="h-1")) + "\n")
        f.write('{"task": "intents", "output": "x", "messages": [{"role": "user", "content": "')
        chunk = "x" * (1024 * 1024)
        for _ in range(50):
            f.write(chunk)
        f.write('"}]}\n')
        f.write(json.dumps(line("after", task="intents", id="h-3")) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "lineno", "field", "problem"),
    [
        ("bad_json.jsonl", 2, "<json>", "invalid JSON"),
        ("missing_messages.jsonl", 3, "messages", "Field required"),
        ("bad_verdict.jsonl", 3, "feedback.verdict", "'pass' or 'fail'"),
        ("empty.jsonl", 0, "<file>", "empty"),
        ("huge", 2, "<line>", "longer than 16 MiB"),
    ],
)
def test_malformed_file_raises_and_leaves_db_unchanged(
    store: Store, tmp_path: Path, name: str, lineno: int, field: str, problem: str
) -> None:
    ingest(store, FIX / "kaizen_small.jsonl")  # something to keep intact
    before = counts(store)
    path = make_50mb_line(tmp_path) if name == "huge" else FIX / name
    with pytest.raises(LogFormatError) as ei:
        ingest(store, path)
    err = ei.value
    assert (err.line, err.field) == (lineno, field)
    assert problem in err.problem
    assert str(err).startswith(f"{path}:{lineno}: {field}: ")
    assert len(str(err)) < 500  # never echoes the offending line back
    assert counts(store) == before


def test_skip_invalid_imports_the_good_lines(store: Store) -> None:
    stats = ingest(store, FIX / "missing_messages.jsonl", skip_invalid=True)
    assert (stats.imported, stats.invalid) == (3, 1)
    assert {v.id for v in store.traces("intents")} == {"g-1", "g-2", "g-4"}


def test_unknown_task_aborts_whole_file(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        line("a", task="intents", id="m-1"),
        line("b", task="intents", id="m-2"),
        line("c", task="refunds", id="m-3"),
        line("d", task="intents", id="m-4"),
    )
    before = counts(store)
    with pytest.raises(LogFormatError) as ei:
        ingest(store, path)
    assert (ei.value.line, ei.value.field) == (3, "task")
    assert "unknown task 'refunds'" in str(ei.value)
    assert "kaizen task add refunds" in str(ei.value)
    assert counts(store) == before, "lines before the bad one must not be written either"

    stats = store.import_traces(
        parse_traces(path).traces, path=str(path), default_task=None, skip_invalid=True
    )
    assert (stats.imported, stats.invalid) == (3, 1)
    assert len(stats.errors) == 1 and f"{path}:3: task:" in stats.errors[0]
    assert {v.id for v in store.traces("intents")} == {"m-1", "m-2", "m-4"}


def test_line_task_wins_over_default_and_missing_task_is_an_error(store: Store, tmp_path: Path) -> None:
    store.add_task(TaskSpec(name="sums", kind="math"))
    path = write_jsonl(tmp_path / "t.jsonl", line("a", task="sums"), line("b"))
    stats = ingest(store, path, task="intents")
    assert stats.imported == 2
    assert len(store.traces("sums")) == 1 and len(store.traces("intents")) == 1

    lone = write_jsonl(tmp_path / "lone.jsonl", line("zzz"))
    with pytest.raises(LogFormatError, match="no task given"):
        ingest(store, lone)


def test_identical_content_different_timestamps_are_two_traces(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "retries.jsonl",
        line("same", task="intents", timestamp="2025-03-01T09:00:00Z"),
        line("same", task="intents", timestamp="2025-03-01T09:00:05Z"),
        line("same", task="intents", timestamp="2025-03-01T09:00:05Z"),  # the very same record again
    )
    stats = ingest(store, path)
    assert (stats.imported, stats.duplicates) == (2, 1)
    ids = [v.id for v in store.traces("intents")]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert ingest(store, path).imported == 0  # content ids are stable across runs


# --- feedback -----------------------------------------------------------------------------------


def test_feedback_file_attaches_and_latest_counts(store: Store) -> None:
    ingest(store, FIX / "kaizen_small.jsonl")
    path = FIX / "feedback_small.jsonl"
    stats = store.add_feedback(parse_feedback(path).items, path=str(path))
    assert (stats.feedback_added, stats.duplicates, stats.invalid) == (3, 0, 0)
    assert (stats.failures, stats.passes) == (1, 2)
    views = {v.id: v for v in store.traces("intents")}
    assert (views["t-002"].verdict, views["t-002"].correction) == ("fail", "balance")  # was pass
    assert views["t-004"].verdict == "pass"  # was unlabeled
    assert (views["t-006"].verdict, views["t-006"].feedback_source) == ("pass", "judge")
    assert counts(store)["feedback"] == 8, "history is kept: 5 from the traces + 3 new"

    again = store.add_feedback(parse_feedback(path).items, path=str(path))
    assert (again.feedback_added, again.duplicates) == (0, 3)
    assert counts(store)["feedback"] == 8


def test_newer_feedback_wins(store: Store, tmp_path: Path) -> None:
    ingest(store, FIX / "kaizen_small.jsonl")
    first = write_jsonl(
        tmp_path / "f1.jsonl", {"trace_id": "t-004", "verdict": "fail", "correction": "balance"}
    )
    second = write_jsonl(
        tmp_path / "f2.jsonl", {"trace_id": "t-004", "verdict": "pass", "reason": "second look"}
    )
    store.add_feedback(parse_feedback(first).items, path=str(first))
    assert store.traces("intents", ids=["t-004"])[0].verdict == "fail"
    store.add_feedback(parse_feedback(second).items, path=str(second))
    (v,) = store.traces("intents", ids=["t-004"])
    assert (v.verdict, v.reason, v.correction) == ("pass", "second look", None)
    with Session(store.engine) as s:
        assert len(s.exec(select(FeedbackRow).where(FeedbackRow.trace_id == "t-004")).all()) == 2


def test_feedback_for_unknown_trace_names_the_line(store: Store, tmp_path: Path) -> None:
    ingest(store, FIX / "kaizen_small.jsonl")
    path = write_jsonl(
        tmp_path / "fb.jsonl",
        {"trace_id": "t-001", "verdict": "fail", "correction": "transfer"},
        {"trace_id": "t-999", "verdict": "pass"},
    )
    before = counts(store)
    with pytest.raises(LogFormatError) as ei:
        store.add_feedback(parse_feedback(path).items, path=str(path))
    assert str(ei.value).startswith(f"{path}:2: trace_id: ")
    assert "t-999" in str(ei.value)
    assert counts(store) == before, "one transaction: the good first line is not written either"

    stats = store.add_feedback(parse_feedback(path).items, path=str(path), skip_invalid=True)
    assert (stats.feedback_added, stats.invalid) == (1, 1)
    assert store.traces("intents", ids=["t-001"])[0].verdict == "fail"


def test_feedback_with_unknown_verdict_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "fb.jsonl", {"trace_id": "t-001", "verdict": "meh"})
    with pytest.raises(LogFormatError) as ei:
        parse_feedback(path)
    assert (ei.value.line, ei.value.field) == (1, "verdict")


# --- statistics ---------------------------------------------------------------------------------


def test_trace_stats(store: Store) -> None:
    empty = store.trace_stats("intents")
    assert (empty["traces"], empty["failure_rate"]) == (0, None)

    ingest(store, FIX / "kaizen_small.jsonl")
    st = store.trace_stats("intents")
    assert st["task"] == "intents"
    assert (st["traces"], st["passes"], st["failures"], st["unlabeled"]) == (6, 3, 2, 1)
    assert st["failure_rate"] == pytest.approx(0.4)
    assert st["failures_without_correction"] == 0
    assert st["gold_labels"] == {"balance": 2, "card_declined": 2, "transfer": 1}
    assert st["outputs"] == {"transfer": 3, "balance": 2, "card_declined": 1}

    fb = FIX / "feedback_small.jsonl"
    store.add_feedback(parse_feedback(fb).items, path=str(fb))
    st = store.trace_stats("intents")
    assert (st["passes"], st["failures"], st["unlabeled"]) == (4, 2, 0)
    assert st["failure_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert st["gold_labels"] == {"balance": 2, "card_declined": 2, "transfer": 2}


# --- SQLite settings and schema checks ----------------------------------------------------------


@pytest.mark.parametrize("kaizen_db", ["sqlite"], indirect=True)
def test_sqlite_pragmas_in_force(store: Store) -> None:
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError), Session(store.engine) as s:
        s.add(TraceRow(id="orphan", task="no-such-task", messages=[], output="x"))
        s.commit()
    assert counts(store)["trace"] == 0


def test_foreign_database_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    url = f"sqlite:///{db}"
    for create in (False, True):
        with pytest.raises(WorkspaceError, match="not a kaizen database"):
            Store(url, create=create)
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables == {"users"}, "kaizen must not add its tables to someone else's database"


def test_empty_database_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="kaizen init"):
        Store(f"sqlite:///{tmp_path / 'new.db'}")


@pytest.mark.parametrize(("version", "hint"), [(0, "predates"), (SCHEMA_VERSION + 1, "upgrade kaizen")])
def test_other_schema_version_refused(tmp_path: Path, version: int, hint: str) -> None:
    ws, _ = init_workspace(tmp_path)
    db = ws.state / "kaizen.db"
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    con.commit()
    con.close()
    for create in (False, True):
        with pytest.raises(WorkspaceError) as ei:
            Store(ws.db_url, create=create)
        msg = str(ei.value)
        assert f"schema v{version}" in msg and f"expects v{SCHEMA_VERSION}" in msg
        assert hint in msg


def test_a_v1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """v2 only added tables (source_cursor, tick): an older workspace keeps its data and gains them."""
    ws, _ = init_workspace(tmp_path)
    ws.store.add_task(TaskSpec(name="t", kind="classification", labels=["a", "b"]))
    ws.store.close()
    con = sqlite3.connect(ws.state / "kaizen.db")
    con.execute("DROP TABLE tick")
    con.execute("DROP TABLE source_cursor")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    store = Store(ws.db_url)
    assert store.get_task("t").labels == ["a", "b"] and store.list_ticks() == []
    con = sqlite3.connect(ws.state / "kaizen.db")
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    con.close()
