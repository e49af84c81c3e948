"""Which pipeline a cold start tries next: data, hyper-parameters and strategy, by the score so far.

The policy is Pioneer Agent's iteration rule (README, Research) applied to cold start: below 0.80 the *data* is the
problem (rework it: oversample the labels the model gets wrong, rationale targets for reasoning
tasks), between 0.80 and 0.95 the *hyper-parameters* are (gentler learning rate, more epochs,
more capacity), above 0.95 add examples for what still fails; stop at the target score τ. Every
attempt is a real train-and-evaluate run, and attempts already tried are never repeated, so the
search is a short, explainable walk rather than a blind sweep. GRPO is only proposed on a GPU
and only where a verifier exists (``rewards_for_kind``: classification labels, math answers, extraction
JSON, code tests): on a CPU its sampled generations make one step cost minutes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kaizen.tools.schema import TaskSpec
from kaizen.tools.train.rewards import VERIFIABLE_KINDS

DATA_REWORK_BELOW = 0.80
TUNE_BELOW = 0.95


class Attempt(BaseModel):
    """One pipeline tried: how it was built, and (once run) what it scored."""

    index: int
    name: str = Field(description="Pipeline id, unique within a run (e.g. sft, sft-weak-x2, grpo).")
    strategy: Literal["sft", "grpo"] = "sft"
    why: str = ""
    params: dict[str, Any] = Field(
        default_factory=dict, description="TrainJob fields (epochs, learning_rate, lora, …)."
    )
    oversample: dict[str, int] = Field(
        default_factory=dict, description="label → copies of its training examples."
    )
    rationale: bool = Field(
        False, description="Train on worked solutions (metadata.rationale) instead of bare answers."
    )
    from_attempt: int | None = Field(None, description="Start from this attempt's adapter (GRPO after SFT).")
    version: str | None = None
    status: Literal["planned", "done", "failed"] = "planned"
    score: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    correct: dict[str, bool] = Field(default_factory=dict, exclude=False)
    train_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None


def base_params(on_gpu: bool) -> dict[str, Any]:
    """The first recipe: measured defaults for a fresh LoRA on a small model (see README)."""
    lora: dict[str, Any] = {"r": 16, "alpha": 32}
    if not on_gpu:
        lora["top_layers"] = 12  # the largest CPU speed-up measured; a GPU adapts every layer
    return {"epochs": 3.0, "learning_rate": 1e-3, "batch_size": 8, "lora": lora}


def weak_labels(metrics: dict[str, Any], factor: int = 2) -> dict[str, int]:
    """Labels whose F1 is below the macro average: the data rework oversamples these."""
    per = metrics.get("per_label") or {}
    if not per:
        return {}
    mean = sum(v["f1"] for v in per.values()) / len(per)
    return {lab: factor for lab, v in per.items() if v["f1"] < mean}


def _candidates(task: TaskSpec, best: Attempt, on_gpu: bool, has_rationales: bool) -> list[Attempt]:
    p = best.params
    lora = dict(p.get("lora") or {})
    weak = weak_labels(best.metrics)
    cands: list[Attempt] = []
    if best.score is not None and best.score < DATA_REWORK_BELOW:
        if has_rationales and task.kind == "math":
            cands.append(
                Attempt(
                    index=0,
                    name="sft-rationale",
                    params=p,
                    rationale=True,
                    why=f"score {best.score:.3f} < {DATA_REWORK_BELOW}: rework data — train on worked solutions",
                )
            )
        if weak:
            cands.append(
                Attempt(
                    index=0,
                    name="sft-weak-x2",
                    params=p | {"epochs": p.get("epochs", 3.0) + 1},
                    oversample=weak,
                    why=f"score {best.score:.3f} < {DATA_REWORK_BELOW}: rework data — oversample weak labels {sorted(weak)}",
                )
            )
        cands.append(
            Attempt(
                index=0,
                name="sft-more-epochs",
                params=p | {"epochs": p.get("epochs", 3.0) * 2},
                why=f"score {best.score:.3f} < {DATA_REWORK_BELOW}: the data is seen too few times — double the epochs",
            )
        )
    elif best.score is not None and best.score < TUNE_BELOW:
        cands += [
            Attempt(
                index=0,
                name="sft-lr-half",
                params=p
                | {"learning_rate": p.get("learning_rate", 1e-3) / 2, "epochs": p.get("epochs", 3.0) + 1},
                why=f"score {best.score:.3f} in [{DATA_REWORK_BELOW}, {TUNE_BELOW}): tune — half the learning rate, one more epoch",
            ),
            Attempt(
                index=0,
                name="sft-rank-32",
                params=p | {"lora": lora | {"r": 32, "alpha": 64}},
                why=f"score {best.score:.3f} in [{DATA_REWORK_BELOW}, {TUNE_BELOW}): tune — more adapter capacity (r 32)",
            ),
        ]
    else:
        if weak:
            cands.append(
                Attempt(
                    index=0,
                    name="sft-weak-x2",
                    params=p,
                    oversample=weak,
                    why=f"score {best.score:.3f} ≥ {TUNE_BELOW}: add examples of the labels that still fail {sorted(weak)}",
                )
            )
    # The kinds kaizen.tools.train.rewards can verify (a classification task needs its label set).
    verifier = task.kind in VERIFIABLE_KINDS and (task.kind != "classification" or bool(task.labels))
    if on_gpu and verifier:
        cands.append(
            Attempt(
                index=0,
                name="grpo",
                strategy="grpo",
                from_attempt=best.index,
                params={"epochs": 1.0, "learning_rate": 5e-5, "batch_size": 8, "lora": lora},
                why="a verifier exists and a GPU is present: GRPO from the best SFT adapter",
            )
        )
    return cands


def next_attempt(
    task: TaskSpec,
    history: list[Attempt],
    *,
    target: float,
    on_gpu: bool = False,
    has_rationales: bool = False,
) -> Attempt | None:
    """The next pipeline to try, or None when the target is reached or nothing new is left.

    Args:
        task: The task being learnt.
        history: Attempts so far, in order (scored or failed).
        target: Stop once the best held-out score reaches this (τ).
        on_gpu: Whether training runs on a GPU (enables GRPO).
        has_rationales: Whether training items carry worked solutions (``metadata.rationale``).
    """
    if not history:
        return Attempt(
            index=0,
            name="sft",
            params=base_params(on_gpu),
            why="first pipeline: LoRA SFT with the measured defaults",
        )
    scored = [a for a in history if a.score is not None]
    if not scored:
        return None  # every attempt failed: trying variants of a broken setup wastes the budget
    best = max(scored, key=lambda a: a.score or 0.0)
    if (best.score or 0.0) >= target:
        return None
    tried = {a.name for a in history}
    for cand in _candidates(task, best, on_gpu, has_rationales):
        if cand.name not in tried:
            # A variant keeps what made the best attempt best (its data mix), changing one thing.
            keep = (
                {}
                if cand.strategy == "grpo"
                else {
                    "oversample": cand.oversample or best.oversample,
                    "rationale": cand.rationale or best.rationale,
                }
            )
            return cand.model_copy(update={"index": len(history)} | keep)
    return None
