"""CLI: ``kaizen repair`` and ``kaizen runs list|show|resume|approve|reject``."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError
from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.cli.approval import decide_run, exit_status, print_approval
from kaizen.workflows.cli.output import console, emit, info, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repair", help="Diagnose the task's failures, train a fix, gate it, promote it.")
    p.add_argument("--task", required=True)
    p.add_argument("--approve", action="store_true", help="Approve the promotion in advance (no waiting).")
    p.add_argument(
        "--strategy",
        default="agent",
        choices=["agent", "naive", "oracle"],
        help="naive: retrain on every correction as given, no triage/replay/gate, promote anyway (a baseline). "
        "oracle: the agent with the scenario's true labels (--answer-key): the ceiling the logs allow.",
    )
    p.add_argument(
        "--answer-key",
        type=Path,
        default=None,
        help="The scenario's answer_key.jsonl (true labels; --strategy oracle only — never ingested).",
    )
    p.add_argument(
        "--preset", default="repair", choices=["repair", "demo"], help="demo: at most 2 iterations."
    )
    p.add_argument("--max-iterations", type=int, default=None)
    p.add_argument(
        "--kind",
        default=None,
        choices=["sft", "grpo", "sft+grpo"],
        help="How the first iteration trains: sft (default), grpo (RL from the incumbent, rewarded by the task's "
        "verifier), or sft+grpo (SFT, then GRPO continuing it). Later iterations keep it.",
    )
    p.add_argument(
        "--grpo-steps",
        type=int,
        default=None,
        help="GRPO optimiser steps (--kind grpo|sft+grpo; default 32).",
    )
    p.add_argument(
        "--epoch-examples",
        type=int,
        default=None,
        help="SFT epochs count at most N examples' worth of steps; a larger training set gets fewer passes, "
        "never under one (default: 320 on a CPU, no cap on a GPU; 0: never capped).",
    )
    p.add_argument(
        "--eval-set",
        type=Path,
        action="append",
        default=[],
        help="Extra held-out JSONL suite (never trained on; also checked for regressions). Repeatable.",
    )
    p.set_defaults(func=cmd_repair)

    runs = sub.add_parser("runs", help="Inspect and continue runs.").add_subparsers(
        dest="runs_cmd", metavar="ACTION"
    )
    p = runs.add_parser("list", help="List runs.")
    p.add_argument("--task", default=None)
    p.set_defaults(func=cmd_list)
    p = runs.add_parser("show", help="Show a run's summary (and its report path with --open).")
    p.add_argument("run_id")
    p.add_argument("--open", action="store_true", help="Print the path of the run's report.html.")
    p.set_defaults(func=cmd_show)
    for name, helptext in [
        ("resume", "Continue a killed/interrupted run from its last finished node."),
        ("approve", "Approve a run waiting for approval, and let it promote."),
        ("reject", "Reject a run waiting for approval."),
    ]:
        p = runs.add_parser(name, help=helptext)
        p.add_argument("run_id")
        if name != "resume":
            p.add_argument(
                "--reason",
                default=None,
                metavar="TEXT",
                help="Why: kept with the decision in the run record and its report (shown by `runs show`).",
            )
        p.set_defaults(func=cmd_continue, action=name)


def _print_summary(d: dict[str, Any]) -> None:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    console.print(f"[bold]run {d['run_id']}[/bold]: {d['status']} after {d['iterations']} iteration(s)")
    table(
        "incumbent vs candidate",
        ["suite", d.get("incumbent") or "incumbent", d.get("candidate") or "candidate"],
        [
            ("target (held-out failures)", f(d["before"]["target"]), f(d["after"]["target"])),
            ("regression (held-out passes)", f(d["before"]["regression"]), f(d["after"]["regression"])),
        ],
    )
    console.print(
        f"fixed {d['fixed']}, new regressions {d['new_regressions']}, excluded suspect feedback {len(d['excluded_suspect'])}"
    )
    for r in d["verdict"]["reasons"]:
        console.print(f"  gate: {r}", markup=False)
    print_approval(d.get("approval"))
    if d.get("report_path"):
        console.print(f"report: {d.get('report_html') or d['report_path']}", markup=False)


def _html_report(report_path: str | None) -> Path | None:
    """The run's ``report.html`` (beside the ``report.json`` the run record points at), if written."""
    from kaizen.workflows.report.build import html_path_for

    html = html_path_for(report_path)
    return html if html is not None and html.is_file() else None


def _result(run: RunRow, as_json: bool) -> int:
    html = _html_report(run.report_path)
    data = dict(run.summary) | {
        "status": run.status,
        "run_id": run.id,
        "report_path": run.report_path,
        "report_html": str(html) if html else None,
    }
    emit(as_json, data, _print_summary)
    return exit_status(run)


def cmd_repair(args: argparse.Namespace) -> int:
    from kaizen.workflows.repair import job as repair

    if args.grpo_steps is not None and (args.kind or "sft") == "sft":
        raise ConfigError("--grpo-steps needs --kind grpo or --kind sft+grpo")
    ws = find_workspace(args.workspace)
    if args.strategy == "naive":
        from kaizen.workflows.repair.naive import run_naive

        return _result(run_naive(ws, args.task, progress=info), args.json)
    if (args.strategy == "oracle") != (args.answer_key is not None):
        raise ConfigError(
            "--strategy oracle needs --answer-key FILE, and --answer-key is only for --strategy oracle"
        )
    plan_defaults: dict[str, Any] = {}
    if args.kind:
        plan_defaults["kind"] = args.kind
    if args.grpo_steps is not None:
        plan_defaults["grpo_steps"] = args.grpo_steps
    if args.epoch_examples is not None:
        plan_defaults["epoch_examples"] = args.epoch_examples
    run = repair.start(
        ws,
        args.task,
        approve=args.approve,
        preset=args.preset,
        max_iterations=args.max_iterations,
        extra_eval_sets=args.eval_set,
        plan_defaults=plan_defaults or None,
        progress=info,
        answer_key=args.answer_key,
    )
    return _result(run, args.json)


def cmd_continue(args: argparse.Namespace) -> int:
    from kaizen.workflows.repair import job as repair

    ws = find_workspace(args.workspace)
    if args.action == "resume":
        if ws.store.get_run(args.run_id).workflow == "cold-start":
            from kaizen.workflows.cold_start import job as cold_start

            run = cold_start.resume(ws, args.run_id, progress=info)
        else:
            run = repair.resume(ws, args.run_id, progress=info)
    else:
        run = decide_run(ws, args.run_id, args.action == "approve", getpass.getuser(), reason=args.reason)
    if run.workflow == "cold-start":
        from kaizen.workflows.cli.cmd_loops import cold_start_result

        return cold_start_result(run, args.json)
    return _result(run, args.json)


def cmd_list(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    runs = ws.store.list_runs(args.task)
    data = [
        {
            "run_id": r.id,
            "task": r.task,
            "workflow": r.workflow,
            "status": r.status,
            "created_at": r.created_at,
            "promoted": r.summary.get("promoted"),
        }
        for r in runs
    ]
    emit(
        args.json,
        data,
        lambda d: table(
            "runs",
            ["run", "task", "workflow", "status", "promoted", "created"],
            [
                (r["run_id"], r["task"], r["workflow"], r["status"], r["promoted"], str(r["created_at"])[:19])
                for r in d
            ],
        ),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    run = ws.store.get_run(args.run_id)
    if args.open:
        html = _html_report(run.report_path)
        console.print(str(html) if html else (run.report_path or "(no report yet)"), markup=False)
        return 0
    if run.workflow == "cold-start":
        from kaizen.workflows.cli.cmd_loops import cold_start_result

        cold_start_result(run, args.json)
        return 0
    _result(run, args.json)
    return 0  # showing a run succeeds whatever state the run is in
