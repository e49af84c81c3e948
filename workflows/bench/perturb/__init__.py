"""AdaptFT-style perturbations: turn clean labelled inputs into the noisy production logs a repair
loop has to survive (Pioneer Agent's AdaptFT-Bench, arXiv 2604.09791; README, Research).

Two families. **Fixable** noise (typos, casing, truncation, preambles, code-switching, …) leaves the
input a valid instance of its gold label and the feedback correction right: training on it should
help. **Poison** either corrupts the feedback (a wrong correction, a correction outside the label
set) or makes the input something that is not an instance of any label (off-domain text, a
jailbreak, gibberish, an empty message) while the feedback still names a label: training on it
teaches the wrong thing, so a repair loop has to find and drop it.

Everything is pure and seeded. Each (seed, perturbation, item) gets its own ``random.Random``
derived from a hash, so whether a perturbation hits an item, and what it does, never depends on the
order of the items or on which other perturbations are enabled. Stdlib + pydantic only: the
benchmark, the tests and the CLI import this without the ML stack.

The parts: ``model`` (items, the registry entry, the rates), ``draws`` (seeded randomness),
``words`` (word tables), ``fixable`` and ``poison`` (the perturbations), ``registry`` (all of them
by name, in application order), ``generate`` (``perturb`` and ``naive_feedback``).
"""

from kaizen.workflows.bench.perturb.draws import poison_count
from kaizen.workflows.bench.perturb.generate import hit_counts, items_from_pairs, naive_feedback, perturb
from kaizen.workflows.bench.perturb.model import (
    NAIVE_NO_CORRECTION,
    NAIVE_POISON_CORRECT,
    NAIVE_POISON_WRONG,
    OUT_OF_SCOPE,
    STAGE_POISON_RATES,
    Family,
    Item,
    NaiveTreatment,
    Perturbation,
    PerturbedItem,
)
from kaizen.workflows.bench.perturb.registry import PERTURBATIONS, apply_one, effective_rates, names, table

__all__ = [
    "NAIVE_NO_CORRECTION",
    "NAIVE_POISON_CORRECT",
    "NAIVE_POISON_WRONG",
    "OUT_OF_SCOPE",
    "PERTURBATIONS",
    "STAGE_POISON_RATES",
    "Family",
    "Item",
    "NaiveTreatment",
    "Perturbation",
    "PerturbedItem",
    "apply_one",
    "effective_rates",
    "hit_counts",
    "items_from_pairs",
    "naive_feedback",
    "names",
    "perturb",
    "poison_count",
    "table",
]
