"""The scheduled improvement loop: ``kaizen tick`` (one pass, for cron) and ``kaizen watch`` (a loop).

A tick holds the task's lock (``task_lock``) from start to end — so two ticks (or a tick and a
manual repair) never overlap; the repair it runs or resumes works under the same lock — and does
four things, recording each in its ``tick`` row:

1. recover: ticks left ``running`` by a dead process are marked ``interrupted``;
2. ingest what is new in the log source (``schedule_ingest``: a cursor per file, moved in the
   same transaction as the import);
3. if a repair started by an earlier tick was left unfinished (the tick was killed), resume it;
   otherwise ask the trigger policy (``schedule_policy``) whether a repair is worth running;
4. run the repair under the same gate and approval settings as ``kaizen repair``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kaizen.tools.config import ScheduleSettings, duration_s, validation_message
from kaizen.tools.errors import ConfigError, KaizenError, LockedError
from kaizen.tools.lock import task_lock
from kaizen.tools.proc import pid_alive
from kaizen.tools.store.tables import RunRow, TickRow, utcnow
from kaizen.tools.workspace import Workspace
from kaizen.workflows.schedule.ingest import ingest_new
from kaizen.workflows.schedule.policy import decide

Progress = Callable[[str], None]


def policy_for(ws: Workspace, overrides: dict[str, Any] | None = None) -> ScheduleSettings:
    """``schedule:`` from kaizen.yaml with command-line overrides (None values ignored), validated."""
    upd = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return ScheduleSettings.model_validate(ws.settings.schedule.model_dump() | upd)
    except ValidationError as e:
        raise ConfigError(f"schedule.{validation_message(e)}") from None


def tick(
    ws: Workspace, task: str, *, overrides: dict[str, Any] | None = None, progress: Progress | None = None
) -> TickRow:
    """One pass of the loop for ``task``; returns its record (raises LockedError when busy)."""
    ws.store.get_task(task)
    policy = policy_for(ws, overrides)
    if not policy.source:
        raise ConfigError("no log source: pass --source PATH or set schedule.source in kaizen.yaml")
    row = TickRow(id=uuid.uuid4().hex[:12], task=task, status="running", pid=os.getpid())
    with ExitStack() as held:
        try:
            held.enter_context(task_lock(ws.store, task, row.id))  # the tick's, and the repair's it drives
        except LockedError as e:
            ws.store.save_tick(
                row.model_copy(update={"status": "busy", "error": str(e), "finished_at": utcnow()})
            )
            raise
        ws.store.save_tick(row)
        try:
            _recover(ws, task, row.id, progress)
            report = ingest_new(
                ws.store,
                task,
                Path(policy.source),
                ws.artifact_dir("ticks", row.id),
                policy.format,
                batch_input=policy.batch_input,
            )
            row.ingested = report.as_dict()
            _say(
                progress,
                f"tick {row.id}: ingested {report.imported} new traces, {report.feedback_added} feedback "
                f"({report.duplicates} duplicates, {report.invalid} invalid lines) from {policy.source}",
            )
            for err in report.errors[:5]:
                _say(progress, f"  skipped: {err}")
            ws.store.save_tick(row)
            _repair_step(ws, task, row, policy, progress)
        except LockedError as e:
            row.status, row.error = "busy", str(e)
            raise
        except KaizenError as e:
            row.status, row.error = "failed", str(e)
            raise
        except BaseException:
            row.status = "interrupted"
            raise
        finally:
            row.finished_at = utcnow()
            ws.store.save_tick(row)
    return row


def _repair_step(
    ws: Workspace, task: str, row: TickRow, policy: ScheduleSettings, progress: Progress | None
) -> None:
    from kaizen.workflows.repair import job as repair

    left = _unfinished_tick_run(ws, task)
    if left is not None:
        row.decision, row.run_id = (
            {"trigger": True, "reasons": [f"resume repair {left.id}, left unfinished by a killed tick"]},
            left.id,
        )
        ws.store.save_tick(row)
        _say(progress, f"tick {row.id}: resuming repair {left.id}")
        run = repair.resume(ws, left.id, progress=progress)  # under this tick's lock
    else:
        d = decide(ws.store, task, policy)
        row.decision = d.model_dump(mode="json")
        for r in d.reasons:
            _say(progress, f"  policy: {r}")
        if not d.trigger:
            row.status = "skipped"
            _say(progress, f"tick {row.id}: no repair")
            return
        row.run_id = row.id  # the run takes the tick's id
        ws.store.save_tick(row)
        _say(progress, f"tick {row.id}: starting repair {row.run_id}")
        run = repair.start(ws, task, run_id=row.id, progress=progress)
    row.status = "triggered"
    row.decision = dict(row.decision) | {"run_status": run.status}


def _recover(ws: Workspace, task: str, current: str, progress: Progress | None) -> None:
    """Mark ticks whose process died as interrupted (their repair, if any, is resumed next)."""
    for t in ws.store.list_ticks(task):
        if t.id != current and t.status == "running" and not (t.pid and pid_alive(t.pid)):
            t.status, t.finished_at = "interrupted", t.finished_at or utcnow()
            t.error = t.error or "the tick's process died before it finished"
            ws.store.save_tick(t)
            _say(progress, f"tick {t.id} was interrupted (process {t.pid} is gone)")


def _unfinished_tick_run(ws: Workspace, task: str) -> RunRow | None:
    """A repair a tick started that neither finished nor waits for approval (its tick was killed)."""
    started_by_ticks = {t.run_id for t in ws.store.list_ticks(task) if t.run_id}
    for run in ws.store.list_runs(task):
        if run.id in started_by_ticks and run.status in ("running", "interrupted"):
            return run
    return None


def watch(
    ws: Workspace,
    task: str,
    *,
    every: str | None = None,
    max_ticks: int | None = None,
    overrides: dict[str, Any] | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[TickRow]:
    """Tick every ``every`` until interrupted (or ``max_ticks``). A busy task or a failed repair
    skips one tick; a configuration error stops the loop (it would fail every time)."""
    interval = duration_s(every or policy_for(ws, overrides).every)
    done: list[TickRow] = []
    n = 0
    while True:
        n += 1
        try:
            done.append(tick(ws, task, overrides=overrides, progress=progress))
        except ConfigError:
            raise
        except KaizenError as e:  # busy (LockedError) or a failed repair: try again next time
            _say(progress, f"tick failed: {e}")
        if max_ticks is not None and n >= max_ticks:
            return done
        _say(progress, f"next tick in {every or policy_for(ws, overrides).every}")
        sleep(interval)


def tick_json(row: TickRow) -> dict[str, Any]:
    return {
        "tick_id": row.id,
        "task": row.task,
        "status": row.status,
        "ingested": row.ingested,
        "decision": row.decision,
        "run_id": row.run_id,
        "error": row.error,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def _say(progress: Progress | None, msg: str) -> None:
    if progress:
        progress(msg)
