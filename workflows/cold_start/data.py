"""Cold start's data: the task file, the seed examples, and the split into training and held-out sets.

The held-out set is carved first (stratified by label), the training set is decontaminated against
it, and it is never trained on: the gate's verdict is only as honest as that split.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from kaizen.tools.data import item_id
from kaizen.tools.datasets.training import decontaminate, dedupe
from kaizen.tools.errors import ConfigError, DataError
from kaizen.tools.schema import EvalItem, Strict, TaskSpec

MIN_EVAL = 10
_EXTRA_KEYS = ("seed_examples", "target_score", "eval_fraction", "max_eval", "max_attempts")


class SeedExample(Strict):
    input: str = Field(min_length=1)
    expected: Any


class ColdStartSpec(Strict):
    """A task file: the task itself plus how to learn it."""

    task: TaskSpec
    seed_examples: list[SeedExample] = Field(
        default_factory=list, description="Inline examples (input → expected)."
    )
    target_score: float = Field(
        0.96, gt=0, le=1, description="Stop trying pipelines once the held-out score reaches this (τ)."
    )
    eval_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of the examples held out for evaluation."
    )
    max_eval: int = Field(200, ge=MIN_EVAL, description="Most examples in the held-out set.")
    max_attempts: int | None = Field(
        None, ge=1, le=10, description="Pipelines to try (default: 3 on CPU, 5 on a GPU)."
    )


def load_task_file(path: Path) -> ColdStartSpec:
    """Read ``task.yaml``: TaskSpec fields (name, kind, labels, description, …) plus the keys above."""
    if not path.is_file():
        raise ConfigError(f"{path}: task file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with name, kind, description, labels …")
    extra = {k: raw.pop(k) for k in _EXTRA_KEYS if k in raw}
    try:
        return ColdStartSpec.model_validate({"task": raw} | extra)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p != "task") or "<root>"
        msg = (
            "unknown key: remove it or check its spelling" if err["type"] == "extra_forbidden" else err["msg"]
        )
        raise ConfigError(f"{path}: {loc}: {msg}") from None


def seed_items(spec: ColdStartSpec) -> list[EvalItem]:
    out = []
    for ex in spec.seed_examples:
        msgs = [{"role": "user", "content": ex.input}]
        out.append(
            EvalItem(
                id=item_id(msgs, ex.expected),
                messages=msgs,
                expected=ex.expected,
                metadata={"provenance": "seed", "reason": "seed example from the task file"},
            )
        )
    return out


def check_labels(task: TaskSpec, items: list[EvalItem], where: str) -> None:
    if task.kind != "classification" or not task.labels:
        return
    bad = sorted({str(it.expected) for it in items} - set(task.labels))
    if bad:
        raise DataError(f"{where}: expected labels {bad} are not in the task's label set {task.labels}")


def split_data(
    task: TaskSpec,
    seeds: list[EvalItem],
    dataset: list[EvalItem],
    *,
    eval_fraction: float,
    max_eval: int,
    eval_set: list[EvalItem] | None = None,
    seed: int = 0,
) -> tuple[list[EvalItem], list[EvalItem], list[str]]:
    """(train, held-out eval, notes). The eval set is carved first and never trained on.

    With a data set, eval comes from it (seeds are kept for training: they are the user's own
    picks, not a sample); with seeds only, eval comes from the seeds. An explicit ``eval_set`` wins.
    """
    rnd = random.Random(seed)
    notes: list[str] = []
    pool = dedupe(dataset or seeds)
    if eval_set is None:
        k = min(max_eval, round(len(pool) * eval_fraction))
        if k < MIN_EVAL or len(pool) - k < MIN_EVAL:
            raise DataError(
                f"{len(pool)} examples are too few to train and hold out {MIN_EVAL}+ for evaluation: "
                f"give at least {2 * MIN_EVAL + 4} (seed data or --dataset)"
            )
        eval_set = _stratified(pool, k, rnd)
    eval_ids = {it.id for it in eval_set}
    train = [it for it in pool if it.id not in eval_ids] + (seeds if dataset else [])
    train, n_dup = decontaminate(dedupe(train), [eval_set])
    if n_dup:
        notes.append(f"decontamination dropped {n_dup} training examples that (nearly) repeat an eval input")
    if len(train) < MIN_EVAL:
        raise DataError(
            f"only {len(train)} training examples are left after holding out the eval set: add examples"
        )
    if len(eval_set) < 30:
        notes.append(
            f"the held-out set has {len(eval_set)} examples: one example is {1 / len(eval_set):.1%} of the score"
        )
    return train, eval_set, notes


def _stratified(items: list[EvalItem], k: int, rnd: random.Random) -> list[EvalItem]:
    by: dict[str, list[EvalItem]] = {}
    for it in items:
        by.setdefault(str(it.expected) if isinstance(it.expected, str) else "", []).append(it)
    for v in by.values():
        rnd.shuffle(v)
    out: list[EvalItem] = []
    while len(out) < k:
        for key in sorted(by):
            if by[key] and len(out) < k:
                out.append(by[key].pop())
    return out
