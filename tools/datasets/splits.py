"""A run's data roles, carved from labelled traces: the final slice first, then target-eval (failures,
per cluster) and regression (passes, per label); what is left trains (see the package docstring for why
the order matters). Every item records why it is in (``metadata.reason``).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kaizen.tools.data import expected_from_feedback
from kaizen.tools.errors import DataError
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.store import TraceView


@dataclass
class RepairSplits:
    """A run's data roles. Only ``target``, ``regression`` and ``final`` judge; they hold trusted feedback only.
    Items with an inferred label (``provenance == "inferred"``) sit in ``train_failures`` (the label differs
    from the model's answer) or ``replay_pool`` (it agrees): they train, never judge."""

    target: list[EvalItem]
    regression: list[EvalItem]
    train_failures: list[EvalItem]
    replay_pool: list[EvalItem]
    final: list[EvalItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def roles(self) -> dict[str, list[EvalItem]]:
        return {
            "target": self.target,
            "regression": self.regression,
            "train_failures": self.train_failures,
            "replay_pool": self.replay_pool,
            "final": self.final,
        }


def trace_item(task: TaskSpec, t: TraceView, provenance: str, reason: str) -> EvalItem:
    """An example from a trace: its user turns as input, the feedback's gold answer as expected (as the task
    kind scores it: see ``expected_from_feedback``; triage distrusts feedback that gives no usable answer)."""
    gold, problem = expected_from_feedback(task, t.gold)
    if problem is not None:
        raise DataError(
            f"trace {t.id}: its feedback gives no usable answer for a {task.kind} task ({problem}); "
            "correct the feedback (`kaizen feedback`) or leave the trace unlabelled"
        )
    return _item(t, gold, provenance, reason)


def inferred_item(task: TaskSpec, t: TraceView, label: str, kind: str) -> EvalItem:
    """A training example whose label the evidence inferred (see ``Diagnosis.inferred``), not the feedback
    (an unlabelled trace has none to read)."""
    return _item(t, label, "inferred", f"inferred label ({kind}): neighbours' consensus, trains only")


def _item(t: TraceView, expected: Any, provenance: str, reason: str) -> EvalItem:
    return EvalItem(
        id=t.id,
        messages=[m for m in t.messages if m["role"] != "system"],
        expected=expected,
        metadata={"trace_id": t.id, "provenance": provenance, "reason": reason},
    )


def stratified_take(
    items: Sequence[EvalItem], n: int, key: Any, rnd: random.Random
) -> tuple[list[EvalItem], list[EvalItem]]:
    """Take ``n`` items spread over strata proportionally (round-robin); returns (taken, rest)."""
    strata: dict[Any, list[EvalItem]] = defaultdict(list)
    for it in items:
        strata[key(it)].append(it)
    for v in strata.values():
        rnd.shuffle(v)
    taken: list[EvalItem] = []
    keys = sorted(strata, key=str)
    while len(taken) < n and any(strata.values()):
        for k in keys:
            if strata[k] and len(taken) < n:
                taken.append(strata[k].pop())
    chosen = {it.id for it in taken}
    return taken, [it for it in items if it.id not in chosen]


def _final_slice(
    failures: list[EvalItem], passes: list[EvalItem], fraction: float, min_size: int, rnd: random.Random
) -> tuple[list[EvalItem], set[str]]:
    """A stratified slice (by verdict and label) of every trusted trace: ``fraction`` of them, at least
    ``min_size``; none when fewer than 5 × ``min_size`` traces are trusted (the slice would eat the data).

    Small logs are where the refit matters most (the loop trains on a fraction of ~100 traces), so rather
    than no slice at all they get a minimal one: a weak check still catches a refit that went wrong.
    """
    pool = [*failures, *passes]
    n = max(round(len(pool) * fraction), min_size)
    if fraction <= 0 or len(pool) < 5 * min_size:
        return [], set()
    kinds = {it.id: "fail" for it in failures} | {it.id: "pass" for it in passes}
    final, _ = stratified_take(pool, n, lambda it: (kinds[it.id], str(it.expected)), rnd)
    for it in final:
        it.metadata["reason"] = f"final slice ({kinds[it.id]}): verifies the refit, never trained on"
    return final, {it.id for it in final}


def build_splits(
    task: TaskSpec,
    traces: Sequence[TraceView],
    *,
    excluded: set[str],
    clusters: dict[str, list[str]],
    seed: int = 0,
    target_fraction: float = 0.3,
    final_fraction: float = 0.15,
    min_final: int = 12,
    min_target: int = 5,
    regression_share: float = 0.5,
    max_regression: int = 300,
    inferred: dict[str, tuple[str, str]] | None = None,
    deployed: str | None = None,
) -> RepairSplits:
    """Carve the final slice, then target-eval (failures, per cluster) and regression (passes, per label).

    ``excluded`` are suspect/unusable trace ids; ``clusters`` maps fixable cluster key → trace ids.
    The regression set is drawn from *all* trusted passes (stratified by label): ``regression_share`` of
    them, at most ``max_regression``; the rest is the replay pool. Its size no longer depends on how many
    failures there are — a big suite is what lets the gate tell a real regression from noise.
    ``inferred`` (trace id → (label, kind)) adds the traces whose label the evidence inferred, to training only.
    ``deployed``: the version being repaired. A failure logged against an *older* version (a scheduled loop's
    logs accumulate) may already be fixed, so it only trains: the target suite holds the deployed version's
    own failures (all failures when none is known or none were logged against it).
    ``min_target``: the per-cluster share is topped up from the deployed version's training failures to this
    many (never past half of them) when there is a final slice: a 2-item target suite cannot show a fix, and
    the refit trains on the target items anyway. Without a final slice the loop's candidate is what ships, so
    it keeps its training failures.
    """
    rnd = random.Random(seed)
    by_id = {t.id: t for t in traces}
    groups = {
        key: [i for i in clusters[key] if i in by_id and i not in excluded and by_id[i].correction]
        for key in clusters
    }
    failures = [
        trace_item(task, by_id[i], "trace", f"failure in cluster {key}")
        for key in sorted(groups)
        for i in groups[key]
    ]
    passes = [
        trace_item(task, t, "trace", "passing trace")
        for t in traces
        if t.verdict == "pass" and t.id not in excluded
    ]
    final, final_ids = _final_slice(failures, passes, final_fraction, min_final, rnd)
    groups = {k: [i for i in v if i not in final_ids] for k, v in groups.items()}
    # Singleton clusters cannot be split; pooled, they still give the target set its share of them.
    singles = sorted(i for ids in groups.values() if len(ids) == 1 for i in ids)
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if singles:
        groups["(singleton clusters)"] = singles
    target: list[EvalItem] = []
    train_f: list[EvalItem] = []
    spare: dict[str, list[EvalItem]] = {}  # the deployed version's failures left to train, by cluster
    current = {i for ids in groups.values() for i in ids if _logged_by(by_id[i], deployed)}
    if not current:  # nothing logged against the deployed version (or no version known): judge on all
        current = {i for ids in groups.values() for i in ids}
    for key in sorted(groups):
        ids = groups[key]
        rnd.shuffle(ids)
        ids.sort(key=lambda i: i not in current)  # stable: this version's failures first, still shuffled
        k = math.ceil(sum(i in current for i in ids) * target_fraction) if len(ids) >= 2 else 0
        for n, i in enumerate(ids):
            into_target = n < k
            item = trace_item(
                task,
                by_id[i],
                "trace",
                f"{'target-eval' if into_target else 'train'}: failure in cluster {key}",
            )
            (target if into_target else train_f).append(item)
            if not into_target and i in current:
                spare.setdefault(key, []).append(item)
    # Only where a refit follows: it trains on the target items too, so the loop alone pays for the top-up.
    if final:
        _top_up(target, train_f, spare, min(min_target, len(current) // 2))
    passes = [it for it in passes if it.id not in final_ids]
    want = min(max_regression, round(len(passes) * regression_share)) if len(passes) > 1 else 0
    regression, pool = _regression_take(passes, want, regression_share, rnd)
    for it in regression:
        it.metadata["reason"] = f"regression: passing example of label {it.expected!r} (stratified)"
    n_inferred = 0
    for i, (lab, kind) in sorted((inferred or {}).items()):
        if i in by_id and i not in final_ids:
            item = inferred_item(task, by_id[i], lab, kind)
            agrees = normalize_label(by_id[i].output, task.labels or []) == lab if task.labels else False
            (pool if agrees else train_f).append(item)
            n_inferred += 1
    notes = [
        f"{len(final)} final-slice traces, {len(target)} target-eval failures, {len(train_f)} training failures, "
        f"{len(regression)} regression passes, {len(pool)} passes left for replay "
        f"({n_inferred} with an inferred label, training only)"
    ]
    return RepairSplits(
        target=target,
        regression=regression,
        train_failures=train_f,
        replay_pool=pool,
        final=final,
        notes=notes,
    )


def _regression_take(
    passes: list[EvalItem], want: int, share: float, rnd: random.Random
) -> tuple[list[EvalItem], list[EvalItem]]:
    """``want`` passes for the regression suite: ``share`` of **each** label's passes first, then the rest
    from the labels with the most passes left; returns (suite, replay pool).

    A round-robin over labels would give a label with four passes three of them, and replay — the only
    thing that keeps that label from drifting, now that no candidate trains on the suite — would be left
    with one (measured on a strong-v1 probe: nutrition_info kept 1 replay example and lost 5 of its gold
    answers to the refit). Structured answers (every stratum a single pass) fill from the second step.
    """
    strata: dict[str, list[EvalItem]] = defaultdict(list)
    for it in passes:
        strata[stratum(it)].append(it)
    if want < int(share * len(passes)):  # a bounded suite: the same (smaller) share of each label
        share = want / len(passes)
    taken: list[EvalItem] = []
    for key in sorted(strata):
        rnd.shuffle(strata[key])
        k = min(int(share * len(strata[key])), want - len(taken))
        taken += strata[key][:k]
        strata[key] = strata[key][k:]
    while len(taken) < want and any(strata.values()):
        key = max(sorted(strata), key=lambda k: len(strata[k]))
        taken.append(strata[key].pop())
    chosen = {it.id for it in taken}
    return taken, [it for it in passes if it.id not in chosen]


def _top_up(
    target: list[EvalItem], train_f: list[EvalItem], spare: dict[str, list[EvalItem]], want: int
) -> None:
    """Move the deployed version's training failures (``spare``: cluster → items) into the target suite until
    it holds ``want`` (in place), round-robin over clusters, largest first, so the top-up spreads over modes."""
    order = [spare[k] for k in sorted(spare, key=lambda k: (-len(spare[k]), k))]
    while len(target) < want and any(order):
        for items in order:
            if items and len(target) < want:
                it = items.pop()
                train_f.remove(it)
                it.metadata["reason"] = (
                    f"target-eval (top-up): {it.metadata['reason'].removeprefix('train: ')}"
                )
                target.append(it)


def stratum(it: EvalItem) -> str:
    """A pass's stratum: its label, or the canonical JSON of a structured answer (a dict is not hashable)."""
    e = it.expected
    return e if isinstance(e, str) else json.dumps(e, sort_keys=True, ensure_ascii=False)


def _logged_by(t: TraceView, version: str | None) -> bool:
    """The trace was produced by ``version`` (a trace without a version counts as the deployed one's)."""
    return version is None or not t.model_version or t.model_version == version
