"""The records of kaizen's own processes: runs, scheduled ticks, serving processes, task locks, read cursors.

Runs and ticks are what ``kaizen runs`` and ``kaizen tick`` show; servers are the ``kaizen serve``
processes; a lock row says which job holds a task (who may take one over is ``kaizen.tools.lock``'s
policy); cursors and waiting records are how far the scheduled loop has read each log file and the
feedback it keeps for a later tick. Methods taking a ``Session`` run inside an import's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from kaizen.tools.store.base import StoreBase, get_or_raise
from kaizen.tools.store.tables import CursorRow, LockRow, PendingRow, RunRow, ServerRow, TickRow, utcnow


class JobStore(StoreBase):
    """Runs, ticks, servers, task locks, the scheduled loop's cursors and waiting records."""

    # ------------------------------------------------------------------------------------ runs
    def get_run(self, run_id: str) -> RunRow:
        with self.session() as s:
            return get_or_raise(s, RunRow, run_id, f"run {run_id!r} not found: see `kaizen runs list`")

    def list_runs(self, task: str | None = None) -> list[RunRow]:
        with self.session() as s:
            q = select(RunRow).order_by(col(RunRow.created_at).desc())
            if task:
                q = q.where(RunRow.task == task)
            return list(s.exec(q))

    def save_run(self, row: RunRow) -> RunRow:
        with self.session() as s:
            row.updated_at = utcnow()
            s.merge(row)
        return row

    # ------------------------------------------------------------------- cursors and waiting records
    def cursor(self, task: str, path: str) -> CursorRow:
        """How far the scheduled loop has read ``path`` for ``task`` (a fresh row at 0 when never)."""
        with self.session() as s:
            return s.get(CursorRow, (task, path)) or CursorRow(task=task, path=path)

    def cursor_positions(self, task: str) -> dict[str, int]:
        """file → bytes consumed."""
        with self.session() as s:
            return {r.path: r.offset for r in s.exec(select(CursorRow).where(CursorRow.task == task))}

    @staticmethod
    def move_cursor(s: Session, task: str, path: str, offset: int, lines: int, head_hash: str) -> None:
        """Inside an import's transaction (its ``also``): the cursor moves with the import."""
        row = s.get(CursorRow, (task, path)) or CursorRow(task=task, path=path)
        row.offset, row.lines, row.head_hash, row.updated_at = offset, lines, head_hash, utcnow()
        s.add(row)

    def pending(self, task: str, kind: str | None = None) -> list[PendingRow]:
        """The task's waiting records (of ``kind``), oldest first."""
        with self.session() as s:
            q = select(PendingRow).where(PendingRow.task == task)
            if kind is not None:
                q = q.where(PendingRow.kind == kind)
            return list(s.exec(q.order_by(col(PendingRow.id))))

    @staticmethod
    def add_pending(s: Session, rows: Iterable[PendingRow]) -> None:
        """Inside a transaction: records that start waiting."""
        s.add_all(list(rows))

    def replace_pending(
        self, task: str, kind: str, rows: Iterable[PendingRow], s: Session | None = None
    ) -> None:
        """The task's waiting records of ``kind`` become ``rows`` (in ``s``'s transaction when given)."""
        if s is None:
            with self.session() as own:
                return self.replace_pending(task, kind, rows, own)
        s.exec(delete(PendingRow).where(PendingRow.task == task, PendingRow.kind == kind))  # type: ignore[call-overload]
        s.add_all(list(rows))
        return None

    def drop_pending(self, ids: Iterable[int | None], s: Session | None = None) -> None:
        """Records that stop waiting (in ``s``'s transaction when given)."""
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return
        if s is not None:
            s.exec(delete(PendingRow).where(col(PendingRow.id).in_(wanted)))  # type: ignore[call-overload]
            return
        with self.session() as own:
            own.exec(delete(PendingRow).where(col(PendingRow.id).in_(wanted)))  # type: ignore[call-overload]

    # ----------------------------------------------------------------------------------- ticks
    def save_tick(self, row: TickRow) -> TickRow:
        with self.session() as s:
            s.merge(row)
        return row

    def list_ticks(self, task: str | None = None, limit: int = 100) -> list[TickRow]:
        with self.session() as s:
            q = select(TickRow).order_by(col(TickRow.started_at).desc()).limit(limit)
            if task:
                q = q.where(TickRow.task == task)
            return list(s.exec(q))

    # --------------------------------------------------------------------------------- servers
    def save_server(self, row: ServerRow) -> ServerRow:
        with self.session() as s:
            row.updated_at = utcnow()
            s.merge(row)
        return row

    def get_server(self, server_id: str) -> ServerRow:
        with self.session() as s:
            return get_or_raise(
                s, ServerRow, server_id, f"server {server_id!r} not found: see `kaizen servers list`"
            )

    def list_servers(self, task: str | None = None, status: str | None = None) -> list[ServerRow]:
        with self.session() as s:
            q = select(ServerRow).order_by(col(ServerRow.started_at).desc())
            if task:
                q = q.where(ServerRow.task == task)
            if status:
                q = q.where(ServerRow.status == status)
            return list(s.exec(q))

    # ------------------------------------------------------------------------------ task locks
    # The rows only: who may take a lock over is tools.lock's policy.
    def get_lock(self, task: str) -> LockRow | None:
        with self.session() as s:
            return s.get(LockRow, task)

    def take_lock(self, row: LockRow, *, replacing: LockRow | None = None) -> bool:
        """Write ``row`` if the task's lock is free, or still exactly ``replacing``; False if another holder got there first."""
        try:
            with self.session() as s:
                if replacing is not None:
                    gone = s.exec(
                        delete(LockRow).where(  # type: ignore[call-overload]
                            col(LockRow.task) == replacing.task,
                            col(LockRow.run_id) == replacing.run_id,
                            col(LockRow.pid) == replacing.pid,
                            col(LockRow.host) == replacing.host,
                            col(LockRow.heartbeat) == replacing.heartbeat,
                        )
                    ).rowcount
                    if gone != 1:
                        s.rollback()
                        return False
                s.add(LockRow.model_validate(row.model_dump()))
                s.flush()
        except IntegrityError:
            return False
        return True

    def beat_lock(self, task: str, job_id: str, pid: int, host: str) -> bool:
        """Refresh the heartbeat of the lock ``(job_id, pid, host)`` holds; False if it holds none."""
        with self.session() as s:
            n = s.exec(
                update(LockRow)
                .where(  # type: ignore[call-overload]
                    col(LockRow.task) == task,
                    col(LockRow.run_id) == job_id,
                    col(LockRow.pid) == pid,
                    col(LockRow.host) == host,
                )
                .values(heartbeat=utcnow())
            ).rowcount
        return n == 1

    def drop_lock(self, task: str, job_id: str, pid: int, host: str) -> None:
        """Delete the lock ``(job_id, pid, host)`` holds (a lock another holder took over stays)."""
        with self.session() as s:
            s.exec(
                delete(LockRow).where(  # type: ignore[call-overload]
                    col(LockRow.task) == task,
                    col(LockRow.run_id) == job_id,
                    col(LockRow.pid) == pid,
                    col(LockRow.host) == host,
                )
            )
