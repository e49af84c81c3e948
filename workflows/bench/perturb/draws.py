"""Seeded draws: every random choice of the benchmark is owned by one (seed, purpose, item) tuple.

Whether a perturbation hits an item, and what it does, must not depend on the order of the items
or on which other perturbations are enabled; a generator per tuple (derived from a hash) and
seeded sort keys for samples give exactly that. Counts are exact (largest remainder), because the
benchmark promises exact poison and feedback shares.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from typing import Any


def rng_for(seed: int, *parts: Any) -> random.Random:
    """A generator owned by one (seed, parts) tuple: independent of every other draw in the run."""
    blob = json.dumps([seed, *parts], ensure_ascii=False, default=str).encode()
    return random.Random(int.from_bytes(hashlib.sha256(blob).digest()[:8], "big"))


def rank_key(seed: int, tag: str, item_id: str) -> str:
    """A seeded pseudo-random sort key: picking the first k is an order-independent sample."""
    return hashlib.sha256(json.dumps([seed, tag, item_id]).encode()).hexdigest()


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split n by fractions (summing to 1) into integer counts that sum to n (largest remainder).

    Exact counts are what the benchmark promises; a two-way split rounds half up.
    """
    raw = [f * n for f in fractions]
    counts = [math.floor(x + 1e-9) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def poison_count(n: int, rate: float) -> int:
    """How many of n items a target poison rate poisons: round(rate * n), half up."""
    return split_counts(n, (rate, 1.0 - rate))[0]


def other_label(label: str, labels: Sequence[str], rng: random.Random) -> str:
    return rng.choice([lab for lab in labels if lab != label])
