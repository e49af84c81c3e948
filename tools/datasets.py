"""Building the repair data sets from labelled traces: held-out suites first, then training data.

Order matters. A **final** slice of all trusted traces is set aside first: it is never trained on and
never used to choose anything until it verifies the last candidate (the refit). The target-eval slice
(failures) and the regression set (passes) come next and are never trained on *inside the loop*;
training data is built from what is left and decontaminated against every eval set. Traces with an
inferred label (the triage's, never the feedback's) join training only. After the loop, the refit trains
on all of it — target and regression traces included, they have done their job of choosing — and is
verified on the final slice. Every item records why it is in (``metadata.reason``).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaizen.tools.data import item_id
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import EvalItem, TaskSpec, last_user_text
from kaizen.tools.similarity import near_duplicates
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
    """An example from a trace: its user turns as input, the feedback's gold answer as expected."""
    gold = t.gold or ""
    if task.kind == "classification" and task.labels:
        gold = normalize_label(gold, task.labels) or gold
    msgs = [m for m in t.messages if m["role"] != "system"]
    return EvalItem(
        id=t.id,
        messages=msgs,
        expected=gold,
        metadata={"trace_id": t.id, "provenance": provenance, "reason": reason},
    )


def inferred_item(task: TaskSpec, t: TraceView, label: str, kind: str) -> EvalItem:
    """A training example whose label the evidence inferred (see ``Diagnosis.inferred``), not the feedback."""
    item = trace_item(task, t, "inferred", f"inferred label ({kind}): neighbours' consensus, trains only")
    return item.model_copy(update={"expected": label})


def _stratified_take(
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
    final, _ = _stratified_take(pool, n, lambda it: (kinds[it.id], str(it.expected)), rnd)
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
    if final:  # only where a refit follows: it trains on the target items too, so the loop's loss is its alone
        _top_up(target, train_f, spare, min(min_target, len(current) // 2))
    passes = [it for it in passes if it.id not in final_ids]
    want = min(max_regression, round(len(passes) * regression_share)) if len(passes) > 1 else 0
    regression, pool = _stratified_take(passes, want, lambda it: it.expected, rnd)
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


def _logged_by(t: TraceView, version: str | None) -> bool:
    """The trace was produced by ``version`` (a trace without a version counts as the deployed one's)."""
    return version is None or not t.model_version or t.model_version == version


def balance_labels(items: list[EvalItem], max_ratio: float = 3.0) -> tuple[list[EvalItem], int]:
    """Cap every label at ``max_ratio`` × the rarest label's count; returns (kept, dropped count)."""
    counts = Counter(str(it.expected) for it in items)
    if len(counts) < 2:
        return items, 0
    cap = int(min(counts.values()) * max_ratio)
    seen: Counter[str] = Counter()
    kept = []
    for it in items:
        lab = str(it.expected)
        if seen[lab] < cap:
            kept.append(it)
            seen[lab] += 1
    return kept, len(items) - len(kept)


def decontaminate(
    items: list[EvalItem], eval_sets: Iterable[Sequence[EvalItem]], threshold: float = 0.9
) -> tuple[list[EvalItem], int]:
    """Drop training items whose input is (nearly) the same as any eval item's input."""
    refs = [last_user_text(e.messages) for s in eval_sets for e in s]
    eval_ids = {e.id for s in eval_sets for e in s}
    items = [it for it in items if it.id not in eval_ids]
    dup = set(near_duplicates([last_user_text(it.messages) for it in items], refs, threshold))
    return [it for i, it in enumerate(items) if i not in dup], len(dup)


def dedupe(items: Iterable[EvalItem]) -> list[EvalItem]:
    seen, out = set(), []
    for it in items:
        key = item_id(it.model_dump()["messages"], it.expected)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def _balancing_replay(
    core: list[EvalItem], pool: list[EvalItem], max_ratio: float, rnd: random.Random
) -> list[EvalItem]:
    """Replay items that lift every label to at least (largest label count / max_ratio).

    Failures cluster on a few labels; rather than throwing failures away to balance, we replay
    passing examples of the other labels — which also guards those labels against forgetting.
    """
    counts = Counter(str(it.expected) for it in core)
    if not counts:
        return []
    need = math.ceil(max(counts.values()) / max_ratio)
    by_label: dict[str, list[EvalItem]] = defaultdict(list)
    for it in pool:
        by_label[str(it.expected)].append(it)
    out = []
    for lab in sorted(by_label):
        items = by_label[lab][:]
        rnd.shuffle(items)
        out.extend(items[: max(0, need - counts.get(lab, 0))])
    return out


def _hard_negatives(
    core: list[EvalItem],
    pool: list[EvalItem],
    confused_with: dict[str, str],
    per_case: int,
    rnd: random.Random,
) -> list[EvalItem]:
    """For each failure "gold G answered as P", passing examples whose gold is P: the near-miss that
    teaches where G stops (Pioneer Agent: each hard case gets a gold example *and* a hard negative)."""
    by_label: dict[str, list[EvalItem]] = defaultdict(list)
    for it in pool:
        by_label[str(it.expected)].append(it)
    for v in by_label.values():
        rnd.shuffle(v)
    out: list[EvalItem] = []
    for it in core:
        neighbour = confused_with.get(str(it.metadata.get("trace_id", it.id)))
        for _ in range(per_case):
            if neighbour and by_label.get(neighbour):
                out.append(by_label[neighbour].pop())
    return out


def _replay_take(rest: list[EvalItem], pool: list[EvalItem], n: int, rnd: random.Random) -> list[EvalItem]:
    """``n`` replay items: distinct ones first (stratified), then repeats of the pool when passes are scarce.

    The plan's replay share is a promise about the training set; when the pool is smaller than the
    share asks for, passes are shown more than once (distinct ids, ``~rK``) rather than silently shrinking it.
    """
    taken, _ = _stratified_take(rest, min(n, len(rest)), lambda it: it.expected, rnd)
    k = 2
    while len(taken) < n and pool:
        more = pool[:]
        rnd.shuffle(more)
        taken += [it.model_copy(update={"id": f"{it.id}~r{k}"}) for it in more[: n - len(taken)]]
        k += 1
    return taken


def build_training_set(
    splits: RepairSplits,
    *,
    replay_fraction: float,
    failure_weight: int = 1,
    seed: int = 0,
    eval_sets: Sequence[Sequence[EvalItem]] = (),
    prior: Sequence[EvalItem] = (),
    max_ratio: float = 3.0,
    confused_with: dict[str, str] | None = None,
    hard_negatives_per_case: int = 1,
) -> tuple[list[EvalItem], dict[str, Any]]:
    """Failures (+ optional prior data) + replay of passes, deduped, balanced, decontaminated.

    Replay is at least ``replay_fraction`` of the final set, sampled stratified by label from the
    passes not held out (so the accumulated data stays bounded as logs grow), topped up so no label
    has less than 1/``max_ratio`` of the largest; only then is anything still over the ratio capped.
    """
    rnd = random.Random(seed)
    # Decontaminate first, so that balancing counts only what will really be trained on (a replay
    # item dropped afterwards would leave its label short and make the cap throw failures away).
    evals = [splits.target, splits.regression, *eval_sets]
    core, n_contam = decontaminate(dedupe([*splits.train_failures, *prior]), evals)
    pool, n_pool_contam = decontaminate(splits.replay_pool, evals)
    negatives = _hard_negatives(core, pool, confused_with or {}, hard_negatives_per_case, rnd)
    taken = {it.id for it in negatives}
    balancing = _balancing_replay(
        [*core, *negatives], [it for it in pool if it.id not in taken], max_ratio, rnd
    )
    chosen = taken | {it.id for it in balancing}
    rest = [it for it in pool if it.id not in chosen]
    n_replay = math.ceil(replay_fraction * len(core) / max(1e-9, 1 - replay_fraction)) if core else 0
    more = _replay_take(rest, pool, max(0, n_replay - len(negatives) - len(balancing)), rnd)
    replay = [
        it.model_copy(update={"metadata": it.metadata | {"provenance": prov, "reason": why}})
        for group, prov, why in (
            (
                negatives,
                "hard_negative",
                "hard negative: a passing example of the label a failure was confused with",
            ),
            (balancing, "replay", "replay: balances labels (no label < 1/3 of the largest)"),
            (more, "replay", "replay of a passing trace (guards against forgetting)"),
        )
        for it in group
    ]
    items = [
        *dedupe(core),
        *[it for it in replay if "~r" in it.id],
        *dedupe(it for it in replay if "~r" not in it.id),
    ]
    items, n_unbalanced = balance_labels(items, max_ratio)
    weighted = [
        it if k == 0 else it.model_copy(update={"id": f"{it.id}~{k + 1}"})  # distinct ids: copies are meant
        for it in items
        for k in range(failure_weight if it.metadata.get("provenance") == "trace" else 1)
    ]
    rnd.shuffle(weighted)
    stats = {
        "n": len(weighted),
        "failures": sum(it.metadata.get("provenance") == "trace" for it in items),
        "replay": sum(it.metadata.get("provenance") == "replay" for it in items),
        "prior": len(prior),
        "inferred": sum(it.metadata.get("provenance") == "inferred" for it in items),
        "hard_negatives": sum(it.metadata.get("provenance") == "hard_negative" for it in items),
        "replay_share": round(
            sum(it.metadata.get("provenance") in ("replay", "hard_negative") for it in items) / len(items), 4
        )
        if items
        else 0.0,
        "replay_fraction": replay_fraction,
        "dropped_contaminated": n_contam,
        "replay_pool_contaminated": n_pool_contam,
        "dropped_for_balance": n_unbalanced,
        "failure_weight": failure_weight,
        "labels": dict(Counter(str(it.expected) for it in items)),
    }
    return weighted, stats


def build_refit_set(
    splits: RepairSplits,
    *,
    seed: int = 0,
    eval_sets: Sequence[Sequence[EvalItem]] = (),
    prior: Sequence[EvalItem] = (),
    max_replay_ratio: float = 4.0,
) -> tuple[list[EvalItem], dict[str, Any]]:
    """The refit's data: **every** example the run may learn from — training failures, the target and
    regression suites (they have chosen the recipe; now they teach), the replay pool, inferred labels and
    ``prior`` data — decontaminated against the final slice and ``eval_sets``. Never the final slice.

    Passes are capped at ``max_replay_ratio`` × the failures (stratified by label) so that in logs where
    almost everything passes the failures are not diluted into noise; below the cap, all of them are kept
    (measured on the demo's dev split: all the evidence beat the loop's subsets by 3–4 points).
    """
    rnd = random.Random(seed)

    def tag(group: Iterable[EvalItem], prov: str, why: str) -> list[EvalItem]:
        """The refit's provenance and reason; an inferred label stays marked as inferred."""
        out = []
        for it in group:
            kept = "inferred" if it.metadata.get("provenance") == "inferred" else prov
            meta = it.metadata | {"provenance": kept, "reason": f"refit: {why}"}
            out.append(it.model_copy(update={"metadata": meta}))
        return out

    judged = [splits.final, *eval_sets]
    failures = tag([*splits.train_failures, *splits.target], "trace", "a corrected failure")
    passes = tag([*splits.regression, *splits.replay_pool], "replay", "a passing trace")
    core, n_contam = decontaminate(dedupe([*failures, *prior]), judged)
    passes, n_pass_contam = decontaminate(dedupe(passes), judged)
    cap = math.ceil(max_replay_ratio * len(core)) if core else 0
    if len(passes) > cap:
        passes, _ = _stratified_take(passes, cap, lambda it: it.expected, rnd)
    items = [*core, *passes]
    rnd.shuffle(items)
    stats = {
        "n": len(items),
        "failures": sum(it.metadata.get("provenance") == "trace" for it in items),
        "replay": sum(it.metadata.get("provenance") == "replay" for it in items),
        "inferred": sum(it.metadata.get("provenance") == "inferred" for it in items),
        "prior": len(prior),
        "hard_negatives": 0,
        "replay_share": round(sum(it.metadata.get("provenance") == "replay" for it in items) / len(items), 4)
        if items
        else 0.0,
        "dropped_contaminated": n_contam + n_pass_contam,
        "dropped_for_balance": 0,
        "labels": dict(Counter(str(it.expected) for it in items)),
    }
    return items, stats
