"""One job per task: ``task_lock()``, a lock row in the store held for the whole life of a job.

A job (a repair, a cold start, a naive run, a scheduled tick and the repair it drives) takes its
task's lock once, with ``with task_lock(store, task, job_id):``, and keeps it until the block ends.
The row records the holder: job id, pid, the process's start time and host id. While the block
runs, a background thread refreshes the row's heartbeat, however long a node or a trainer takes.

Who may take a lock over:

* a holder on **this host** is alive while its pid runs *and* started at the recorded time — so
  neither a silent but live job (a 40-minute training step) nor a pid reused by an unrelated
  process is misjudged. Its heartbeat is not consulted.
* a holder on **another host** (``tools.proc.host_id``: the host name or ``$KAIZEN_HOST_ID``) can
  only be judged by its heartbeat: none for ``$KAIZEN_LOCK_STALE_AFTER_S`` (600 s) means stale.

A stale lock is taken over with a message saying whose and why; a live one is refused with
``LockedError``. Within one thread the lock is re-entrant: a tick that holds it can run or resume a
repair, whose own ``task_lock`` then joins the tick's (the outermost block releases it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kaizen.tools.env import env
from kaizen.tools.errors import LockedError
from kaizen.tools.proc import host_id, pid_alive, process_start
from kaizen.tools.store import Store
from kaizen.tools.store.tables import LockRow

log = logging.getLogger(__name__)


@dataclass
class TaskLock:
    """A held task lock: what ``task_lock`` yields."""

    store: Store
    task: str
    job_id: str
    lost: threading.Event = field(default_factory=threading.Event)  # set if another job took the row away
    _stop: threading.Event = field(default_factory=threading.Event)
    _owner: int = field(default_factory=threading.get_ident)


_held: dict[tuple[str, str], TaskLock] = {}  # (store url, task) -> the lock a thread of this process holds
_held_guard = threading.Lock()


@contextmanager
def task_lock(store: Store, task: str, job_id: str) -> Iterator[TaskLock]:
    """Hold ``task``'s lock for ``job_id`` while the block runs, with a heartbeat thread; or raise LockedError.

    Entered again by the thread that holds it (whatever the job id), it yields the held lock and
    leaves releasing it to the outer block. If another job takes the row away (only a holder on
    another host can judge us stale, after our heartbeats failed for the stale limit), the lock's
    ``lost`` event is set and, in the main thread, the job is interrupted like Ctrl-C: two jobs
    must never work on one task, and ``kaizen runs resume`` continues an interrupted run.
    """
    key = (store.url, task)
    with _held_guard:
        held = _held.get(key)
    if held is not None and held._owner == threading.get_ident():
        yield held
        return
    every = env().lock_heartbeat_s  # a bad setting fails here, before anything is held
    acquire(store, task, job_id)
    lk = TaskLock(store, task, job_id)
    with _held_guard:
        _held[key] = lk
    beat = threading.Thread(
        target=_beat_until_stopped, args=(lk, every), name=f"kaizen-lock-{task}", daemon=True
    )
    beat.start()
    try:
        yield lk
    finally:
        lk._stop.set()
        beat.join()
        with _held_guard:
            _held.pop(key, None)
        release(store, task, job_id)


def _beat_until_stopped(lk: TaskLock, every: float) -> None:
    while not lk._stop.wait(every):
        try:
            mine = heartbeat(lk.store, lk.task, lk.job_id)
        except Exception:  # a busy or unreachable database must not kill the job: the next beat retries
            log.warning("task lock %s: heartbeat failed, retrying in %gs", lk.task, every, exc_info=True)
            continue
        if not mine:
            lk.lost.set()
            log.error(
                "task lock %s: job %s no longer holds it (another host took it over as stale); stopping the job",
                lk.task,
                lk.job_id,
            )
            if (
                lk._owner == threading.main_thread().ident
            ):  # a real SIGINT also wakes a sleeping or waiting job
                signal.pthread_kill(lk._owner, signal.SIGINT)
            return


def _stale(row: LockRow) -> str | None:
    """Why the holder of ``row`` is gone, or None while it may still be working."""
    if row.host == host_id():
        if not pid_alive(row.pid):
            return f"its process {row.pid} is gone"
        if row.proc_start is not None:
            now = process_start(row.pid)
            if now is not None and now != row.proc_start:
                return f"its process {row.pid} is gone (the pid now belongs to another process)"
            return None
        # A row written before v4 (no start time): the older rule, pid plus heartbeat.
    beat = row.heartbeat if row.heartbeat.tzinfo else row.heartbeat.replace(tzinfo=UTC)
    limit = env().lock_stale_after_s
    if datetime.now(UTC) - beat > timedelta(seconds=limit):
        return f"no heartbeat since {beat.isoformat(timespec='seconds')} (over {limit:g}s)"
    return None


def acquire(store: Store, task: str, job_id: str) -> None:
    """Write the lock row for ``job_id`` in this process, taking over a stale holder; or raise LockedError.

    The building block of ``task_lock`` (jobs use that: it also heartbeats and releases). A row left
    by this very process for the same job id is simply replaced. A stale row is replaced only if it
    is still the one we judged: two processes that find the same stale lock at once cannot both
    take it over (the second replaces nothing and is refused).
    """
    me, started, here = os.getpid(), process_start(os.getpid()), host_id()
    row = store.get_lock(task)
    why = None
    if row is not None and (row.run_id, row.pid, row.host, row.proc_start) != (job_id, me, here, started):
        why = _stale(row)
        if why is None:
            raise LockedError(
                f"task {task!r} is busy: run {row.run_id} (pid {row.pid} on {row.host}) holds its lock; "
                f"wait for it or stop it (`kaizen runs list --task {task}`)"
            )
    if not store.take_lock(
        LockRow(task=task, run_id=job_id, pid=me, host=here, proc_start=started), replacing=row
    ):
        raise LockedError(f"task {task!r} is busy: another run took its lock a moment ago")
    if row is not None and why is not None:
        log.warning("took over the stale lock of run %s on %r (%s)", row.run_id, task, why)


def heartbeat(store: Store, task: str, job_id: str) -> bool:
    """Refresh the heartbeat of the row this process holds for ``job_id``; False if it is not ours any more."""
    return store.beat_lock(task, job_id, os.getpid(), host_id())


def release(store: Store, task: str, job_id: str) -> None:
    """Delete the row this process holds for ``job_id`` (a row another process took over is left alone)."""
    store.drop_lock(task, job_id, os.getpid(), host_id())


def holder(store: Store, task: str) -> LockRow | None:
    """The row of whoever holds ``task``'s lock now (None: free)."""
    return store.get_lock(task)
