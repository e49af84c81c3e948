"""The life of a run record, shared by every workflow that runs under a task's lock.

Why one helper: a repair and a cold start must agree on what a stopped run looks like — ``failed``
(kaizen raised on purpose: a bad input, a training failure) or ``interrupted`` (killed, Ctrl-C:
``kaizen runs resume`` continues it) — and must never leave the task's lock behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kaizen.tools.errors import KaizenError
from kaizen.tools.lock import task_lock
from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import Workspace


@contextmanager
def tracked(ws: Workspace, run: RunRow) -> Iterator[RunRow]:
    """Hold the task's lock while ``run`` works; record ``failed``/``interrupted`` if it stops early.

    The lock is ``task_lock``'s: taken here, or joined if this thread already holds it (a tick that
    drives the run, a job that took it before writing the run record).
    """
    with task_lock(ws.store, run.task, run.id):
        run.status = "running"
        ws.store.save_run(run)
        try:
            yield run
        except KaizenError:
            run.status = "failed"
            ws.store.save_run(run)
            raise
        except BaseException:
            run.status = "interrupted"
            ws.store.save_run(run)
            raise
