"""CLI: the other two jobs — ``kaizen cold-start`` and the scheduled loop (``tick``, ``watch``, ``ticks list``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.cli.approval import EXIT_AWAITING, exit_status, print_approval
from kaizen.workflows.cli.output import console, emit, info, table

_POLICY_FLAGS = {  # flag → (schedule setting, type, help)
    "--min-new-failures": ("min_new_failures", int, "Trigger at this many new failures."),
    "--min-failure-rate-rise": (
        "min_failure_rate_rise",
        float,
        "Trigger at this rise of the failure rate since the last promotion.",
    ),
    "--drift-threshold": (
        "drift_threshold",
        float,
        "Trigger when this share of new inputs is unlike any earlier one.",
    ),
    "--cooldown": ("cooldown", str, "No repair within this time of the last (e.g. 6h)."),
    "--max-runs-per-day": ("max_runs_per_day", int, "Repairs per 24 h, at most."),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cold-start",
        help="Learn a new task from its description and examples: train, pick the best, gate, promote.",
    )
    p.add_argument(
        "--task-file",
        required=True,
        type=Path,
        help="YAML: name, kind, description, labels … (+ seed_examples, target_score).",
    )
    p.add_argument(
        "--seed-data",
        type=Path,
        default=None,
        help='JSONL examples {"messages": [...], "expected": ...} (training only when --dataset is given).',
    )
    p.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="JSONL examples: a local data set; the held-out eval set is carved from it.",
    )
    p.add_argument(
        "--eval-set",
        type=Path,
        default=None,
        help="Use this JSONL file as the held-out set instead of carving one.",
    )
    p.add_argument(
        "--max-attempts", type=int, default=None, help="Pipelines to try (default 3 on CPU, 5 on a GPU)."
    )
    p.add_argument(
        "--approve", action="store_true", help="Promote the winner without waiting for `kaizen runs approve`."
    )
    p.set_defaults(func=cmd_cold_start)

    for name, helptext in [
        (
            "tick",
            "One pass of the scheduled loop: ingest new logs, apply the trigger policy, repair if warranted.",
        ),
        ("watch", "Run `kaizen tick` every --every until stopped (Ctrl-C)."),
    ]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--task", required=True)
        p.add_argument(
            "--source", default=None, help="Log file or directory (default: schedule.source in kaizen.yaml)."
        )
        p.add_argument("--format", default=None, help="Log format (default: schedule.format, auto).")
        p.add_argument(
            "--batch-input",
            default=None,
            metavar="FILE",
            help="OpenAI Batch output in the source: its batch input file (default: schedule.batch_input, or the "
            "output file's sibling with output → input in its name).",
        )
        for flag, (_, typ, h) in _POLICY_FLAGS.items():
            p.add_argument(flag, type=typ, default=None, help=h)
        if name == "watch":
            p.add_argument(
                "--every", default=None, help="Time between ticks: 30m, 1h, 1d (default: schedule.every)."
            )
            p.add_argument("--max-ticks", type=int, default=None, help="Stop after this many ticks.")
        p.set_defaults(func=cmd_tick if name == "tick" else cmd_watch)

    ticks = sub.add_parser("ticks", help="The scheduled loop's history.").add_subparsers(
        dest="ticks_cmd", metavar="ACTION"
    )
    p = ticks.add_parser("list", help="List ticks: what each ingested, decided and ran.")
    p.add_argument("--task", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_ticks_list)


# --------------------------------------------------------------------------------- cold start
def print_cold_start(d: dict[str, Any]) -> None:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    console.print(
        f"[bold]cold start {d['run_id']}[/bold] of {d['task']}: {d['status']} "
        f"({d['n_train']} training / {d['n_eval']} held-out examples)"
    )
    rows = [("–", "base", d["base"].get("version"), f(d["base"].get("score")), "", "")]
    rows += [
        (a["index"] + 1, a["name"], a.get("version"), f(a.get("score")), a.get("train_tokens"), a.get("why"))
        for a in d["attempts"]
    ]
    table("held-out score per pipeline", ["#", "pipeline", "version", "score", "train tokens", "why"], rows)
    for r in (d.get("verdict") or {}).get("reasons", []):
        console.print(f"  gate: {r}", markup=False)
    print_approval(d.get("approval"))
    if d.get("report_path"):
        console.print(f"report: {Path(d['report_path']).with_suffix('.html')}", markup=False)


def cold_start_result(run: RunRow, as_json: bool) -> int:
    from kaizen.workflows.cold_start.job import summary_json

    emit(as_json, summary_json(run), print_cold_start)
    return exit_status(run)


def cmd_cold_start(args: argparse.Namespace) -> int:
    from kaizen.workflows.cold_start import job as cold_start

    ws = find_workspace(args.workspace)
    run = cold_start.start(
        ws,
        args.task_file,
        seed_data=args.seed_data,
        dataset=args.dataset,
        eval_set=args.eval_set,
        approve=args.approve,
        max_attempts=args.max_attempts,
        progress=info,
    )
    return cold_start_result(run, args.json)


# ------------------------------------------------------------------------------ scheduled loop
def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {
        key: getattr(args, flag.lstrip("-").replace("-", "_")) for flag, (key, _, _) in _POLICY_FLAGS.items()
    }
    return out | {"source": args.source, "format": args.format, "batch_input": args.batch_input}


def _print_tick(d: dict[str, Any]) -> None:
    ing = d.get("ingested") or {}
    console.print(
        f"[bold]tick {d['tick_id']}[/bold] on {d['task']}: {d['status']}; ingested {ing.get('imported', 0)} traces, "
        f"{ing.get('feedback_added', 0)} feedback, {ing.get('invalid', 0)} invalid lines"
    )
    for r in (d.get("decision") or {}).get("reasons", []):
        console.print(f"  policy: {r}", markup=False)
    if d.get("run_id"):
        console.print(
            f"  repair run {d['run_id']}: {(d.get('decision') or {}).get('run_status')}", markup=False
        )


def cmd_tick(args: argparse.Namespace) -> int:
    from kaizen.workflows.schedule.job import tick, tick_json

    ws = find_workspace(args.workspace)
    row = tick(ws, args.task, overrides=_overrides(args), progress=info)
    emit(args.json, tick_json(row), _print_tick)
    return EXIT_AWAITING if (row.decision or {}).get("run_status") == "awaiting_approval" else 0


def cmd_watch(args: argparse.Namespace) -> int:
    from kaizen.workflows.schedule.job import watch

    ws = find_workspace(args.workspace)
    info(
        f"watching {args.task}; Ctrl-C stops between or during ticks (an interrupted tick resumes on the next)"
    )
    rows = watch(
        ws, args.task, every=args.every, max_ticks=args.max_ticks, overrides=_overrides(args), progress=info
    )
    if args.json:
        from kaizen.workflows.schedule.job import tick_json

        emit(True, [tick_json(r) for r in rows])
    return 0


def cmd_ticks_list(args: argparse.Namespace) -> int:
    from kaizen.workflows.schedule.job import tick_json

    ws = find_workspace(args.workspace)
    data = [tick_json(r) for r in ws.store.list_ticks(args.task, limit=args.limit)]
    emit(
        args.json,
        data,
        lambda d: table(
            "ticks",
            ["tick", "task", "started", "status", "new traces", "decision", "run"],
            [
                (
                    t["tick_id"],
                    t["task"],
                    str(t["started_at"])[:19],
                    t["status"],
                    (t["ingested"] or {}).get("imported"),
                    "; ".join((t["decision"] or {}).get("reasons", []))[:90] or t.get("error"),
                    t["run_id"],
                )
                for t in d
            ],
        ),
    )
    return 0
