"""Every perturbation by name, in application order: the fixable noise first, then the poisons.

The order is part of the result (the fixable perturbations edit the text one after the other), so it
is spelled out here rather than left to the order in which modules happen to be imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaizen.workflows.bench.perturb.draws import rng_for
from kaizen.workflows.bench.perturb.fixable import FIXABLE
from kaizen.workflows.bench.perturb.model import Family, Out, Perturbation
from kaizen.workflows.bench.perturb.poison import POISONS

PERTURBATIONS: dict[str, Perturbation] = {**FIXABLE, **POISONS}


def names(family: Family | None = None) -> list[str]:
    """Registered perturbation names (of one family), in application order."""
    return [n for n, p in PERTURBATIONS.items() if family is None or p.family == family]


def effective_rates(rates: Mapping[str, float] | None = None) -> dict[str, float]:
    """Default rates overridden by ``rates``; unknown names and rates outside [0, 1] are errors."""
    out = {n: p.default_rate for n, p in PERTURBATIONS.items()}
    for name, rate in (rates or {}).items():
        if name not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate for {name!r} must be in [0, 1], got {rate}")
        out[name] = float(rate)
    return out


def apply_one(name: str, text: str, label: str, labels: Sequence[str], seed: int = 0, key: str = "") -> Out:
    """Apply one perturbation unconditionally; ``key`` (e.g. an item id) varies the draw per input."""
    return PERTURBATIONS[name].fn(text, label, labels, rng_for(seed, "apply", name, key, text))


def table() -> list[dict[str, Any]]:
    """The registry as rows: name, family, default rate, target and one-line effect."""
    return [
        {
            "name": p.name,
            "family": p.family,
            "default_rate": p.default_rate,
            "target": p.target,
            "effect": p.effect,
        }
        for p in PERTURBATIONS.values()
    ]
