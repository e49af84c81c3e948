"""Glue between the registry and the model tools: where a version's weights are, how to run it,
and how a trained adapter becomes a registered version.

Used by ``kaizen eval`` / ``kaizen train`` and by the agent, so both go through one path.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.data import grpo_rows, sft_rows, write_items
from kaizen.tools.errors import ConfigError, NotFoundError
from kaizen.tools.evaluate.backends import InferenceBackend
from kaizen.tools.registry import base_of
from kaizen.tools.schema import EvalItem, TaskSpec, content_hash
from kaizen.tools.store.tables import EvalResultRow, ModelVersionRow
from kaizen.tools.train.spec import TrainJob
from kaizen.tools.workspace import Workspace

log = logging.getLogger(__name__)


def version_paths(ws: Workspace, version: ModelVersionRow) -> tuple[Path, Path | None]:
    """(base model directory, adapter directory or None) for a registered version."""
    from kaizen.tools.models.resolve import resolve_base

    base = base_of(ws.store, version)
    return resolve_base(base.base_ref), (Path(version.adapter_path) if version.adapter_path else None)


def make_backend(
    ws: Workspace,
    version: ModelVersionRow,
    backend: str = "transformers",
    *,
    base_url: str | None = None,
    served_model: str | None = None,
    batch_size: int = 32,
) -> InferenceBackend:
    """An inference backend running ``version`` (``vllm``: ``base_url`` attaches to a running vLLM server).

    Backends that hold a process (``vllm`` started as a server) have a ``close()``; callers call it when done."""
    from kaizen.tools.evaluate import backends, vllm_backends

    if backend == "openai":
        if not served_model:
            raise ConfigError(
                "--backend openai needs --served-model NAME (and --base-url for a local server)"
            )
        return backends.OpenAIBackend(base_url, served_model, api_key_env=ws.settings.brain.api_key_env)
    base_dir, adapter = version_paths(ws, version)
    m = ws.settings.model
    if backend == "vllm":
        dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(
            m.dtype, "auto" if m.device == "cuda" else "float32"
        )
        return vllm_backends.make_vllm_backend(base_dir, adapter, url=base_url, dtype=dtype)
    if backend == "transformers":
        return backends.TransformersBackend(
            base_dir,
            adapter,
            device=None if m.device == "auto" else m.device,
            dtype=None if m.dtype == "auto" else m.dtype,
            batch_size=batch_size,
        )
    raise ConfigError(f"unknown backend {backend!r}: use transformers, vllm or openai")


def record_eval(ws: Workspace, report: Any, dataset: str, run_id: str | None = None) -> EvalResultRow:
    return ws.store.add_eval_result(
        EvalResultRow(
            task=report.task,
            model_version=report.model_version,
            dataset_id=dataset,
            suite=report.suite,
            metric=report.metric,
            score=report.score,
            n=report.n,
            metrics=report.metrics,
            backend=report.backend,
            decoding=report.decoding,
            outputs_path=report.outputs_path,
            run_id=run_id,
        )
    )


def new_version_name(ws: Workspace, task: str, prefix: str = "") -> str:
    """``<task>-v<N>``: the next free number for the task."""
    names = {v.name for v in ws.store.list_model_versions()}
    n = 1
    while f"{prefix or task}-v{n}" in names:
        n += 1
    return f"{prefix or task}-v{n}"


def build_job(
    ws: Workspace,
    task: TaskSpec,
    items: list[EvalItem],
    *,
    kind: str,
    start: ModelVersionRow,
    job_dir: Path,
    from_incumbent: bool = False,
    skill: Any = None,
    **params: Any,
) -> TrainJob:
    """A training job for ``items`` on ``start``'s base (optionally initialised from its adapter).

    ``skill``: the prompt skill the model will be served with — training renders chats with it, so
    the model learns under the prompt it will see.
    """
    base_dir, adapter = version_paths(ws, start)
    rows = sft_rows(task, items, skill) if kind == "sft" else grpo_rows(task, items, skill)
    data_path = job_dir / "data.jsonl"
    write_items(data_path, rows)
    m = ws.settings.model
    params.setdefault(
        "launcher", ws.settings.train.launcher.relative_to(ws.root)
    )  # kaizen.yaml train.launcher
    return TrainJob(
        kind=kind,
        base_dir=base_dir,
        init_adapter=adapter if from_incumbent else None,
        data_path=data_path,
        output_dir=job_dir,
        device=m.device,
        dtype=m.dtype,
        **params,
    )


def register_trained(
    ws: Workspace,
    task: TaskSpec,
    job: TrainJob,
    result: dict[str, Any],
    *,
    name: str,
    parent: ModelVersionRow,
    items: list[EvalItem],
    train_items_path: str | None = None,
    holds_full_data: bool = False,
) -> ModelVersionRow:
    """Register a finished job's adapter as a new version with its lineage and recipe."""
    base = base_of(ws.store, parent)
    recipe = job.model_dump(mode="json", exclude={"base_dir", "data_path", "output_dir"}) | {
        "trained_by": getpass.getuser(),
        "job_dir": str(job.output_dir),
        # Lineage for the next repair: the exact examples, and whether they are *all* this version
        # learned (trained from its base, not continued from another adapter).
        "train_items_path": train_items_path,
        "holds_full_data": holds_full_data and job.init_adapter is None,
    }
    try:
        return ws.store.get_model_version(name)  # re-running a finished step registers nothing twice
    except NotFoundError:
        pass
    return ws.store.add_model_version(
        ModelVersionRow(
            name=name,
            kind="adapter",
            base_ref=base.name,
            adapter_path=result["output_path"],
            parent=parent.name,
            task=task.name,
            recipe=recipe,
            data_hash=content_hash(sorted(it.id for it in items)),
            metrics={
                k: result.get(k)
                for k in ("steps", "train_tokens", "tokens_per_s", "train_loss", "train_runtime_s")
            }
            | {"metrics_path": str(job.output_dir / "metrics.jsonl")},
        )
    )


def progress_printer(total_hint: str = "") -> Callable[[dict[str, Any]], None]:
    """A progress callback for ``run_job``: one INFO record per logged step (``  train: step N/M, ...``).

    The records carry ``bare=True``: the CLI's log handler prints them as they are, without its
    ``kaizen: `` prefix, so the lines on stderr look as they always did.
    """

    def show(rec: dict[str, Any]) -> None:
        if "loss" in rec or "reward" in rec:
            parts = [f"step {rec.get('step')}/{rec.get('max_steps')}"]
            for k in ("loss", "reward", "entropy", "learning_rate", "tokens_per_s"):
                if k in rec:
                    v = rec[k]
                    parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
            log.info("  train: %s%s", ", ".join(parts), total_hint, extra={"bare": True})

    return show


def register_adapter(
    ws: Workspace,
    task: TaskSpec,
    *,
    name: str,
    adapter_path: Path,
    parent: ModelVersionRow,
    recipe: dict[str, Any],
    items: list[EvalItem] | None = None,
) -> ModelVersionRow:
    """Register an adapter kaizen made without a training job (e.g. a sparse rollback) as a new version."""
    try:
        return ws.store.get_model_version(name)  # idempotent: a resumed step registers nothing twice
    except NotFoundError:
        pass
    base = base_of(ws.store, parent)
    return ws.store.add_model_version(
        ModelVersionRow(
            name=name,
            kind="adapter",
            base_ref=base.name,
            adapter_path=str(adapter_path),
            parent=parent.name,
            task=task.name,
            recipe=recipe | {"holds_full_data": False},
            data_hash=content_hash(sorted(it.id for it in items or [])),
            metrics={},
        )
    )
