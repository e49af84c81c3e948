"""One job per task: ``task_lock`` on a real SQLite workspace — refusal, release, re-entry, the
heartbeat thread of a job longer than the stale limit, takeover of dead holders and reused pids,
the rules for holders on other hosts, the takeover race, a lock lost to another host, and the
additive upgrade that gives old databases the lock's new column."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from kaizen.tools import lock
from kaizen.tools.errors import ConfigError, LockedError
from kaizen.tools.lock import task_lock
from kaizen.tools.proc import host_id, process_start
from kaizen.tools.store import Store
from kaizen.tools.store.tables import SCHEMA_VERSION, LockRow, utcnow
from kaizen.tools.workspace import init_workspace

T = "intents"


@pytest.fixture(autouse=True)
def _lock_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAIZEN_HOST_ID", "KAIZEN_LOCK_STALE_AFTER_S", "KAIZEN_LOCK_HEARTBEAT_S"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def store(tmp_path: Path, kaizen_db: str | None) -> Store:
    """A workspace's store on SQLite, and again on PostgreSQL (``kaizen_db``)."""
    ws, _ = init_workspace(tmp_path / "ws")
    yield ws.store
    ws.store.close()


def set_lock(store: Store, **fields) -> None:
    """Rewrite the lock row as another process would have left it."""
    with store.session() as s:
        row = s.get(LockRow, T)
        for k, v in fields.items():
            setattr(row, k, v)
        s.add(row)


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def try_from_another_process(store: Store, **env: str) -> subprocess.CompletedProcess[str]:
    """``task_lock`` attempted by a second process (optionally claiming another host id)."""
    code = (
        "import sys; from kaizen.tools.store import Store; from kaizen.tools.lock import task_lock\n"
        "from kaizen.tools.errors import LockedError\n"
        "try:\n"
        f"    with task_lock(Store({store.url!r}), {T!r}, 'second'): print('acquired')\n"
        "except LockedError as e: print(e); sys.exit(4)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | env,
    )


def test_the_lock_records_the_holder_and_lives_as_long_as_the_block(store: Store) -> None:
    before = utcnow()
    with task_lock(store, T, "run-a") as held:
        row = lock.holder(store, T)
        assert (row.run_id, row.pid, row.host, row.proc_start) == (
            "run-a",
            os.getpid(),
            host_id(),
            process_start(os.getpid()),
        )
        assert row.heartbeat.replace(tzinfo=before.tzinfo) >= before - timedelta(seconds=1)
        assert held.job_id == "run-a" and not held.lost.is_set()
    assert lock.holder(store, T) is None
    with pytest.raises(RuntimeError), task_lock(store, T, "run-b"):
        raise RuntimeError("the job failed")
    assert lock.holder(store, T) is None  # released on any exit


def test_another_thread_or_process_is_refused(store: Store) -> None:
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            with task_lock(store, T, "run-b"):
                pass
        except LockedError as e:
            errors.append(e)

    with task_lock(store, T, "run-a"):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        out = try_from_another_process(store)
    (err,) = errors
    msg = str(err)
    assert (
        "busy" in msg
        and "run-a" in msg
        and str(os.getpid()) in msg
        and host_id() in msg
        and err.exit_code == 4
    )
    assert out.returncode == 4 and "run-a" in out.stdout
    assert lock.holder(store, T) is None


def test_other_tasks_are_independent(store: Store) -> None:
    with task_lock(store, T, "run-a"), task_lock(store, "faq", "run-b"):
        assert lock.holder(store, T).run_id == "run-a" and lock.holder(store, "faq").run_id == "run-b"


def test_the_holding_thread_re_enters_and_only_the_outer_block_releases(store: Store) -> None:
    with task_lock(store, T, "tick-1") as outer:
        with task_lock(
            store, T, "run-7"
        ) as inner:  # a tick resuming a repair: it works under the tick's lock
            assert inner is outer and lock.holder(store, T).run_id == "tick-1"
        assert lock.holder(store, T).run_id == "tick-1"
    assert lock.holder(store, T) is None


def test_a_job_longer_than_the_stale_limit_keeps_its_lock(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat comes from a thread, not from the job: a silent 'node' of 1.5 s against a 0.5 s limit."""
    monkeypatch.setenv("KAIZEN_LOCK_STALE_AFTER_S", "0.5")
    monkeypatch.setenv("KAIZEN_LOCK_HEARTBEAT_S", "0.1")
    with task_lock(store, T, "long-run"):
        first = lock.holder(store, T).heartbeat
        time.sleep(1.5)  # the job does nothing lock-related for 3 stale limits
        assert lock.holder(store, T).heartbeat > first
        here = try_from_another_process(store)
        remote = try_from_another_process(store, KAIZEN_HOST_ID="another-host")
    assert here.returncode == 4 and "long-run" in here.stdout, here.stdout + here.stderr
    assert remote.returncode == 4 and "long-run" in remote.stdout, remote.stdout + remote.stderr


def test_a_live_local_holder_is_not_judged_by_its_heartbeat(store: Store) -> None:
    lock.acquire(store, T, "run-quiet")
    set_lock(store, heartbeat=utcnow() - timedelta(hours=5))  # e.g. a machine suspended for hours
    with pytest.raises(LockedError, match="run-quiet"), task_lock(Store(store.url), T, "run-b"):
        pass


def test_a_dead_holder_is_taken_over(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    lock.acquire(store, T, "run-dead")
    pid = dead_pid()
    set_lock(store, pid=pid)
    with task_lock(store, T, "run-b"):
        assert lock.holder(store, T).run_id == "run-b"
    err = caplog.text
    assert "stale lock" in err and "run-dead" in err and f"process {pid} is gone" in err


def test_a_reused_pid_does_not_hold_the_task(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """The recorded pid is alive, but it is another process now (its start time differs)."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.acquire(store, T, "run-old")
        boot, ticks = process_start(sleeper.pid).rsplit(":", 1)
        set_lock(store, pid=sleeper.pid, proc_start=f"{boot}:{int(ticks) - 1000}")
        with task_lock(store, T, "run-b"):
            assert lock.holder(store, T).run_id == "run-b"
        assert "pid now belongs to another process" in caplog.text
        # … while the same pid with its true start time holds it.
        lock.acquire(store, T, "run-old")
        set_lock(store, pid=sleeper.pid, proc_start=process_start(sleeper.pid))
        with pytest.raises(LockedError, match="run-old"), task_lock(store, T, "run-c"):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_holder_on_another_host_is_judged_by_its_heartbeat_only(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    lock.acquire(store, T, "run-remote")
    set_lock(store, pid=dead_pid(), host="other-host")  # its pid means nothing here
    with pytest.raises(LockedError, match="run-remote"), task_lock(store, T, "run-b"):
        pass
    set_lock(store, heartbeat=utcnow() - timedelta(seconds=601))
    with task_lock(store, T, "run-b"):
        assert lock.holder(store, T).run_id == "run-b"
    assert "no heartbeat since" in caplog.text


def test_a_row_from_before_v4_keeps_the_old_rules(store: Store) -> None:
    """No start time recorded: alive by pid, and stale after the heartbeat limit."""
    lock.acquire(store, T, "run-legacy")
    set_lock(store, proc_start=None)
    with pytest.raises(LockedError), task_lock(Store(store.url), T, "run-b"):
        pass
    set_lock(store, heartbeat=utcnow() - timedelta(hours=1))
    with task_lock(Store(store.url), T, "run-b"):
        assert lock.holder(store, T).run_id == "run-b"


def test_two_jobs_taking_over_the_same_stale_lock_cannot_both_win(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock.acquire(store, T, "run-dead")
    set_lock(store, pid=dead_pid())
    other = Store(store.url)
    real_stale = lock._stale

    def racing_stale(row: LockRow) -> str | None:
        # run-b judges the stale row; meanwhile run-c (another process) takes it over
        why = real_stale(row)
        monkeypatch.setattr(lock, "_stale", real_stale)
        lock.acquire(other, T, "run-c")
        return why

    monkeypatch.setattr(lock, "_stale", racing_stale)
    try:
        with pytest.raises(LockedError, match="a moment ago"), task_lock(store, T, "run-b"):
            pass
    finally:
        other.close()
    assert lock.holder(store, T).run_id == "run-c"


def test_a_lock_taken_away_interrupts_the_job(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another host judged us stale (our heartbeats failed): the job stops instead of running twice."""
    monkeypatch.setenv("KAIZEN_LOCK_HEARTBEAT_S", "0.1")
    with pytest.raises(KeyboardInterrupt), task_lock(store, T, "run-a") as held:
        set_lock(store, run_id="run-elsewhere", host="other-host")
        deadline = time.time() + 60  # a loaded CI machine may be slow to beat; the interrupt ends the wait
        while time.time() < deadline:
            time.sleep(0.05)
    assert held.lost.is_set() and lock.holder(store, T).run_id == "run-elsewhere"  # theirs is left alone


def test_lock_settings_are_checked(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_LOCK_HEARTBEAT_S", "400")
    with pytest.raises(ConfigError, match="KAIZEN_LOCK_HEARTBEAT_S"), task_lock(store, T, "run-a"):
        pass
    monkeypatch.setenv("KAIZEN_LOCK_HEARTBEAT_S", "soon")
    with pytest.raises(ConfigError, match="KAIZEN_LOCK_HEARTBEAT_S"), task_lock(store, T, "run-a"):
        pass
    assert lock.holder(store, T) is None


def test_a_v3_database_gains_the_start_time_column_in_place(tmp_path: Path) -> None:
    """v4 only adds task_lock.proc_start: the store's additive upgrade adds it, a held lock survives."""
    ws, _ = init_workspace(tmp_path)
    ws.store.close()
    con = sqlite3.connect(ws.state / "kaizen.db")
    con.execute("DROP TABLE task_lock")
    con.execute(
        "CREATE TABLE task_lock (task VARCHAR NOT NULL PRIMARY KEY, run_id VARCHAR NOT NULL, pid INTEGER NOT NULL, "
        "host VARCHAR NOT NULL, heartbeat DATETIME NOT NULL)"
    )
    con.execute(
        "INSERT INTO task_lock VALUES ('intents', 'run-old', ?, ?, ?)",
        (os.getpid(), host_id(), utcnow().replace(tzinfo=None).isoformat(sep=" ")),
    )
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    store = Store(ws.db_url)
    try:
        row = lock.holder(store, T)
        assert (row.run_id, row.proc_start) == ("run-old", None)
        with pytest.raises(LockedError, match="run-old"):  # a live local pid, an old row: still held
            lock.acquire(store, T, "run-b")
    finally:
        store.close()
    con = sqlite3.connect(ws.state / "kaizen.db")
    assert "proc_start" in {r[1] for r in con.execute("PRAGMA table_info(task_lock)")}
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    con.close()
