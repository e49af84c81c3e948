"""Shrink: keep the smallest part of a candidate's update that still does what it was trained to do.

Fine-tuning on a few hundred examples moves a small model further than the fix needs, and the excess is
what breaks right answers on inputs nobody logged. Weight-space interpolation toward the start (WiSE-FT;
``tools/train/interpolate.py``) takes some of the update back. How much is chosen on the candidate's *own
training examples* — the corrected failures and inferred labels it was taught, not the replayed passes — so
the suites that verify it stay untouched: the smallest ``α`` in ``ALPHAS`` whose score there loses at most
``MAX_LOSS × right_share`` of the full update's is kept; when none does, the full update is. The loss
allowed scales with production's right share of the trusted traffic because that is the trade: an
interpolation gives up some fixes of production's wrong answers for fewer breaks of its right ones, and
breaks can only happen where production is right. Measured (README, "What a repair does", 9): a strong v1
(right share 0.79) 0.833 → 0.887 at α = 0.5; the demo (0.70) and a weak v1 (0.16) keep the full update —
at α = 0.75 they would have lost 2.5 and 1.3 points on gold.
"""

from __future__ import annotations

from typing import Any

from kaizen.agent.context import RunContext, run_dir
from kaizen.agent.measure import measure
from kaizen.agent.state import RepairState
from kaizen.tools.data import write_items
from kaizen.tools.schema import EvalItem

ALPHAS = (0.5, 0.75)  # tried smallest first: each costs one evaluation of the taught examples
MAX_LOSS = 0.05  # relative loss of the taught score allowed when all of production's traffic is right
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
    right_share: float,
) -> tuple[Any, dict[str, Any]]:
    """(the version to verify, what was tried): ``version`` itself or its interpolation toward ``start``.

    ``start_adapter``: the adapter ``version`` continued, or None when it is a fresh LoRA on ``start``
    (then α scales the adapter's delta). ``right_share``: production's share of right answers among the
    trusted labelled traces (``right_share``).
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
    tolerance = MAX_LOSS * right_share
    info: dict[str, Any] = {
        "alpha": 1.0,
        "taught": len(fit),
        "scores": tried,
        "tolerance": round(tolerance, 4),
    }
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
        if keeps(full, score, tolerance):
            return shrunk, info | {"alpha": alpha, "version": name}
    return version, info


def keeps(full: float, score: float | None, tolerance: float) -> bool:
    """Does an interpolation scoring ``score`` on the taught examples lose at most ``tolerance`` (relative)
    of the full update's ``full``?

    Examples:
        >>> keeps(0.925, 0.906, 0.05 * 0.79), keeps(0.970, 0.910, 0.05 * 0.70), keeps(0.981, 0.962, 0.05 * 0.16)
        (True, False, False)
        >>> keeps(0.9, None, 0.05)
        False
    """
    return score is not None and score >= (1 - tolerance) * full


def right_share(n_passes: int, n_failures: int, n_suspects: int) -> float:
    """Production's right share of the trusted labelled traces (distrusted feedback is counted out of the
    failures, where nearly all of it sits).

    Examples:
        >>> round(right_share(116, 99, 69), 2), right_share(0, 0, 0)
        (0.79, 0.0)
    """
    trusted_failures = max(0, n_failures - n_suspects)
    total = n_passes + trusted_failures
    return n_passes / total if total else 0.0


def _score(state: RepairState, c: RunContext, version: str, skill: int | None, path: str) -> float | None:
    return next(iter(measure(state, c, version, skill, {"taught": path}).values()))["score"]
