"""What trains: the loop's training set (failures, hard negatives and replay; deduped, decontaminated
against every eval set, balanced) and the refit's (all the evidence the run may learn from, never the
final slice).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kaizen.tools.data import item_id
from kaizen.tools.datasets.splits import RepairSplits, stratified_take, stratum
from kaizen.tools.schema import EvalItem, last_user_text
from kaizen.tools.similarity import near_duplicates


def balance_labels(
    items: list[EvalItem], max_ratio: float = 3.0, keep: Callable[[EvalItem], bool] | None = None
) -> tuple[list[EvalItem], int]:
    """Cap every label at ``max_ratio`` × the rarest label's count; returns (kept, dropped count).

    Items for which ``keep`` is true are never dropped (they still count towards their label's cap): the
    loop keeps every corrected failure — they are the evidence — and caps only the replay around them. A
    label whose passes are scarce (all went to the judging suites) would otherwise throw real failures away.
    """
    counts = Counter(str(it.expected) for it in items)
    if len(counts) < 2:
        return items, 0
    cap = int(min(counts.values()) * max_ratio)
    seen: Counter[str] = Counter()
    kept = []
    for it in sorted(items, key=lambda it: not (keep and keep(it))):  # kept ones count first
        lab = str(it.expected)
        if seen[lab] < cap or (keep and keep(it)):
            kept.append(it)
            seen[lab] += 1
    order = {id(it): i for i, it in enumerate(items)}
    kept.sort(key=lambda it: order[id(it)])
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
    core: list[EvalItem], pool: list[EvalItem], max_ratio: float, rnd: random.Random, floor: int = 0
) -> list[EvalItem]:
    """Replay items that lift every label to at least (largest label count / max_ratio) and ``floor``.

    Failures cluster on a few labels; rather than throwing failures away to balance, we replay
    passing examples of the other labels — which also guards those labels against forgetting. The
    floor anchors every label the passes hold even when the failures are few (see ``Plan.replay_per_label``).
    """
    counts = Counter(str(it.expected) for it in core)
    if not counts:
        return []
    need = max(math.ceil(max(counts.values()) / max_ratio), floor)
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


def _copies(it: EvalItem, failure_weight: int) -> int:
    """How many times training sees ``it``: a corrected failure ``failure_weight`` times, anything else once."""
    return failure_weight if it.metadata.get("provenance") == "trace" else 1


def _replay_take(rest: list[EvalItem], pool: list[EvalItem], n: int, rnd: random.Random) -> list[EvalItem]:
    """``n`` replay items: distinct ones first (stratified), then repeats of the pool when passes are scarce.

    The plan's replay share is a promise about the training set; when the pool is smaller than the
    share asks for, passes are shown more than once (distinct ids, ``~rK``) rather than silently shrinking it.
    """
    taken, _ = stratified_take(rest, min(n, len(rest)), stratum, rnd)
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
    replay_per_label: int = 0,
    failure_weight: int = 1,
    seed: int = 0,
    eval_sets: Sequence[Sequence[EvalItem]] = (),
    prior: Sequence[EvalItem] = (),
    max_ratio: float = 3.0,
    confused_with: dict[str, str] | None = None,
    hard_negatives_per_case: int = 1,
) -> tuple[list[EvalItem], dict[str, Any]]:
    """Failures (+ optional prior data) + replay of passes, deduped, balanced, decontaminated.

    Replay is at least ``replay_fraction`` of the final set (failures repeated ``failure_weight`` times
    included: the share is of what training sees), sampled stratified by label from the
    passes not held out (so the accumulated data stays bounded as logs grow), topped up so no label
    has less than 1/``max_ratio`` of the largest nor fewer than ``replay_per_label`` examples (as far as
    the passes allow); only then is replay still over the ratio capped (a corrected failure is never
    dropped for balance).
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
        [*core, *negatives], [it for it in pool if it.id not in taken], max_ratio, rnd, replay_per_label
    )
    chosen = taken | {it.id for it in balancing}
    rest = [it for it in pool if it.id not in chosen]
    # The share is of what training sees: corrected failures count ``failure_weight`` times (they are
    # repeated below), or "failures ×3" would quietly shrink a 20 % replay to 8 %.
    weighted_core = sum(_copies(it, failure_weight) for it in core)
    n_replay = math.ceil(replay_fraction * weighted_core / max(1e-9, 1 - replay_fraction)) if core else 0
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
    items, n_unbalanced = balance_labels(
        items, max_ratio, keep=lambda it: it.metadata.get("provenance") in ("trace", "inferred")
    )
    weighted = [
        it if k == 0 else it.model_copy(update={"id": f"{it.id}~{k + 1}"})  # distinct ids: copies are meant
        for it in items
        for k in range(_copies(it, failure_weight))
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
            sum(it.metadata.get("provenance") in ("replay", "hard_negative") for it in weighted)
            / len(weighted),
            4,
        )
        if weighted
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
    """The refit's data: every example the run may learn from — training failures, the target suite (it has
    chosen the recipe; now it teaches), the replay pool, inferred labels and ``prior`` data —
    decontaminated against what judges the refit: the final slice, the **regression suite** and
    ``eval_sets``. Never those.

    The regression suite stays out because it verifies the refit against production together with the
    final slice's right answers: measured on a strong v1 under 30 % poison, a refit trained on it too was
    verified on 11 production-right answers, saw no break, and broke 9 % of v1's right answers on gold —
    a slice that small cannot see that rate; 52 + 11 can.

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

    judged = [splits.final, splits.regression, *eval_sets]
    failures = tag([*splits.train_failures, *splits.target], "trace", "a corrected failure")
    passes = tag(splits.replay_pool, "replay", "a passing trace")
    core, n_contam = decontaminate(dedupe([*failures, *prior]), judged)
    passes, n_pass_contam = decontaminate(dedupe(passes), judged)
    cap = math.ceil(max_replay_ratio * len(core)) if core else 0
    if len(passes) > cap:
        passes, _ = stratified_take(passes, cap, stratum, rnd)
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
