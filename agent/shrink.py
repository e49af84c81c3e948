"""Shrink: keep only as much of a candidate's update as best does what it was trained to do.

Fine-tuning on a few hundred examples can move a small model further than the fix needs, and the excess is
what breaks right answers on inputs nobody logged. Weight-space interpolation toward the start (WiSE-FT;
``tools/train/interpolate.py``) takes some of the update back. How much is chosen on the candidate's *own
training examples* — the corrected failures and inferred labels it was taught, not the replayed passes —
so the suites that verify it stay untouched: of the full update and its interpolations at ``ALPHAS``, the
one that scores best there, the smallest α on a tie. An update that fits what it was taught *worse* than
part of it has overshot (conflicting or poisoned examples pull it past the fix); one that fits best at
full strength is kept whole. Measured (README, "What a repair does", 9): a strong v1 under 30 % poison,
0.833 → 0.880 on gold at α = 0.75; the demo, a weak v1 and the auto probe keep the full update.
"""

from __future__ import annotations

import random
from typing import Any

from kaizen.agent.context import RunContext, run_dir
from kaizen.agent.measure import measure
from kaizen.agent.state import RepairState
from kaizen.tools.data import write_items
from kaizen.tools.schema import EvalItem

ALPHAS = (0.75, 0.5)  # each costs one evaluation of the taught examples
MIN_TAUGHT = 8  # fewer taught examples cannot tell a kept fix from a lost one
MAX_TAUGHT = 200  # evaluation cost bound: a seeded sample beyond it


def taught(items: list[EvalItem]) -> list[EvalItem]:
    """What an update was meant to teach: every training example but the replayed passes (the incumbent
    already answers those; they hold it in place and say nothing about how much update the fix needs)."""
    out = [it for it in items if it.metadata.get("provenance") != "replay"]
    return random.Random(0).sample(out, MAX_TAUGHT) if len(out) > MAX_TAUGHT else out


def choose(scores: dict[float, float | None]) -> float:
    """The α whose taught score is highest, the smallest on a tie (unmeasured α never win).

    Examples:
        >>> choose({1.0: 49 / 53, 0.75: 50 / 53, 0.5: 48 / 53})  # strong v1: the full update overshot
        0.75
        >>> choose({1.0: 1.0, 0.75: 0.976, 0.5: 0.788})  # auto probe: it fits best whole
        1.0
        >>> choose({1.0: 0.9, 0.75: 0.9, 0.5: None})
        0.75
    """
    measured = {a: s for a, s in scores.items() if s is not None}
    return max(measured, key=lambda a: (measured[a], -a)) if measured else 1.0


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
    folder = run_dir(state).step(step)
    path = folder / "taught.jsonl"
    write_items(path, fit)
    scores: dict[float, float | None] = {1.0: _score(state, c, version.name, skill, str(path))}
    shrunk: dict[float, Any] = {1.0: version}
    info: dict[str, Any] = {"alpha": 1.0, "taught": len(fit)}
    for alpha in ALPHAS:
        name = f"{version.name}-a{round(alpha * 100)}"
        out = folder / f"adapter-a{round(alpha * 100)}"
        try:
            if not out.exists():
                interpolate_adapter(start_adapter, version.adapter_path, alpha, out)
        except IncompatibleAdapters as e:
            return version, info | {"scores": scores, "skipped": str(e)}
        shrunk[alpha] = register_adapter(
            c.workspace,
            task,
            name=name,
            adapter_path=out,
            parent=version,
            recipe={"kind": "interpolation", "to": start.name, "alpha": alpha},
            items=items,
        )
        scores[alpha] = _score(state, c, name, skill, str(path))
    alpha = choose(scores)
    info |= {"alpha": alpha, "scores": {str(a): s for a, s in scores.items()}}
    return shrunk[alpha], info | ({"version": shrunk[alpha].name} if alpha < 1.0 else {})


def _score(state: RepairState, c: RunContext, version: str, skill: int | None, path: str) -> float | None:
    return next(iter(measure(state, c, version, skill, {"taught": path}).values()))["score"]
