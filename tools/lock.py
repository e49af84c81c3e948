"""One run per task: a lock row in the store with the holder's pid, host and a heartbeat.

A second run on the same task is refused. A lock whose holder is gone (dead pid on this host, or
no heartbeat for ``STALE_AFTER_S``) is taken over, with a message saying so.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime, timedelta

from kaizen.tools.errors import LockedError
from kaizen.tools.proc import pid_alive
from kaizen.tools.store import Store
from kaizen.tools.store.tables import LockRow, utcnow
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

STALE_AFTER_S = 600


def _stale(row: LockRow) -> str | None:
    beat = row.heartbeat if row.heartbeat.tzinfo else row.heartbeat.replace(tzinfo=UTC)
    if row.host == socket.gethostname() and not pid_alive(row.pid):
        return f"its process {row.pid} is gone"
    if datetime.now(UTC) - beat > timedelta(seconds=STALE_AFTER_S):
        return f"no heartbeat since {beat.isoformat(timespec='seconds')}"
    return None


def acquire(store: Store, task: str, run_id: str) -> None:
    """Take the task's lock for ``run_id`` (re-entrant for the same run) or raise LockedError.

    The row is replaced only if it is still the one we judged: two runs that find the same
    stale lock at once cannot both take it over (the second deletes nothing and is refused).
    """
    with store.session() as s:
        row = s.get(LockRow, task)
        why = None
        if row is not None:
            if row.run_id != run_id:
                why = _stale(row)
                if why is None:
                    raise LockedError(
                        f"task {task!r} is busy: run {row.run_id} (pid {row.pid} on {row.host}) holds its lock; "
                        f"wait for it or stop it (`kaizen runs list --task {task}`)"
                    )
            seen = (row.run_id, row.pid, row.host, row.heartbeat)
            s.expunge(row)
            gone = s.exec(delete(LockRow).where(  # type: ignore[call-overload]
                col(LockRow.task) == task, col(LockRow.run_id) == seen[0], col(LockRow.pid) == seen[1],
                col(LockRow.host) == seen[2], col(LockRow.heartbeat) == seen[3])).rowcount
            if gone != 1:
                raise LockedError(f"task {task!r} is busy: another run took its lock a moment ago")
        s.add(LockRow(task=task, run_id=run_id, pid=os.getpid(), host=socket.gethostname()))
        s.flush()
    if why is not None:
        print(f"kaizen: took over the stale lock of run {seen[0]} on {task!r} ({why})", file=sys.stderr)


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


def transfer(store: Store, task: str, from_id: str, to_id: str) -> None:
    """Hand the lock held by ``from_id`` to ``to_id`` in one update (no moment without a holder)."""
    with store.session() as s:
        row = s.get(LockRow, task)
        if row is None or row.run_id != from_id:
            raise LockedError(f"task {task!r}: lock not held by {from_id}, cannot hand it to {to_id}")
        row.run_id, row.heartbeat = to_id, utcnow()
        s.add(row)
