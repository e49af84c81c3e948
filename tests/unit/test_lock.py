"""One run per task: the lock in the store (real SQLite in a fresh workspace), its refusal message,
re-entry, stale-lock takeover (dead pid, old heartbeat), release, and the takeover race."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from kaizen.tools import lock
from kaizen.tools.errors import LockedError
from kaizen.tools.store import Store
from kaizen.tools.store.tables import LockRow, utcnow
from kaizen.tools.workspace import init_workspace


@pytest.fixture
def store(tmp_path: Path) -> Store:
    ws, _ = init_workspace(tmp_path / "ws")
    s = ws.store
    yield s
    s.close()


def holder(store: Store, task: str = "intents") -> LockRow | None:
    with store.session() as s:
        return s.get(LockRow, task)


def set_lock(store: Store, task: str = "intents", **fields) -> None:  # noqa: ANN003
    """Rewrite the lock row as another process would have left it."""
    with store.session() as s:
        row = s.get(LockRow, task)
        for k, v in fields.items():
            setattr(row, k, v)
        s.add(row)


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_acquire_records_run_pid_host_and_heartbeat(store: Store) -> None:
    before = utcnow()
    lock.acquire(store, "intents", "run-a")
    row = holder(store)
    assert row is not None
    assert (row.run_id, row.pid, row.host) == ("run-a", os.getpid(), socket.gethostname())
    beat = row.heartbeat if row.heartbeat.tzinfo else row.heartbeat.replace(tzinfo=before.tzinfo)
    assert beat >= before - timedelta(seconds=1)


def test_second_run_on_the_same_task_is_refused_naming_the_holder(store: Store) -> None:
    lock.acquire(store, "intents", "run-a")
    with pytest.raises(LockedError) as e:
        lock.acquire(store, "intents", "run-b")
    msg = str(e.value)
    assert "run-a" in msg and str(os.getpid()) in msg and socket.gethostname() in msg and "intents" in msg
    assert e.value.exit_code == 4
    assert holder(store).run_id == "run-a"
    with pytest.raises(LockedError):
        lock.acquire_safely(store, "intents", "run-b")


def test_other_tasks_are_independent(store: Store) -> None:
    lock.acquire(store, "intents", "run-a")
    lock.acquire(store, "faq", "run-b")
    assert holder(store, "intents").run_id == "run-a" and holder(store, "faq").run_id == "run-b"


def test_the_same_run_re_acquires(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    lock.acquire(store, "intents", "run-a")
    set_lock(store, pid=1, heartbeat=utcnow() - timedelta(minutes=5))  # e.g. resumed by a new process
    lock.acquire(store, "intents", "run-a")
    row = holder(store)
    assert row.run_id == "run-a" and row.pid == os.getpid()
    assert "stale" not in capsys.readouterr().err


def test_a_lock_held_by_a_dead_pid_on_this_host_is_taken_over(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    lock.acquire(store, "intents", "run-dead")
    pid = dead_pid()
    set_lock(store, pid=pid)
    lock.acquire(store, "intents", "run-b")
    assert holder(store).run_id == "run-b" and holder(store).pid == os.getpid()
    err = capsys.readouterr().err
    assert "stale lock" in err and "run-dead" in err and f"process {pid} is gone" in err


def test_a_dead_pid_on_another_host_is_not_judged_by_pid(store: Store) -> None:
    lock.acquire(store, "intents", "run-remote")
    set_lock(store, pid=dead_pid(), host="some-other-host")
    with pytest.raises(LockedError, match="run-remote"):
        lock.acquire(store, "intents", "run-b")


def test_an_old_heartbeat_is_taken_over(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    lock.acquire(store, "intents", "run-hung")
    set_lock(store, host="some-other-host", heartbeat=utcnow() - timedelta(hours=1))
    lock.acquire(store, "intents", "run-b")
    assert holder(store).run_id == "run-b"
    err = capsys.readouterr().err
    assert "stale lock" in err and "run-hung" in err and "no heartbeat since" in err


def test_an_old_heartbeat_of_a_live_local_process_is_taken_over_too(store: Store) -> None:
    lock.acquire(store, "intents", "run-hung")
    set_lock(store, heartbeat=utcnow() - timedelta(hours=1))  # our own pid: alive, but silent for an hour
    lock.acquire(store, "intents", "run-b")
    assert holder(store).run_id == "run-b"


def test_heartbeat_keeps_a_lock_fresh(store: Store) -> None:
    lock.acquire(store, "intents", "run-a")
    set_lock(store, host="some-other-host", heartbeat=utcnow() - timedelta(seconds=lock.STALE_AFTER_S - 5))
    lock.heartbeat(store, "intents", "run-a")
    lock.heartbeat(store, "intents", "run-other")  # not the holder: no effect, no error
    with pytest.raises(LockedError):
        lock.acquire(store, "intents", "run-b")


def test_release_only_releases_own_lock(store: Store) -> None:
    lock.acquire(store, "intents", "run-a")
    lock.release(store, "intents", "run-b")
    assert holder(store).run_id == "run-a"
    lock.release(store, "intents", "run-a")
    assert holder(store) is None
    lock.release(store, "intents", "run-a")  # releasing twice is harmless
    lock.acquire(store, "intents", "run-b")
    assert holder(store).run_id == "run-b"


def test_lock_is_shared_across_store_connections(store: Store) -> None:
    lock.acquire(store, "intents", "run-a")
    other = Store(store.url)
    try:
        with pytest.raises(LockedError):
            lock.acquire(other, "intents", "run-b")
    finally:
        other.close()


def test_two_runs_taking_over_the_same_stale_lock_cannot_both_win(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    lock.acquire(store, "intents", "run-dead")
    set_lock(store, pid=dead_pid())
    other = Store(store.url)
    real_stale = lock._stale

    def racing_stale(row: LockRow) -> str | None:
        # run-b looks at the stale row; meanwhile run-c (another process) takes it over
        why = real_stale(row)
        monkeypatch.setattr(lock, "_stale", real_stale)
        lock.acquire(other, "intents", "run-c")
        return why

    monkeypatch.setattr(lock, "_stale", racing_stale)
    try:
        with pytest.raises(LockedError, match="a moment ago"):
            lock.acquire_safely(store, "intents", "run-b")
    finally:
        other.close()
    assert holder(store).run_id == "run-c"


def test_transfer_hands_the_lock_over_without_a_gap(store: Store) -> None:
    lock.acquire(store, "intents", "tick-1")
    lock.transfer(store, "intents", "tick-1", "run-1")
    assert holder(store).run_id == "run-1"
    with pytest.raises(LockedError):
        lock.transfer(store, "intents", "tick-1", "run-2")
    lock.acquire(store, "intents", "run-1")  # re-entrant for the new holder
