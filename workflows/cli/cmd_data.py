"""CLI: workspace, tasks, trace import and feedback (``init``, ``task``, ``ingest``, ``feedback``, ``traces``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kaizen.tools.errors import ConfigError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.workspace import find_workspace, init_workspace
from kaizen.workflows.cli.output import console, emit, esc, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="Create a workspace (.kaizen/ and a commented kaizen.yaml).")
    p.add_argument("directory", nargs="?", type=Path, default=Path("."))
    p.set_defaults(func=cmd_init)

    task = sub.add_parser("task", help="Declare and inspect tasks.").add_subparsers(
        dest="task_cmd", metavar="ACTION"
    )
    p = task.add_parser("add", help="Add a task.")
    p.add_argument("name")
    p.add_argument(
        "--kind", required=True, choices=["classification", "extraction", "generation", "math", "code"]
    )
    p.add_argument("--labels", default="", help="Comma-separated label set (classification).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--system-prompt", default=None)
    g.add_argument("--system-prompt-file", type=Path, default=None)
    p.add_argument("--metric", default=None)
    p.add_argument("--description", default=TaskSpec.model_fields["description"].default)
    p.set_defaults(func=cmd_task_add)
    p = task.add_parser("list", help="List tasks.")
    p.set_defaults(func=cmd_task_list)
    p = task.add_parser("show", help="Show one task, its aliases and trace counts.")
    p.add_argument("name")
    p.set_defaults(func=cmd_task_show)

    p = sub.add_parser(
        "ingest",
        help="Import inference logs (JSONL, or a vLLM text log) as traces, atomically and idempotently.",
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--format",
        default="auto",
        help="auto | kaizen | openai-chat | openai-batch | otel-genai | langfuse | vllm-log",
    )
    p.add_argument(
        "--batch-input",
        type=Path,
        default=None,
        metavar="FILE",
        help="openai-batch: the batch input file (default: FILE's name with 'output' → 'input', if it exists).",
    )
    p.add_argument("--task", default=None, help="Task for lines that do not name one.")
    p.add_argument("--skip-invalid", action="store_true", help="Report bad lines and import the rest.")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("feedback", help="Attach verdicts/corrections to imported traces.")
    p.add_argument("file", type=Path)
    p.add_argument("--skip-invalid", action="store_true")
    p.set_defaults(func=cmd_feedback)

    traces = sub.add_parser("traces", help="Inspect traces.").add_subparsers(
        dest="traces_cmd", metavar="ACTION"
    )
    p = traces.add_parser("stats", help="Counts, failure rate, label distribution.")
    p.add_argument("--task", required=True)
    p.set_defaults(func=cmd_traces_stats)


def cmd_init(args: argparse.Namespace) -> int:
    ws, created = init_workspace(args.directory)
    data = {
        "workspace": str(ws.root),
        "state": str(ws.state),
        "config": str(ws.config_path),
        "db": ws.db_url_masked,
        "created": created,
    }
    emit(
        args.json,
        data,
        lambda d: console.print(
            f"{'Created' if created else 'Found'} workspace {d['state']}\n  settings: {d['config']}\n  next: kaizen task add NAME --kind ... ; kaizen ingest FILE",
            markup=False,
        ),
    )
    return 0


def cmd_task_add(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    if any(t.name == args.name for t in ws.settings.tasks):
        raise ConfigError(f"task {args.name!r} is declared in {ws.config_path}: edit it there")
    try:
        prompt = args.system_prompt_file.read_text() if args.system_prompt_file else args.system_prompt
    except OSError as e:
        raise ConfigError(
            f"--system-prompt-file {args.system_prompt_file}: cannot read it: {e.strerror or e}"
        ) from None
    try:
        spec = TaskSpec(
            name=args.name,
            kind=args.kind,
            labels=[x for x in args.labels.split(",") if x.strip()],
            system_prompt=prompt,
            metric=args.metric,
            description=args.description,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"task {args.name!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if spec.kind == "classification" and not spec.labels:
        raise ConfigError("a classification task needs --labels a,b,c")
    ws.store.add_task(spec)
    emit(
        args.json,
        spec.model_dump(),
        lambda d: console.print(f"Added task {spec.name} ({spec.kind}); production → base", markup=False),
    )
    return 0


def cmd_task_list(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    rows = ws.store.list_tasks()
    data = [t.model_dump() | {"declared_in": src} for t, src in rows]
    emit(
        args.json,
        data,
        lambda d: table(
            "tasks",
            ["name", "kind", "labels", "metric", "declared in"],
            [
                (
                    t["name"],
                    t["kind"],
                    len(t["labels"]),
                    t["metric"] or TaskSpec(**{k: t[k] for k in ("name", "kind")}).headline_metric,
                    t["declared_in"],
                )
                for t in d
            ],
        ),
    )
    return 0


def cmd_task_show(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    spec = ws.store.get_task(args.name)
    aliases = {a: r.model_version for a, r in ws.store.aliases(args.name).items()}
    data: dict[str, Any] = spec.model_dump() | {
        "aliases": aliases,
        "traces": ws.store.trace_stats(args.name)["traces"],
    }
    emit(args.json, data)
    return 0


def _import_summary(d: dict[str, Any]) -> None:
    console.print(
        f"imported {d['imported']} (failures {d['failures']}, passes {d['passes']}, unlabeled {d['unlabeled']}), "
        f"duplicates {d['duplicates']}, invalid {d['invalid']}, feedback added {d['feedback_added']}"
    )
    for e in d["errors"][:20]:
        console.print(f"  skipped {e}", markup=False)
    if d.get("skipped"):
        console.print(
            f"  left out, not traces (spans, events, unanswered requests …): {d['skipped']}", markup=False
        )


def cmd_ingest(args: argparse.Namespace) -> int:
    from kaizen.tools.logs import iter_traces

    ws = find_workspace(args.workspace)
    store = ws.store
    if args.task:
        store.get_task(args.task)
    # streamed: parsed and staged a chunk at a time, published at the end in one short transaction
    result, traces = iter_traces(
        args.file, fmt=args.format, skip_invalid=args.skip_invalid, options={"batch_input": args.batch_input}
    )
    stats = store.import_traces(
        traces, path=str(args.file), default_task=args.task, skip_invalid=args.skip_invalid
    )
    stats.invalid += len(result.invalid)
    stats.errors = [str(e) for e in result.invalid] + stats.errors
    emit(
        args.json,
        stats.as_dict() | {"format": result.format, "skipped": len(result.skipped)},
        _import_summary,
    )
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from kaizen.tools.logs import parse_feedback

    ws = find_workspace(args.workspace)
    result = parse_feedback(args.file, skip_invalid=args.skip_invalid)
    stats = ws.store.add_feedback(
        result.items, path=str(args.file), skip_invalid=args.skip_invalid, by_line=True
    )
    stats.invalid += len(result.invalid)
    stats.errors = [str(e) for e in result.invalid] + stats.errors
    emit(args.json, stats.as_dict(), _import_summary)
    return 0


def cmd_traces_stats(args: argparse.Namespace) -> int:
    ws = find_workspace(args.workspace)
    stats = ws.store.trace_stats(args.task)

    def pretty(d: dict[str, Any]) -> None:
        rate = "n/a" if d["failure_rate"] is None else f"{d['failure_rate']:.1%}"
        console.print(
            f"[bold]{esc(d['task'])}[/bold]: {d['traces']} traces — {d['passes']} pass, {d['failures']} fail "
            f"({rate} of labelled), {d['unlabeled']} unlabeled, {d['failures_without_correction']} failures without a correction"
        )
        if "gold_labels" in d:
            table("gold label distribution", ["label", "count"], list(d["gold_labels"].items()))

    emit(args.json, stats, pretty)
    return 0
