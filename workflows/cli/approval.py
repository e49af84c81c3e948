"""Answering a run that waits for approval: one function for every way in.

``kaizen runs approve|reject`` (cmd_runs), the dashboard's approve/reject buttons (``kaizen ui`` injects
:func:`decide_run` into the app) and anything else that answers an approval call :func:`decide_run`; it
picks the workflow's own decision (a repair resumes its LangGraph interrupt, a cold start promotes its
best attempt) and passes who decided and why. The reason lands in the run record (``summary.approval``,
and for a repair the promote event) and in the run's report; nothing is written beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import Workspace
from kaizen.workflows.cli.output import console, info

EXIT_AWAITING = 3  # the exit status of a command that leaves a run waiting for approval


def decide_run(
    ws: Workspace,
    run_id: str,
    approved: bool,
    who: str,
    *,
    reason: str | None = None,
    progress: Callable[[str], None] | None = info,
) -> RunRow:
    """Approve (``approved``) or reject the promotion ``run_id`` waits for, as ``who``, because ``reason``."""
    reason = (reason or "").strip() or None
    if ws.store.get_run(run_id).workflow == "cold-start":
        from kaizen.workflows.cold_start import job as cold_start

        return cold_start.decide_approval(ws, run_id, approved, who, reason=reason)
    from kaizen.workflows.repair import job as repair

    return repair.decide(ws, run_id, approved, who, progress, reason=reason)


def exit_status(run: RunRow) -> int:
    """``EXIT_AWAITING`` (with the line saying how to answer) when ``run`` waits for approval, else 0."""
    if run.status != "awaiting_approval":
        return 0
    info(
        f"run {run.id} waits for approval: `kaizen runs approve {run.id} --reason TEXT` "
        f"or `kaizen runs reject {run.id} --reason TEXT`"
    )
    return EXIT_AWAITING


def print_approval(approval: Any) -> None:
    """The decision line of ``runs show`` / ``runs approve``: who approved or rejected, and why."""
    if not isinstance(approval, dict):
        return
    verb = "approved" if approval.get("approved") else "rejected"
    why = f": {approval['reason']}" if approval.get("reason") else ""
    console.print(f"{verb} by {approval.get('by') or '?'}{why}", markup=False)
