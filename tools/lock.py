"""One run per task: a lock row in the store with the holder's pid, host and a heartbeat.

A second run on the same task is refused. A lock whose holder is gone (dead pid on this host, or
no heartbeat for ``STALE_AFTER_S``) is taken over, with a message saying so.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from tools.errors import LockedError
from tools.store import Store
from tools.store.tables import LockRow, utcnow
from tools.train.launch import pid_alive

STALE_AFTER_S = 600


def _stale(row: LockRow) -> str | None:
    beat = row.heartbeat if row.heartbeat.tzinfo else row.heartbeat.replace(tzinfo=UTC)
    if row.host == socket.gethostname() and not pid_alive(row.pid):
        return f"its process {row.pid} is gone"
    if datetime.now(UTC) - beat > timedelta(seconds=STALE_AFTER_S):
        return f"no heartbeat since {beat.isoformat(timespec='seconds')}"
    return None


def acquire(store: Store, task: str, run_id: str) -> None:
    """Take the task's lock for ``run_id`` (re-entrant for the same run) or raise LockedError."""
    with store.session() as s:
        row = s.get(LockRow, task)
        if row is not None and row.run_id != run_id:
            why = _stale(row)
            if why is None:
                raise LockedError(
                    f"task {task!r} is busy: run {row.run_id} (pid {row.pid} on {row.host}) holds its lock; "
                    f"wait for it or stop it (`kaizen runs list --task {task}`)"
                )
            print(f"kaizen: taking over the stale lock of run {row.run_id} on {task!r} ({why})", file=sys.stderr)
            s.delete(row)
            s.flush()
        elif row is not None:
            s.delete(row)
            s.flush()
        s.add(LockRow(task=task, run_id=run_id, pid=os.getpid(), host=socket.gethostname()))


def acquire_safely(store: Store, task: str, run_id: str) -> None:
    try:
        acquire(store, task, run_id)
    except IntegrityError:
        raise LockedError(f"task {task!r} is busy: another run took its lock a moment ago") from None


def heartbeat(store: Store, task: str, run_id: str) -> None:
    with store.session() as s:
        row = s.get(LockRow, task)
        if row is not None and row.run_id == run_id:
            row.heartbeat = utcnow()
            s.add(row)


def release(store: Store, task: str, run_id: str) -> None:
    with store.session() as s:
        row = s.get(LockRow, task)
        if row is not None and row.run_id == run_id:
            s.delete(row)
