"""AdaptFT-Bench's stages, the pure part: each stage's batch of fresh inputs, its 70/30 split, the held-out
set, and the scores read off it.

The protocol (Pioneer Agent's AdaptFT-Bench, arXiv 2604.09791; README, Research): a deployed v1 meets
three batches of fresh production inputs with rising poison rates (``STAGE_POISON_RATES``). Each
batch is perturbed, run through the arm's *own* production model, and given feedback: the agent arm
sees the feedback as the perturbations left it (fixable noise keeps the right correction, a poison
brings its wrong one); the naive arm sees AdaptFT's "realistic naive" corruption on top
(``perturb.naive_feedback``). 70 % of a batch becomes logs; 30 % joins the held-out set, which is
always scored on the *clean gold* (the source text and its true label), never on the feedback.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kaizen.tools.errors import DataError
from kaizen.tools.schema import EvalItem
from kaizen.workflows.bench.adaptft.scenarios import Scenario, rank
from kaizen.workflows.bench.perturb import STAGE_POISON_RATES, Item, PerturbedItem, perturb, poison_count

TEST_FRACTION = 0.30  # AdaptFT: each stage's logs are split 70/30 into train/test


def stage_batches(
    pool: Sequence[Item], n_stages: int, per_stage: int, seed: int, *, stratify: bool = True
) -> list[list[Item]]:
    """``n_stages`` disjoint batches of ``per_stage`` fresh inputs each, in a seeded order.

    Stratified: labels take turns (each label's items in seeded order; the label that starts a
    stage rotates), so every stage sees every intent, v1's gaps included. Raises when the pool is
    too small: silently shorter stages would change the poison counts the protocol promises.
    """
    if n_stages * per_stage > len(pool):
        raise DataError(
            f"the inference pool holds {len(pool)} inputs; {n_stages} stages × {per_stage} need more"
        )
    if not stratify:
        order = sorted(pool, key=lambda it: rank(seed, "stage-order", it.id))
        return [order[s * per_stage : (s + 1) * per_stage] for s in range(n_stages)]
    queues: dict[str, list[Item]] = defaultdict(list)
    for it in sorted(pool, key=lambda it: rank(seed, "stage-order", it.id)):
        queues[it.label].append(it)
    labels = sorted(queues)
    out: list[list[Item]] = []
    for s in range(n_stages):
        batch: list[Item] = []
        turn = s
        while len(batch) < per_stage:
            if not any(queues.values()):
                raise DataError("the inference pool ran out of inputs")
            q = queues[labels[turn % len(labels)]]
            if q:
                batch.append(q.pop(0))
            turn += 1
        out.append(batch)
    return out


def split_batch(
    items: Sequence[PerturbedItem], seed: int, stage: int, test_fraction: float = TEST_FRACTION
) -> tuple[list[PerturbedItem], list[PerturbedItem]]:
    """(logs, test): exactly ``round(test_fraction × n)`` (half up) items go to the stage's test split.

    Chosen by a seeded key per item id, so the split does not depend on the batch's order; both
    parts keep the input order.
    """
    k = poison_count(len(items), test_fraction)
    test_ids = {it.id for it in sorted(items, key=lambda it: rank(seed, f"test-split-{stage}", it.id))[:k]}
    return [it for it in items if it.id not in test_ids], [it for it in items if it.id in test_ids]


def gold_items(items: Iterable[PerturbedItem]) -> list[EvalItem]:
    """Held-out examples on the *clean gold*: the source text (before any perturbation) and its label.

    Poisoned inputs count too: their source was a real request, and that is what users send.
    """
    return [
        EvalItem(id=it.id, messages=[{"role": "user", "content": it.source_text}], expected=it.gold)
        for it in items
    ]


def heldout_union(test_splits: Sequence[Sequence[PerturbedItem]]) -> list[EvalItem]:
    """The held-out set after a stage: every stage's test split so far, on clean gold, in stage order."""
    seen: set[str] = set()
    out = []
    for split in test_splits:
        for it in gold_items(split):
            if it.id not in seen:
                seen.add(it.id)
                out.append(it)
    return out


@dataclass
class Stage:
    """One deployment stage's data: the perturbed batch and its 70/30 split."""

    index: int  # 1-based
    poison_rate: float
    batch: list[PerturbedItem]
    logs: list[PerturbedItem]
    test: list[PerturbedItem]

    @property
    def poisoned(self) -> int:
        return sum(it.poisoned for it in self.batch)


def build_stages(
    scenario: Scenario, per_stage: int, seed: int, rates: Sequence[float] = STAGE_POISON_RATES
) -> list[Stage]:
    """Every stage's perturbed batch and split, decided up front from the seed alone."""
    batches = stage_batches(scenario.pool, len(rates), per_stage, seed, stratify=scenario.stratify)
    out = []
    for s, (batch, rate) in enumerate(zip(batches, rates, strict=True), 1):
        perturbed = perturb(
            batch, scenario.labels, seed=seed * 1000 + s, rates=scenario.rates, poison_rate=rate
        )
        logs, test = split_batch(perturbed, seed, s)
        out.append(Stage(index=s, poison_rate=rate, batch=perturbed, logs=logs, test=test))
    return out


def score(correct: Mapping[str, bool], ids: Sequence[str]) -> float | None:
    """Accuracy of one version's outcomes over ``ids`` (None when there are none)."""
    if not ids:
        return None
    missing = [i for i in ids if i not in correct]
    if missing:
        raise KeyError(f"{len(missing)} held-out examples were not evaluated (e.g. {missing[0]})")
    return sum(bool(correct[i]) for i in ids) / len(ids)


def count_regressions(before: Mapping[str, bool], after: Mapping[str, bool]) -> int:
    """Right→wrong flips between two versions on the examples both were evaluated on (the gate's pairing)."""
    from kaizen.tools.gate import compare

    return len(compare("held-out", dict(before), dict(after)).newly_wrong)
