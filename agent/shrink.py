"""Shrink: keep the smallest part of a candidate's update that still does what it was trained to do.

Fine-tuning on a few hundred examples moves a small model further than the fix needs, and the excess is
what breaks right answers on inputs nobody logged. Weight-space interpolation toward the start (WiSE-FT;
``tools/train/interpolate.py``) takes some of the update back. How much is chosen on the candidate's *own
training examples* — the corrected failures and inferred labels it was taught, not the replayed passes — so
the suites that verify it stay untouched: the smallest ``α`` in ``ALPHAS`` whose score there keeps
``RETAIN`` of the full update's is kept; when none does, the full update is. Measured (README, "Shrink"):
on a strong-v1 probe the refit's gold accuracy went 0.833 → 0.887 at α = 0.5 (breaks 23 → 9 of v1's right
answers, fixes 27 → 29); on the demo α = 0.75 kept only 61 of 65 taught answers (α = 1 kept on gold: 0.870
there vs 0.845 at 0.75).
"""

from __future__ import annotations

from typing import Any

from kaizen.agent.context import RunContext, run_dir
from kaizen.agent.measure import measure
from kaizen.agent.state import RepairState
from kaizen.tools.data import write_items
from kaizen.tools.schema import EvalItem

ALPHAS = (0.5, 0.75)  # tried smallest first: each costs one evaluation of the taught examples
RETAIN = 0.95  # share of the full update's score on the taught examples an interpolation must keep
MIN_TAUGHT = 8  # fewer taught examples cannot tell a kept fix from a lost one
MAX_TAUGHT = 200  # evaluation cost bound: a seeded sample beyond it


def taught(items: list[EvalItem]) -> list[EvalItem]:
    """What an update was meant to teach: every training example but the replayed passes (the incumbent
    already answers those; they hold it in place and say nothing about how much update the fix needs)."""
    import random

    out = [it for it in items if it.metadata.get("provenance") != "replay"]
    return random.Random(0).sample(out, MAX_TAUGHT) if len(out) > MAX_TAUGHT else out


def shrink(
    state: RepairState,
    c: RunContext,
    task: Any,
    *,
    start: Any,
    start_adapter: Any,
    version: Any,
    items: list[EvalItem],
    step: str,
    skill: int | None,
) -> tuple[Any, dict[str, Any]]:
    """(the version to verify, what was tried): ``version`` itself or its interpolation toward ``start``.

    ``start_adapter``: the adapter ``version`` continued, or None when it is a fresh LoRA on ``start``
    (then α scales the adapter's delta).
    """
    from kaizen.tools.train.interpolate import interpolate_adapter
    from kaizen.tools.train.rollback import IncompatibleAdapters
    from kaizen.tools.versions import register_adapter

    fit = taught(items)
    if len(fit) < MIN_TAUGHT or not version.adapter_path:
        why = "no adapter" if not version.adapter_path else f"{len(fit)} taught examples"
        return version, {"skipped": why}
    rd = run_dir(state)
    path = rd.step(step) / "taught.jsonl"
    write_items(path, fit)
    full = _score(state, c, version.name, skill, str(path))
    tried: dict[str, float | None] = {"1.0": full}
    info: dict[str, Any] = {"alpha": 1.0, "taught": len(fit), "scores": tried, "retain": RETAIN}
    if not full:
        return version, info | {"skipped": "the full update scores 0 on what it was taught"}
    for alpha in ALPHAS:
        name = f"{version.name}-a{round(alpha * 100)}"
        out = rd.step(step) / f"adapter-a{round(alpha * 100)}"
        try:
            if not out.exists():
                interpolate_adapter(start_adapter, version.adapter_path, alpha, out)
        except IncompatibleAdapters as e:
            return version, info | {"skipped": str(e)}
        shrunk = register_adapter(
            c.workspace,
            task,
            name=name,
            adapter_path=out,
            parent=version,
            recipe={"kind": "interpolation", "to": start.name, "alpha": alpha},
            items=items,
        )
        tried[str(alpha)] = score = _score(state, c, name, skill, str(path))
        if keeps(full, score):
            return shrunk, info | {"alpha": alpha, "version": name}
    return version, info


def keeps(full: float, score: float | None, retain: float = RETAIN) -> bool:
    """Does an interpolation scoring ``score`` on the taught examples keep enough of the full update's?

    Examples:
        >>> keeps(49 / 53, 48 / 53), keeps(65 / 67, 61 / 67), keeps(0.9, None)
        (True, False, False)
    """
    return score is not None and score >= retain * full


def _score(state: RepairState, c: RunContext, version: str, skill: int | None, path: str) -> float | None:
    return next(iter(measure(state, c, version, skill, {"taught": path}).values()))["score"]
