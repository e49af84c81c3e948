"""From clean items to the logs a repair loop sees: perturbed inputs, then the feedback a naive retrainer gets.

``perturb`` applies the fixable noise and assigns the poisons (exact counts per stage rate);
``naive_feedback`` then hides or falsifies corrections in AdaptFT's fixed shares. Both are keyed by
item id, so the result for an item never depends on the order of the items.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from kaizen.workflows.bench.perturb.draws import other_label, poison_count, rank_key, rng_for, split_counts
from kaizen.workflows.bench.perturb.model import (
    NAIVE_NO_CORRECTION,
    NAIVE_POISON_CORRECT,
    NAIVE_POISON_WRONG,
    OUT_OF_SCOPE,
    Item,
    NaiveTreatment,
    PerturbedItem,
)
from kaizen.workflows.bench.perturb.registry import PERTURBATIONS, effective_rates, names


def _check_inputs(items: Sequence[Item], labels: Sequence[str]) -> list[str]:
    """Fail loudly on inputs that would silently break the benchmark's guarantees."""
    labels = list(labels)
    if len(set(labels)) < 2 or len(set(labels)) != len(labels):
        raise ValueError("labels must be at least two distinct labels (a label flip needs another label)")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique (every seeded draw is keyed by the id)")
    bad = sorted({it.label for it in items} - set(labels))
    if bad:
        raise ValueError(f"item labels not in the label set: {bad}")
    return labels


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    names_ = list(weights)
    return rng.choices(names_, weights=[weights[n] for n in names_])[0]


def _assign_poisons(
    items: Sequence[Item], rates: Mapping[str, float], seed: int, poison_rate: float | None
) -> dict[str, str]:
    """Which items get which poison: exactly ``poison_count(n, poison_rate)`` when a rate is given,
    else each item independently with the summed poison rates (so each type keeps its own rate).

    At most one poison per item: two poisons on one trace would make the ground truth ambiguous.
    """
    weights = {n: rates[n] for n in names("poison") if rates[n] > 0}
    if poison_rate is None:
        total = min(1.0, sum(weights.values()))
        out = {}
        for it in items:
            rng = rng_for(seed, "poison?", it.id, it.text)
            if weights and rng.random() < total:
                out[it.id] = _weighted(rng, weights)
        return out
    if not 0.0 <= poison_rate <= 1.0:
        raise ValueError(f"poison_rate must be in [0, 1], got {poison_rate}")
    k = poison_count(len(items), poison_rate)
    if k and not weights:
        raise ValueError("poison_rate > 0 but every poison perturbation has rate 0")
    chosen = sorted(items, key=lambda it: rank_key(seed, "poison-pick", it.id))[:k]
    return {it.id: _weighted(rng_for(seed, "poison-type", it.id, it.text), weights) for it in chosen}


def _perturb_one(
    item: Item, labels: Sequence[str], seed: int, rates: Mapping[str, float], poison: str | None
) -> PerturbedItem:
    """Fixable perturbations in registry order (each with its own draw), then the poison, if any."""
    text, hits = item.text, []
    for name in names("fixable"):
        rng = rng_for(seed, name, item.id, item.text)
        if rates[name] > 0 and rng.random() < rates[name]:
            new, _ = PERTURBATIONS[name].fn(text, item.label, labels, rng)
            if new != text:
                text, hits = new, [*hits, name]
    out = PerturbedItem(
        id=item.id,
        source_text=item.text,
        text=text,
        gold=item.label,
        correction=item.label,
        perturbations=hits,
    )
    if poison is None:
        return out
    p = PERTURBATIONS[poison]
    new, correction = p.fn(text, item.label, labels, rng_for(seed, poison, item.id, item.text))
    kept = [] if p.replaces_input else hits  # noise on a text that is gone did not happen
    return out.model_copy(
        update={
            "text": new,
            "correction": correction,
            "perturbations": [*kept, poison],
            "poisoned": True,
            "poison": poison,
            "correct_label_known": p.keeps_label,
        }
    )


def perturb(
    items: Sequence[Item],
    labels: Sequence[str],
    seed: int,
    rates: Mapping[str, float] | None = None,
    poison_rate: float | None = None,
) -> list[PerturbedItem]:
    """Perturb items the AdaptFT way, in input order.

    Every fixable perturbation hits each item independently with its rate (``rates`` overrides the
    defaults; 0 disables) and is recorded only if it changed the text. Poison: with ``poison_rate``
    (a stage's 0.15 / 0.25 / 0.40) exactly ``poison_count(n, poison_rate)`` items, picked by the
    seed, get one poison each, its type drawn with the poison rates as weights; without it each
    item is poisoned independently at the poison rates. Seeded per item id and perturbation name:
    the result for an item does not depend on item order or on the other perturbations' rates.
    """
    labels = _check_inputs(items, labels)
    eff = effective_rates(rates)
    poisons = _assign_poisons(items, eff, seed, poison_rate)
    return [_perturb_one(it, labels, seed, eff, poisons.get(it.id)) for it in items]


def _naive_one(
    item: PerturbedItem,
    treatment: NaiveTreatment | None,
    labels: Sequence[str],
    seed: int,
    abstain_label: str | None,
) -> PerturbedItem:
    if treatment is None:
        return item.model_copy()
    right = item.gold if item.correct_label_known else abstain_label
    if treatment == "no_correction":
        correction = None
    elif treatment == "correct":
        correction = right
    elif item.correction is not None and item.correction != right:
        correction = item.correction  # the poison's own wrong correction
    else:
        correction = other_label(right or "", labels, rng_for(seed, "naive-wrong", item.id))
    return item.model_copy(update={"correction": correction, "naive": treatment})


def naive_feedback(
    items: Sequence[PerturbedItem],
    labels: Sequence[str],
    seed: int,
    failed: Collection[str] | None = None,
    abstain_label: str | None = OUT_OF_SCOPE,
) -> list[PerturbedItem]:
    """AdaptFT's "realistic naive" feedback: what a naive retrainer is handed, in input order.

    * noisy-but-fixable failures (not poisoned, at least one perturbation, id in ``failed``; every
      such item when ``failed`` is None): exactly 30 % get no correction, the rest keep the right one;
    * poisoned items (failing or not): exactly 50 % get a wrong correction (the poison's own when it
      has one), 20 % the right one (the gold label, or ``abstain_label`` when no label is right), and
      the remaining 30 % none: the 30 % "no correction" of the protocol applies to them too, which
      is what makes the three shares add up to 100 %;
    * everything else is unchanged.

    Counts are exact (largest-remainder rounding) and chosen by the seed per item id, so the
    result does not depend on item order. ``naive`` on each item records its treatment.
    """

    def noisy_failure(it: PerturbedItem) -> bool:
        return not it.poisoned and bool(it.perturbations) and (failed is None or it.id in failed)

    noisy = [it for it in items if noisy_failure(it)]
    poisoned = [it for it in items if it.poisoned]
    treat: dict[str, NaiveTreatment] = {}
    n_none = split_counts(len(noisy), (NAIVE_NO_CORRECTION, 1 - NAIVE_NO_CORRECTION))[0]
    for it in sorted(noisy, key=lambda it: rank_key(seed, "naive-noisy", it.id))[:n_none]:
        treat[it.id] = "no_correction"
    n_wrong, n_right, _ = split_counts(
        len(poisoned),
        (NAIVE_POISON_WRONG, NAIVE_POISON_CORRECT, 1 - NAIVE_POISON_WRONG - NAIVE_POISON_CORRECT),
    )
    for i, it in enumerate(sorted(poisoned, key=lambda it: rank_key(seed, "naive-poison", it.id))):
        treat[it.id] = "wrong" if i < n_wrong else "correct" if i < n_wrong + n_right else "no_correction"
    return [_naive_one(it, treat.get(it.id), labels, seed, abstain_label) for it in items]


def items_from_pairs(pairs: Iterable[tuple[str, str]]) -> list[Item]:
    """Items from (text, label) rows (e.g. ``workflows.clinc.rows``), ids from content.

    Content ids keep an item's draws the same when the rows are reordered; repeated rows get a
    ``-k`` suffix so ids stay unique.
    """
    seen: Counter[str] = Counter()
    out = []
    for text, label in pairs:
        base = hashlib.sha256(json.dumps([text, label], ensure_ascii=False).encode()).hexdigest()[:12]
        seen[base] += 1
        out.append(Item(id=base if seen[base] == 1 else f"{base}-{seen[base]}", text=text, label=label))
    return out


def hit_counts(items: Iterable[PerturbedItem]) -> dict[str, int]:
    """How many items each perturbation changed (for reports and sanity checks)."""
    return dict(Counter(name for it in items for name in it.perturbations))
