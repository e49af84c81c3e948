"""Making a candidate version: one training job (or a rollback) registered with its lineage.

Shared by the train, recover and refit nodes. Every step is safe to re-run after a kill: the job
resumes or adopts its runner, and a version already registered under the step's name is reused.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from kaizen.agent.context import RunContext, run_dir
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.schema import EvalItem
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import LoraSpec
from kaizen.tools.versions import build_job, progress_printer, register_trained


def version_name(state: RepairState, step: str) -> str:
    return f"{state['task']}-{state['run_id'][:8]}-i{step}"


# GRPO sized for a CPU (issue 16): a group of 4 completions of at most 8 tokens (a label, a short
# answer), 4 prompts a step, ``Plan.grpo_steps`` steps. On a GPU, raise them through train_overrides.
GRPO_GROUP = 4
GRPO_COMPLETION_TOKENS = 8
GRPO_PROMPTS_PER_STEP = 4
# RL runs at 0.4 × the plan's rate (2e-4 for the default 5e-4). Measured on the demo (kaizen bench rl,
# 64 steps, exact-label reward, answer guidance): 2e-4 fixed 12 of 19 target failures, 1e-4 fixed 10;
# the earlier 0.1 was a workaround for a lenient reward (README, GRPO).
GRPO_LR_SCALE = 0.4
# Task kinds whose reference is a whole reply, so an all-zero group can be guided with it (hint "answer").
GUIDED_KINDS = frozenset({"classification", "extraction"})
# ``Plan.epoch_examples`` on a CPU: 3 epochs up to 320 examples (every demo-sized set), fewer passes above.
CPU_EPOCH_EXAMPLES = 320


def capped_epochs(n: int, epochs: float, epoch_examples: int | None) -> float:
    """Passes over ``n`` examples when an epoch counts at most ``epoch_examples`` examples' worth of steps.

    Never under one full pass (every failure is seen), never more than asked; 0 or None: no cap.

    >>> capped_epochs(160, 3, 320), capped_epochs(640, 3, 320), capped_epochs(5000, 3, 320)
    (3, 1.5, 1.0)
    >>> capped_epochs(640, 3, 0)
    3
    """
    if not epoch_examples or n <= epoch_examples:
        return epochs
    return max(min(epochs, 1.0), round(epochs * epoch_examples / n, 2))


def epoch_cap(p: Plan, device: str) -> int | None:
    """The plan's ``epoch_examples``, its default resolved for the training ``device`` (``pick_device``'s
    answer): a cap on a CPU, none on a GPU."""
    if p.epoch_examples is not None:
        return p.epoch_examples
    return CPU_EPOCH_EXAMPLES if device == "cpu" else None


def train_candidate(
    state: RepairState,
    c: RunContext,
    items: list[EvalItem],
    *,
    step: str,
    start: Any,
    from_adapter: bool,
    p: Plan,
    skill_version: int | None,
    kind: str = "sft",
    epochs: float | None = None,
    learning_rate: float | None = None,
    min_steps: int | None = None,
    train_items_path: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train ``items`` from ``start`` (continuing its adapter when ``from_adapter``); returns (version, result).

    ``kind``: ``sft``; ``grpo`` — the items are GRPO prompts, their ``expected`` the reward reference
    (``rewards_for_kind(task.kind)``); ``sft+grpo`` — SFT registered as ``<name>-sft``, then GRPO continuing
    it registered under the step's name (its parent is the SFT version, so the lineage shows both). The
    returned result is the last job's, with ``train_tokens``/``train_runtime_s`` summed over both and the
    SFT part under ``"sft"``.
    """
    # What every job of this step shares; each call adds what differs (kind, name, start); the GRPO step
    # after SFT keeps its own schedule (steps, not epochs).
    train = functools.partial(
        _train_one, state, c, items, p=p, skill_version=skill_version, train_items_path=train_items_path
    )
    scheduled = functools.partial(train, epochs=epochs, learning_rate=learning_rate, min_steps=min_steps)
    if kind == "sft+grpo":
        sft_v, sft_r = scheduled(
            kind="sft",
            name=version_name(state, step) + "-sft",
            job_dir=run_dir(state).step(step) / "job-sft",
            start=start,
            from_adapter=from_adapter,
        )
        version, result = train(
            kind="grpo",
            name=version_name(state, step),
            job_dir=run_dir(state).job(step),
            start=sft_v,
            from_adapter=True,
        )
        part = {k: sft_r.get(k) for k in ("steps", "train_tokens", "train_runtime_s")}
        return version, result | {
            "train_tokens": int(result.get("train_tokens") or 0) + int(sft_r.get("train_tokens") or 0),
            "train_runtime_s": round(
                float(result.get("train_runtime_s") or 0) + float(sft_r.get("train_runtime_s") or 0), 2
            ),
            "sft": part
            | {"version": sft_v.name, "metrics_path": str(Path(sft_r["job_dir"]) / "metrics.jsonl")},
        }
    if kind not in ("sft", "grpo"):
        raise ValueError(f"unknown training kind {kind!r}: use sft, grpo or sft+grpo")
    return scheduled(
        kind=kind,
        name=version_name(state, step),
        job_dir=run_dir(state).job(step),
        start=start,
        from_adapter=from_adapter,
    )


def _grpo_params(p: Plan, task: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """A CPU-sized GRPO job: the task kind's verifier, group 4, ≤ 8 completion tokens, a handful of steps."""
    from kaizen.tools.train.rewards import rewards_for_kind

    params: dict[str, Any] = dict(
        rewards=rewards_for_kind(task.kind),
        num_generations=GRPO_GROUP,
        max_completion_length=GRPO_COMPLETION_TOKENS,
        batch_size=GRPO_PROMPTS_PER_STEP * GRPO_GROUP,
        max_steps=p.grpo_steps,
    )
    if task.kind in GUIDED_KINDS:
        # Off-policy guidance for every all-zero group: the never-seen intents of a repair are exactly the
        # prompts no sample gets right (measured on the demo: 12 of 19 target failures fixed with it, 6 with
        # prompt hints at twice the time; README, GRPO).
        params |= dict(hint="answer", hint_share=1.0)
    return params | extra  # train_overrides win (e.g. a GPU run's larger groups)


def _train_one(
    state: RepairState,
    c: RunContext,
    items: list[EvalItem],
    *,
    kind: str,
    name: str,
    job_dir: Path,
    start: Any,
    from_adapter: bool,
    p: Plan,
    skill_version: int | None,
    epochs: float | None = None,
    learning_rate: float | None = None,
    min_steps: int | None = None,
    train_items_path: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    from kaizen.tools.skills import get_skill

    ws = c.workspace
    task = ws.store.get_task(state["task"])
    extra = dict(c.train_overrides)
    learning_rate = extra.pop("learning_rate", learning_rate)  # a run's override wins over the plan's rate
    # A fresh adapter on the base needs the full LoRA rate; continuing one, the plan's gentler rate.
    lr = (
        learning_rate
        if learning_rate is not None
        else (p.learning_rate if from_adapter else 2 * p.learning_rate)
    )
    if kind == "grpo":
        # RL runs at GRPO_LR_SCALE × the plan's rate (see there).
        lr = lr if learning_rate is not None else lr * GRPO_LR_SCALE
        params = _grpo_params(p, task, extra)
        what = (
            f"GRPO on {len(items)} prompts, {params['max_steps']} steps × "
            f"{params['batch_size'] // params['num_generations']} prompts × {params['num_generations']} completions "
            f"(≤ {params['max_completion_length']} tokens), rewards {', '.join(params['rewards'])}"
        )
    else:
        from kaizen.tools.models.device import pick_device

        # The device the runner will train on, resolved as it does (model.device, else $KAIZEN_DEVICE, else auto).
        device = pick_device(None if ws.settings.model.device == "auto" else ws.settings.model.device)
        asked, cap = epochs if epochs is not None else p.epochs, epoch_cap(p, device)
        epochs = capped_epochs(len(items), asked, cap)
        steps = math.ceil(len(items) / p.batch_size) * epochs
        if steps < (min_steps if min_steps is not None else p.min_steps):
            extra.setdefault("max_steps", min_steps if min_steps is not None else p.min_steps)
        params = dict(epochs=epochs, batch_size=p.batch_size) | extra
        what = f"{len(items)} examples, {epochs:g} epochs" + (
            f" ({asked:g} over at most {cap} examples a pass)" if epochs != asked else ""
        )
    job = build_job(
        ws,
        task,
        items,
        kind=kind,
        start=start,
        job_dir=job_dir,
        from_incumbent=from_adapter,
        skill=get_skill(ws.store, task.name, skill_version) if skill_version else None,
        learning_rate=lr,
        lora=LoraSpec(r=p.lora_r, alpha=2 * p.lora_r, top_layers=p.top_layers),
        **params,
    )
    c.say(
        f"train [{name}]: {what}, lr {lr:g}, "
        f"{'continuing ' + start.name if from_adapter else 'fresh LoRA on the base'}"
    )
    result = run_job(job, progress_printer() if c.progress else None)
    version = register_trained(
        ws,
        task,
        job,
        result,
        name=name,
        parent=start,
        items=items,
        train_items_path=train_items_path,
        # RL is not reproduced by retraining on the items: a GRPO version never counts as holding its data.
        holds_full_data=not from_adapter and kind == "sft",
    )
    return version, result | {"job_dir": str(job_dir)}


def train_event(
    step: str, version: Any, result: dict[str, Any], job_dir: Path, **more: Any
) -> dict[str, Any]:
    return {
        "step": step,
        "version": version.name,
        "steps": result.get("steps"),
        "train_tokens": result.get("train_tokens"),
        "tokens_per_s": result.get("tokens_per_s"),
        "seconds": result.get("train_runtime_s"),
        "metrics_path": str(job_dir / "metrics.jsonl"),
        **{
            k: result[k] for k in ("grpo", "sft") if result.get(k)
        },  # GRPO's hints/early stop; sft+grpo's SFT part
        **more,
    }
