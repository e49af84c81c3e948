"""Repair data sets from labelled traces: held-out suites (target, regression) that never overlap
and never reach training, decontamination, replay, label balance, provenance. No model.

Inputs are real CLINC150 banking requests (the slice shipped in examples/data), so near-duplicate
and decontamination checks see realistic text.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from banking_traces import LABELS, TASK, trace

from kaizen.tools.datasets.splits import RepairSplits, build_splits
from kaizen.tools.datasets.training import balance_labels, build_training_set, decontaminate, dedupe
from kaizen.tools.schema import EvalItem, last_user_text
from kaizen.tools.similarity import near_duplicates
from kaizen.workflows.bench.clinc import rows

# The deployed model's gap: card_declined answered "balance"; a few transfers too.
N_FAIL = {"card_declined": 20, "transfer": 6, "freeze_account": 1}
CLUSTER_OF = {
    "card_declined": "card_declined ← balance",
    "transfer": "transfer ← balance",
    "freeze_account": "freeze_account ← balance",
}


def scenario(seed: int = 0, per_label: int = 40, n_fail: dict[str, int] | None = None):  # noqa: ANN201
    """(traces, clusters, excluded): failures per N_FAIL, passes for the rest, 3 suspects, 5 unlabeled."""
    n_fail = N_FAIL if n_fail is None else n_fail
    pairs = rows("train", LABELS, per_label=per_label, seed=seed)
    seen: Counter[str] = Counter()
    traces, clusters = [], {}
    for i, (text, gold) in enumerate(pairs):
        seen[gold] += 1
        if seen[gold] <= n_fail.get(gold, 0):
            t = trace(f"f{i}", text, "balance", "fail", gold)
            clusters.setdefault(CLUSTER_OF[gold], []).append(t.id)
        else:
            t = trace(f"p{i}", text, gold)
        traces.append(t)
    # suspects: a poisoned correction inside the big cluster, an off-domain failure, a garbage pass
    traces += [
        trace("s-poison", "why was my card declined at the mall", "balance", "fail", "freeze_account"),
        trace("s-off", "what size wipers does this car take", "balance", "fail", "card_declined"),
        trace("s-junk", "!!!!", "balance"),
    ]
    clusters["card_declined ← balance"].append("s-off")
    excluded = {"s-poison", "s-off", "s-junk"}
    more = rows("val", LABELS, per_label=2, seed=seed)[:5]
    traces += [trace(f"u{i}", text, gold, None) for i, (text, gold) in enumerate(more)]
    return traces, clusters, excluded


def ids(items: list[EvalItem]) -> set[str]:
    """The traces behind the items (weighted copies of one failure share it)."""
    return {it.metadata.get("trace_id", it.id) for it in items}


def suites(s: RepairSplits) -> dict[str, list[EvalItem]]:
    return s.roles()


# ---------------------------------------------------------------------------------- build_splits
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_trace_is_in_two_suites_and_suspects_and_unlabeled_are_in_none(seed: int) -> None:
    traces, clusters, excluded = scenario(seed)
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, seed=seed)
    seen: Counter[str] = Counter(i for items in suites(s).values() for i in ids(items))
    assert all(n == 1 for n in seen.values()), [i for i, n in seen.items() if n > 1]
    assert not excluded & set(seen)
    assert not {t.id for t in traces if t.verdict is None} & set(seen)
    # every labelled, non-suspect trace is somewhere
    assert set(seen) == {t.id for t in traces if t.verdict in ("pass", "fail") and t.id not in excluded}
    # failures only in target/train, passes only in regression/replay; the final slice holds both
    assert all(i.startswith("f") for i in ids(s.target) | ids(s.train_failures))
    assert all(i.startswith("p") for i in ids(s.regression) | ids(s.replay_pool))
    assert {i[0] for i in ids(s.final)} == {"f", "p"}


def test_target_takes_about_30_percent_of_each_cluster_of_size_two_or_more() -> None:
    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0)
    target = ids(s.target)
    for key, members in clusters.items():
        usable = [i for i in members if i not in excluded]
        k = len(target & set(usable))
        if len(usable) >= 2:
            assert k == math.ceil(0.3 * len(usable)), (key, k, len(usable))
        else:
            assert k == 0, key  # a lone failure is trained on, not held out
    assert len(s.target) == 6 + 2  # ceil(0.3·20) + ceil(0.3·6)
    for it in s.target:
        assert it.expected in ("card_declined", "transfer")
        assert it.metadata["reason"].startswith("target-eval: failure in cluster")


def test_failures_without_correction_are_not_used() -> None:
    traces, clusters, excluded = scenario()
    traces.append(trace("f-nc", "my card got denied at the cinema", "balance", "fail", None))
    clusters["card_declined ← balance"].append("f-nc")
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters)
    assert "f-nc" not in ids(s.target) | ids(s.train_failures) | ids(s.final)


def test_regression_is_drawn_from_all_passes_stratified_by_label() -> None:
    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0)
    n_pass = sum(1 for t in traces if t.verdict == "pass" and t.id not in excluded)
    assert len(s.regression) == round(n_pass * 0.5)  # sized on the passes, not on the failure count
    per_label = Counter(it.expected for it in s.regression)
    assert set(per_label) == set(LABELS)
    # half of each label's passes (one more where the halves leave the total short): replay keeps the rest
    passes_of = Counter(it.expected for it in [*s.regression, *s.replay_pool])
    for lab, n in per_label.items():
        assert passes_of[lab] // 2 <= n <= passes_of[lab] // 2 + 1, (lab, per_label, passes_of)
    for it in s.regression:
        assert it.metadata["reason"] == f"regression: passing example of label {it.expected!r} (stratified)"


def test_a_label_with_few_passes_keeps_half_of_them_for_replay() -> None:
    """Round-robin would hand a 4-pass label three of them; the per-label share leaves replay two."""
    traces, clusters, excluded = scenario()
    rare = [t for t in traces if t.verdict == "pass" and t.output == "freeze_account"][4:]
    traces = [t for t in traces if t not in rare]
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0)
    assert Counter(it.expected for it in s.regression)["freeze_account"] == 2
    assert Counter(it.expected for it in s.replay_pool)["freeze_account"] == 2


def test_regression_is_bounded() -> None:
    traces, clusters, excluded = scenario()
    s = build_splits(
        TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0, max_regression=10
    )
    assert len(s.regression) == 10 and len(set(it.expected for it in s.regression)) == len(LABELS)


def test_final_slice_is_stratified_and_sized() -> None:
    traces, clusters, excluded = scenario()
    trusted = [t for t in traces if t.verdict in ("pass", "fail") and t.id not in excluded]
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.2)
    assert len(s.final) == round(0.2 * len(trusted))
    assert {it.expected for it in s.final} == set(LABELS)
    assert all(it.metadata["reason"].startswith("final slice") for it in s.final)
    # too small to verify anything: no final slice at all
    assert (
        build_splits(
            TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.2, min_final=1000
        ).final
        == []
    )


def test_splits_are_deterministic_for_a_seed() -> None:
    traces, clusters, excluded = scenario()
    a = build_splits(TASK, traces, excluded=excluded, clusters=clusters, seed=7)
    b = build_splits(TASK, traces, excluded=excluded, clusters=clusters, seed=7)
    assert {k: [i.id for i in v] for k, v in suites(a).items()} == {
        k: [i.id for i in v] for k, v in suites(b).items()
    }


def test_all_unlabeled_gives_empty_splits_and_an_empty_training_set() -> None:
    traces = [
        trace(f"u{i}", text, gold, None) for i, (text, gold) in enumerate(rows("train", LABELS, per_label=5))
    ]
    s = build_splits(TASK, traces, excluded=set(), clusters={})
    assert (s.target, s.regression, s.train_failures, s.replay_pool, s.final) == ([], [], [], [], [])
    items, stats = build_training_set(s, replay_fraction=0.15)
    assert items == [] and stats["n"] == 0 and stats["failures"] == 0 and stats["replay"] == 0


def test_no_traces_at_all() -> None:
    s = build_splits(TASK, [], excluded=set(), clusters={})
    assert (s.target, s.regression, s.train_failures, s.replay_pool) == ([], [], [], [])
    assert build_training_set(s, replay_fraction=0.2)[0] == []


def test_only_passes_gives_no_failures_to_train_on() -> None:
    traces = [trace(f"p{i}", text, gold) for i, (text, gold) in enumerate(rows("train", LABELS, per_label=5))]
    s = build_splits(TASK, traces, excluded=set(), clusters={})
    assert s.target == [] and s.train_failures == [] and s.final == []  # 20 traces: too few for a final slice
    assert len(s.regression) == 10 and len(s.replay_pool) == 10


# ---------------------------------------------------------------------------- build_training_set
def _training(seed: int = 0, replay_fraction: float = 0.15, **kw):  # noqa: ANN003, ANN202
    traces, clusters, excluded = scenario(seed)
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, seed=seed)
    items, stats = build_training_set(s, replay_fraction=replay_fraction, seed=seed, **kw)
    return traces, excluded, s, items, stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_never_contains_held_out_or_suspect_traces(seed: int) -> None:
    _, excluded, s, items, _ = _training(seed)
    assert items
    train = ids(items)
    assert not train & ids(s.target)
    assert not train & ids(s.regression)
    assert not train & excluded
    assert not {i for i in train if i.startswith("u")}  # unlabeled


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_has_no_near_duplicate_of_any_eval_input(seed: int) -> None:
    traces, clusters, excluded = scenario(seed)
    # Re-logged requests: the same text again with trivial edits (a later, separate trace).
    texts = {t.id: last_user_text(t.messages) for t in traces}
    dup_traces = []
    for t in list(traces):
        if not t.id[1:].isdigit():
            continue
        if t.verdict == "pass" and int(t.id[1:]) % 4 == 0:
            dup_traces.append(trace(f"p-dup-{t.id}", texts[t.id].capitalize() + "?", t.output))
        if t.verdict == "fail" and t.id not in excluded and int(t.id[1:]) % 2 == 0:
            dup_traces.append(trace(f"f-dup-{t.id}", texts[t.id] + " ?", t.output, "fail", t.correction))
            clusters[next(k for k, v in clusters.items() if t.id in v)].append(f"f-dup-{t.id}")
    traces += dup_traces
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, seed=seed)
    items, stats = build_training_set(s, replay_fraction=0.3, seed=seed)
    eval_texts = [last_user_text(e.messages) for e in [*s.target, *s.regression]]
    train_texts = [last_user_text(it.messages) for it in items]
    assert near_duplicates(train_texts, eval_texts, 0.9) == []
    # some re-logged failures and passes were split across held-out and training data, and caught
    assert stats["dropped_contaminated"] > 0 and stats["replay_pool_contaminated"] > 0


def test_decontamination_covers_extra_eval_sets() -> None:
    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters)
    # a previous promotion's suite that happens to contain (variants of) three of our training failures
    old = [
        EvalItem(
            id=f"old{i}",
            messages=[{"role": "user", "content": last_user_text(it.messages).upper() + "!"}],
            expected=str(it.expected),
        )
        for i, it in enumerate(s.train_failures[:3])
    ]
    items, stats = build_training_set(s, replay_fraction=0.15, eval_sets=[old])
    assert not ids(items) & ids(s.train_failures[:3])
    assert stats["dropped_contaminated"] >= 3
    assert stats["failures"] == len(s.train_failures) - stats["dropped_contaminated"]
    assert stats["dropped_for_balance"] == 0


def test_replay_fraction_is_roughly_honoured_when_failures_are_balanced() -> None:
    balanced = {lab: 12 for lab in ("card_declined", "transfer", "freeze_account")}
    traces, clusters, excluded = scenario(n_fail=balanced, per_label=60)
    # a balance cluster too, so no label needs balancing replay
    for t in traces[:]:
        if t.verdict == "pass" and t.output == "balance" and len(clusters.get("balance ← transfer", [])) < 12:
            traces[traces.index(t)] = f = trace(
                t.id.replace("p", "f"), last_user_text(t.messages), "transfer", "fail", "balance"
            )
            clusters.setdefault("balance ← transfer", []).append(f.id)
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters)
    for frac in (0.1, 0.2, 0.3, 0.5):
        items, stats = build_training_set(s, replay_fraction=frac)
        share = stats["replay"] / (stats["replay"] + stats["failures"])
        assert share == pytest.approx(frac, abs=0.06), (frac, stats)
        assert stats["n"] == len(items)


def test_replay_is_at_least_the_fraction_and_tops_up_rare_labels() -> None:
    _, _, s, items, stats = _training(replay_fraction=0.15)
    assert stats["replay"] / stats["n"] >= 0.15
    labels = Counter(str(it.expected) for it in items)
    assert set(labels) == set(LABELS)  # labels without failures are replayed
    assert max(labels.values()) <= 3 * min(labels.values()), labels
    assert stats["labels"] == dict(labels)
    # no failure thrown away to balance (CLINC has its own near-duplicates, so a failure may go
    # for decontamination: "why was my card declined yesterday" / "my card was declined yesterday, why")
    assert stats["dropped_for_balance"] == 0
    assert stats["failures"] == len(s.train_failures) - stats["dropped_contaminated"]


def test_when_the_pool_cannot_balance_replay_is_capped_but_no_failure_is_dropped() -> None:
    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters)
    # a replay pool of one balance pass and many transfer passes: the rarest label has 1 example, so the
    # cap is 3 — the transfer replay goes, the corrected failures (the evidence) all stay
    s.replay_pool = [
        *[it for it in s.replay_pool if it.expected == "balance"][:1],
        *[it for it in s.replay_pool if it.expected == "transfer"],
    ]
    items, stats = build_training_set(s, replay_fraction=0.5)
    assert stats["dropped_for_balance"] > 0
    assert stats["failures"] == len(s.train_failures) - stats["dropped_contaminated"]
    replay = Counter(str(it.expected) for it in items if it.metadata["provenance"] != "trace")
    assert replay["transfer"] <= 3, replay


def test_balance_labels_never_drops_what_it_is_told_to_keep() -> None:
    items = [_item(i, f"t{i}", "a") for i in range(10)] + [_item(100, "u", "b")]
    kept, dropped = balance_labels(items, keep=lambda it: it.id in {"i7", "i8", "i9"})
    assert [it.id for it in kept] == ["i7", "i8", "i9", "i100"] and dropped == 7


def test_every_item_says_where_it_comes_from_and_why() -> None:
    _, _, s, items, _ = _training(replay_fraction=0.3)
    for it in items:
        assert it.metadata["provenance"] in ("trace", "replay")
        assert it.metadata["reason"]
        assert it.id.split("~")[0] == it.metadata["trace_id"]
    for it in [*s.target, *s.regression, *s.train_failures, *s.replay_pool]:
        assert it.metadata["provenance"] == "trace" and it.metadata["reason"]
    reasons = Counter(it.metadata["reason"].split(":")[0] for it in items)
    assert set(reasons) <= {"train", "replay"}
    assert all(
        it.metadata["reason"].startswith("replay") for it in items if it.metadata["provenance"] == "replay"
    )
    assert all(
        it.metadata["reason"].startswith("train: failure in cluster")
        for it in items
        if it.metadata["provenance"] == "trace"
    )


def test_failure_weight_repeats_failures_only() -> None:
    _, _, s, once, stats1 = _training()
    _, _, _, thrice, stats3 = _training(failure_weight=3)
    assert len(thrice) == len(once) + 2 * stats1["failures"]
    assert stats3["n"] == len(thrice)
    assert len({it.id for it in thrice}) == len(thrice)  # copies get distinct ids …
    c = Counter(it.metadata["trace_id"] for it in thrice)  # … and keep their trace
    assert all(
        c[it.metadata["trace_id"]] == (3 if it.metadata["provenance"] == "trace" else 1) for it in thrice
    )


def test_prior_data_is_merged_but_never_leaks_eval_items() -> None:
    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters)
    prior = [
        it.model_copy(update={"metadata": {"provenance": "prior", "reason": "accumulated"}})
        for it in s.target[:2]
    ]
    prior.append(
        EvalItem(
            id="prior-1",
            messages=[{"role": "user", "content": "why did my card get declined at the zoo"}],
            expected="card_declined",
            metadata={"provenance": "prior", "reason": "accumulated"},
        )
    )
    items, stats = build_training_set(s, replay_fraction=0.15, prior=prior)
    assert "prior-1" in ids(items)
    assert not ids(items) & ids(s.target)


# ------------------------------------------------------------------------------------- helpers
def _item(i: int, text: str, label: str) -> EvalItem:
    return EvalItem(id=f"i{i}", messages=[{"role": "user", "content": text}], expected=label)


def test_dedupe_keeps_the_first_of_identical_items() -> None:
    a, b, c = (
        _item(1, "freeze my card", "freeze_account"),
        _item(2, "freeze my card", "freeze_account"),
        _item(3, "freeze my card", "transfer"),
    )
    assert [it.id for it in dedupe([a, b, c])] == ["i1", "i3"]


def test_balance_labels_caps_at_three_times_the_rarest() -> None:
    items = [_item(i, f"t{i}", "a") for i in range(10)] + [_item(100 + i, f"u{i}", "b") for i in range(2)]
    kept, dropped = balance_labels(items)
    assert Counter(it.expected for it in kept) == {"a": 6, "b": 2} and dropped == 4
    one = [_item(i, f"t{i}", "a") for i in range(5)]
    assert balance_labels(one) == (one, 0)


def test_decontaminate_drops_ids_and_near_duplicates() -> None:
    train = [
        _item(1, "why was my card declined at the store", "card_declined"),
        _item(2, "transfer fifty dollars to savings", "transfer"),
        _item(3, "what's my balance", "balance"),
    ]
    evals = [
        [_item(9, "Why was my card declined at the store?", "card_declined")],
        [_item(3, "totally different text", "balance")],
    ]
    kept, n = decontaminate(train, evals)
    assert [it.id for it in kept] == ["i2"] and n == 1


# ---------------------------------------------------------------------- replay share and the refit
@pytest.mark.parametrize(("fraction", "weight"), [(0.2, 1), (0.4, 1), (0.2, 3)])
def test_the_replay_share_the_plan_asks_for_is_the_share_training_gets(fraction: float, weight: int) -> None:
    """Also when the plan repeats the failures (``failure_weight``): the share is of what training sees."""
    _, _, _, items, stats = _training(replay_fraction=fraction, max_ratio=100.0, failure_weight=weight)
    assert stats["n"] == len(items) and stats["failure_weight"] == weight
    replayed = sum(it.metadata.get("provenance") in ("replay", "hard_negative") for it in items)
    assert replayed / len(items) >= fraction - 1 / len(items), stats
    assert stats["replay_share"] >= fraction - 1 / len(items)


def test_replay_share_holds_when_passes_are_scarce() -> None:
    """Few passes left for replay: they are shown more than once instead of shrinking the share."""
    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0)
    s.replay_pool = s.replay_pool[:3]
    items, stats = build_training_set(s, replay_fraction=0.4, hard_negatives_per_case=0, max_ratio=100.0)
    replayed = [it for it in items if it.metadata.get("provenance") == "replay"]
    assert len(replayed) / len(items) >= 0.4 - 1 / len(items), stats
    assert {it.metadata["trace_id"] for it in replayed} <= {it.id for it in s.replay_pool}
    assert len({it.id for it in items}) == len(items)  # repeats carry distinct ids


def test_refit_trains_on_all_the_evidence_never_on_what_judges_it() -> None:
    """Everything learnable but the suites that verify the refit: the final slice and the regression suite."""
    from kaizen.tools.datasets.training import build_refit_set

    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.2)
    assert s.regression and s.final
    items, stats = build_refit_set(s, max_replay_ratio=100.0)
    got = {it.id for it in items}
    learnable = [*s.target, *s.train_failures, *s.replay_pool]
    dropped = [last_user_text(it.messages) for it in learnable if it.id not in got]
    judged = [last_user_text(it.messages) for it in [*s.final, *s.regression]]
    assert len(dropped) == stats["dropped_contaminated"] < len(learnable) / 5
    assert len(near_duplicates(dropped, judged, 0.9)) == len(dropped)  # only near-dups of what judges
    assert not got & ids(s.final) and not got & ids(s.regression) and not got & excluded
    texts = [last_user_text(it.messages) for it in items]
    assert not near_duplicates(texts, judged, 0.9)


def test_refit_caps_passes_so_failures_are_not_diluted() -> None:
    from kaizen.tools.datasets.training import build_refit_set

    traces, clusters, excluded = scenario()
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0)
    items, stats = build_refit_set(s, max_replay_ratio=1.0)
    assert 0 < stats["replay"] <= stats["failures"] + stats["inferred"]


def test_inferred_labels_train_but_never_judge() -> None:
    """A distrusted or unlabeled trace with an inferred label joins training, never target/regression/final."""
    traces, clusters, excluded = scenario()
    suspect = "s-poison"  # "why was my card declined at the mall", corrected to freeze_account
    unlabeled = next(t for t in traces if t.verdict is None)
    inferred = {suspect: ("card_declined", "relabel"), unlabeled.id: (str(unlabeled.output), "pseudo_label")}
    s = build_splits(
        TASK, traces, excluded=excluded, clusters=clusters, inferred=inferred, final_fraction=0.2
    )
    judged = ids(s.target) | ids(s.regression) | ids(s.final)
    assert not judged & set(inferred)
    learn = {it.id: it for it in [*s.train_failures, *s.replay_pool]}
    assert set(inferred) <= set(learn)
    assert learn[suspect].expected == "card_declined" and learn[suspect].metadata["provenance"] == "inferred"
    assert suspect in ids(s.train_failures)  # the model answered "balance": a failure to fix
    assert unlabeled.id in ids(s.replay_pool)  # the label agrees with the model's answer: a pass to replay
    items, stats = build_training_set(s, replay_fraction=0.2)
    assert stats["inferred"] >= 1


def test_the_target_suite_holds_the_deployed_versions_own_failures() -> None:
    """A scheduled loop's logs accumulate: failures logged against an older version may already be fixed
    by the deployed one, so they train but never judge; all failures judge when none are the deployed one's."""
    import dataclasses

    traces, clusters, excluded = scenario()
    old = {t.id for t in traces if t.verdict == "fail"}
    newer = set(sorted(old)[::2])
    traces = [dataclasses.replace(t, model_version="v2") if t.id in newer else t for t in traces]
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, deployed="v2", final_fraction=0.0)
    assert s.target and ids(s.target) <= newer
    assert (old - newer - excluded) <= ids(s.train_failures)
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, deployed="v9", final_fraction=0.0)
    assert ids(s.target) & (old - newer)  # nothing logged against v9: every failure may judge


def test_a_thin_target_suite_is_topped_up_from_the_deployed_versions_failures() -> None:
    """Per-cluster shares of few current failures can leave 1–2 target items; where a refit follows (a final
    slice exists) the suite is topped up to ``min_target`` from the deployed version's training failures, never
    past half of them, never older ones. Without a final slice the loop's candidate ships: no top-up."""
    import dataclasses

    traces, clusters, excluded = scenario()
    fails = sorted(t.id for t in traces if t.verdict == "fail" and t.id not in excluded)
    current = set(fails[:10])
    traces = [dataclasses.replace(t, model_version="v2") if t.id in current else t for t in traces]

    def split(min_target: int, final_fraction: float = 0.1):  # noqa: ANN202
        return build_splits(
            TASK,
            traces,
            excluded=excluded,
            clusters=clusters,
            deployed="v2",
            final_fraction=final_fraction,
            min_final=2,
            min_target=min_target,
        )

    thin, full, few = split(0), split(5), split(50)
    in_play = current - ids(thin.final)  # the final slice is carved first, the same for every min_target
    assert thin.final and len(thin.target) < len(full.target) == min(5, len(in_play) // 2)
    assert ids(full.target) <= current  # only the deployed version's own failures judge
    assert not ids(full.target) & ids(full.train_failures)
    assert ids(full.target) | ids(full.train_failures) == ids(thin.target) | ids(thin.train_failures)
    assert len(few.target) == max(len(thin.target), len(in_play) // 2)  # never past half of them
    assert len(split(5, final_fraction=0.0).target) == len(
        split(0, final_fraction=0.0).target
    )  # no refit: no top-up


@pytest.mark.parametrize("floor", [0, 2, 5])
def test_replay_floor_anchors_every_label_the_passes_hold(floor: int) -> None:
    """A few failures on few labels: every label with passes in the pool still gets ``floor`` examples
    (as many as the pool has), and the floor never drops or duplicates a failure."""
    traces, clusters, excluded = scenario(n_fail={"card_declined": 3, "transfer": 2})
    s = build_splits(TASK, traces, excluded=excluded, clusters=clusters, final_fraction=0.0)
    items, _ = build_training_set(s, replay_fraction=0.1, replay_per_label=floor, max_ratio=100.0)
    per_label = Counter(str(it.expected) for it in items)
    pool = Counter(str(it.expected) for it in s.replay_pool)
    for lab, n in pool.items():
        assert per_label[lab] >= min(floor, n), (lab, per_label)
    assert ids(s.train_failures) <= ids(items)
    if floor == 5:
        base, _ = build_training_set(s, replay_fraction=0.1, replay_per_label=0, max_ratio=100.0)
        assert len(items) > len(base)
