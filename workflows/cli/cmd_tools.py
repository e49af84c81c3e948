"""CLI: the model tools used alone — ``kaizen eval``, ``kaizen train sft|grpo``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kaizen.tools import registry
from kaizen.tools.data import load_items
from kaizen.tools.errors import ConfigError
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.cli.output import console, emit, info


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="Evaluate a model version (or alias) on a JSONL example file.")
    p.add_argument(
        "--model", required=True, help="Version name, or production/previous/candidate with --task."
    )
    p.add_argument(
        "--data", required=True, type=Path, help='JSONL lines {"id"?, "messages": [...], "expected": ...}'
    )
    p.add_argument("--task", default=None, help="Task (default: the version's task).")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm", "openai"])
    p.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "generate", "score", "prefix"],
        help="generate: decode greedily; score: pick the likeliest label (classification); prefix: greedy "
        "decoding stopped as soon as the reply leaves the label set or ends a label (classification: the "
        "same answers as generate for label replies, several times faster).",
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible endpoint (--backend openai); with --backend vllm: "
        "a running vLLM server to use instead of starting one.",
    )
    p.add_argument("--served-model", default=None, help="Model name at that endpoint (--backend openai).")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.set_defaults(func=cmd_eval)

    from kaizen.tools.train.spec import LoraSpec, TrainJob  # pydantic only: cheap at start-up

    job = TrainJob.model_fields
    train = sub.add_parser("train", help="Train a LoRA adapter with TRL (SFT or GRPO).").add_subparsers(
        dest="train_cmd", metavar="KIND"
    )
    for kind in ("sft", "grpo"):
        p = train.add_parser(
            kind,
            help=f"{kind.upper()} on a JSONL example file ('expected' is the {'target' if kind == 'sft' else 'reward reference'}).",
        )
        p.add_argument("--data", required=True, type=Path)
        p.add_argument("--task", required=True)
        p.add_argument(
            "--base",
            default="base",
            help="Version to start from (its base model; --from-incumbent also loads its adapter).",
        )
        p.add_argument(
            "--from-incumbent", action="store_true", help="Initialise the new adapter from --base's adapter."
        )
        p.add_argument("--name", default=None, help="Name of the new version (default: TASK-vN).")
        # Defaults are the training spec's own, so the CLI and a job built elsewhere train alike.
        p.add_argument("--epochs", type=float, default=job["epochs"].default)
        p.add_argument("--max-steps", type=int, default=job["max_steps"].default)
        p.add_argument(
            "--lr", type=float, default=None, help=f"Learning rate (default {job['learning_rate'].default})."
        )
        p.add_argument("--batch-size", type=int, default=job["batch_size"].default)
        p.add_argument("--lora-r", type=int, default=LoraSpec.model_fields["r"].default)
        p.add_argument(
            "--top-layers", type=int, default=None, help="Adapt only the top N layers (faster on CPU)."
        )
        p.add_argument("--full", action="store_true", help="Full fine-tuning instead of LoRA.")
        if kind == "grpo":
            _add_grpo_flags(p)
        p.set_defaults(func=cmd_train, kind=kind)


# GRPO flags of `kaizen train grpo`: each is a TrainJob field; its default and help come from the spec.
GRPO_FLAGS = (
    "num_generations",
    "max_completion_length",
    "temperature",
    "adv_weight_pos",
    "adv_weight_neg",
    "entropy_floor",
    "entropy_patience",
    "hint_share",
    "hint",
    "hint_tokens",
)


def _add_grpo_flags(p: argparse.ArgumentParser) -> None:
    from kaizen.tools.train.spec import TrainJob

    p.add_argument(
        "--reward",
        default=None,
        help="Comma-separated reward names (default: the task kind's verifier, rewards_for_kind).",
    )
    for name in GRPO_FLAGS:
        f = TrainJob.model_fields[name]
        default = "off" if name == "entropy_floor" and f.default is None else f.default
        more = "; off: never" if name == "entropy_floor" else ""
        help_ = f"{f.description or ''} (default {default}{more})".strip().replace("%", "%%")
        kw: dict[str, Any] = {"default": f.default, "help": help_}
        if name == "hint":
            kw["choices"] = ["auto", "labels", "prefix", "answer"]
        elif name == "entropy_floor":
            kw["type"] = lambda v: None if v.lower() in ("none", "off", "null") else float(v)
        else:
            kw["type"] = type(f.default)
        p.add_argument("--" + name.replace("_", "-"), **kw)


def _progress(label: str):  # noqa: ANN202
    def show(done: int, total: int) -> None:
        info(f"  {label}: {done}/{total}")

    return show


def cmd_eval(args: argparse.Namespace) -> int:
    from kaizen.tools.evaluate.run import dataset_id, evaluate
    from kaizen.tools.versions import make_backend, record_eval

    ws = find_workspace(args.workspace)
    version = registry.resolve(ws.store, args.model, args.task)
    task_name = args.task or version.task
    if not task_name:
        raise ConfigError(f"version {version.name!r} belongs to no task: pass --task NAME")
    task = ws.store.get_task(task_name)
    items = load_items(args.data, task)
    info(f"evaluating {version.name} on {len(items)} examples of {task.name} ({args.backend})")
    backend = make_backend(
        ws,
        version,
        args.backend,
        base_url=args.base_url,
        served_model=args.served_model,
        batch_size=args.batch_size,
    )
    ds = dataset_id(items)
    out = ws.artifact_dir("evals", task.name) / f"{version.name}-{ds}.jsonl"
    from kaizen.tools.proc import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # a killed eval still stops the vLLM server it started
            report = evaluate(
                task,
                items,
                backend,
                model_version=version.name,
                outputs_path=out,
                mode=args.mode,
                max_new_tokens=args.max_new_tokens,
                progress=_progress("eval"),
            )
    finally:
        if hasattr(backend, "close"):
            backend.close()  # e.g. stop the vLLM server --backend vllm started
    record_eval(ws, report, ds)
    data: dict[str, Any] = {
        "model": version.name,
        "task": task.name,
        "n": report.n,
        "metric": report.metric,
        "score": report.score,
        "outputs_path": report.outputs_path,
        "backend": report.backend,
        "decoding": report.decoding,
        "correct_by_id": report.correct_by_id,
    }
    for k in (
        "per_label",
        "macro_f1",
        "invalid_rate",
        "confusion",
        "json_valid_rate",
        "rouge1",
        "rouge2",
        "rougeL",
    ):
        if k in report.metrics:
            data[k] = report.metrics[k]

    def pretty(d: dict[str, Any]) -> None:
        console.print(
            f"[bold]{d['model']}[/bold] on {d['n']} examples of {d['task']}: {d['metric']} = {d['score']:.4f}"
        )
        if "invalid_rate" in d:
            console.print(f"  macro-F1 {d['macro_f1']:.4f}, off-label outputs {d['invalid_rate']:.1%}")
        console.print(f"  outputs: {d['outputs_path']}")

    emit(args.json, data, pretty)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec
    from kaizen.tools.versions import build_job, new_version_name, progress_printer, register_trained

    ws = find_workspace(args.workspace)
    task = ws.store.get_task(args.task)
    items = load_items(args.data, task)
    start = registry.resolve(ws.store, args.base, task.name)
    name = args.name or new_version_name(ws, task.name)
    if any(v.name == name for v in ws.store.list_model_versions()):
        raise ConfigError(f"version {name!r} already exists: pass another --name")
    params: dict[str, Any] = dict(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        full_finetune=args.full,
        lora=LoraSpec(r=args.lora_r, alpha=2 * args.lora_r, top_layers=args.top_layers),
    )
    if args.lr:
        params["learning_rate"] = args.lr
    if args.kind == "grpo":
        from kaizen.tools.train.rewards import rewards_for_kind

        rewards = [r.strip() for r in (args.reward or "").split(",") if r.strip()]
        params.update(
            rewards=rewards or rewards_for_kind(task.kind), **{n: getattr(args, n) for n in GRPO_FLAGS}
        )
        if params["batch_size"] % args.num_generations:
            params["batch_size"] = args.num_generations * max(1, params["batch_size"] // args.num_generations)
    job_dir = ws.artifact_dir("jobs", name)
    job = build_job(
        ws,
        task,
        items,
        kind=args.kind,
        start=start,
        job_dir=job_dir,
        from_incumbent=args.from_incumbent,
        **params,
    )
    info(
        f"training {name} ({args.kind}, {'full' if args.full else 'LoRA'}) on {len(items)} examples; job dir {job_dir}"
    )
    result = run_job(job, progress_printer())
    version = register_trained(ws, task, job, result, name=name, parent=start, items=items)
    data = {
        "version": version.name,
        "adapter_path": version.adapter_path,
        "steps": result["steps"],
        "train_tokens": result["train_tokens"],
        "tokens_per_s": result["tokens_per_s"],
        "metrics_path": str(job_dir / "metrics.jsonl"),
        "train_loss": result["train_loss"],
        "resumed_from": result["resumed_from"],
    }
    emit(
        args.json,
        data,
        lambda d: console.print(
            f"Registered {d['version']}: {d['steps']} steps, {d['train_tokens']} tokens at {d['tokens_per_s']} tokens/s → {d['adapter_path']}"
        ),
    )
    return 0
