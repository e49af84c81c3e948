"""RuleBrain on realistic banking traces: suspect feedback with its evidence, the failure taxonomy,
unlabeled traces, and the plan it derives from the last verdict. No model, no store."""

from __future__ import annotations

import pytest
from banking_traces import LABELS, TASK, card_declined_failures, passing, trace

from kaizen.agent.rule_brain import RuleBrain
from kaizen.agent.state import Diagnosis, Plan
from kaizen.agent.triage import is_garbage

# The same balance request, with tiny edits (punctuation, a dropped word, singular/plural).
NEAR_DUPS = [
    "how much money do i have in my savings account",
    "how much money do i have in my savings account?",
    "how much money do i have in my saving account",
    "how much money i have in my savings account",
]


def diagnose(traces) -> Diagnosis:  # noqa: ANN001
    return RuleBrain().diagnose(TASK, traces)


def base() -> list:
    """48 passing traces (12 per intent) + 6 legitimate card_declined ← balance failures."""
    return passing() + card_declined_failures()


def suspect(d: Diagnosis, tid: str):  # noqa: ANN201
    found = [s for s in d.suspects if s.trace_id == tid]
    assert found, f"{tid} not flagged; suspects: {[(s.trace_id, s.kind) for s in d.suspects]}"
    return found[0]


def cluster(d: Diagnosis, key: str):  # noqa: ANN201
    found = [c for c in d.clusters if c.key == key]
    assert found, f"no cluster {key!r}; clusters: {[c.key for c in d.clusters]}"
    return found[0]


# ------------------------------------------------------------------------------------ healthy
def test_legit_failures_form_a_fixable_confusion_cluster_and_are_not_flagged() -> None:
    d = diagnose(base())
    assert d.suspects == [], [(s.trace_id, s.kind, s.evidence) for s in d.suspects]
    assert (d.n_traces, d.n_labeled, d.n_unlabeled, d.n_failures, d.n_passes) == (54, 54, 0, 6, 48)
    c = cluster(d, "card_declined ← balance")
    assert c.kind == "confusion" and c.fixable and c.count == 6
    assert sorted(c.trace_ids) == sorted(f"f-cd-{i}" for i in range(6))
    assert (
        c.examples and c.examples[0]["correction"] == "card_declined" and c.examples[0]["output"] == "balance"
    )
    assert "'balance'" in c.hypothesis and "'card_declined'" in c.hypothesis
    assert [c.key for c in d.clusters] == ["card_declined ← balance"]


def test_confusion_clusters_are_counted_separately_and_ordered_by_size() -> None:
    extra = [
        trace("f-tr-0", "send 40 dollars to my brother's account", "balance", "fail", "transfer"),
        trace("f-tr-1", "move 20 from savings over to checking", "balance", "fail", "transfer"),
        trace("f-fr-0", "lock my account, my phone was stolen", "transfer", "fail", "freeze_account"),
    ]
    d = diagnose(base() + extra)
    assert d.suspects == [], [(s.trace_id, s.kind, s.evidence) for s in d.suspects]
    keys = {c.key: c.count for c in d.clusters}
    assert keys == {"card_declined ← balance": 6, "transfer ← balance": 2, "freeze_account ← transfer": 1}
    assert [c.count for c in d.clusters] == sorted((c.count for c in d.clusters), reverse=True)


def test_off_label_output_and_format_problems_are_their_own_clusters() -> None:
    extra = [
        trace(
            "f-off",
            "why did the store reject my card today",
            "I think this is about payments",
            "fail",
            "card_declined",
        ),
        trace("f-fmt", "my debit card got denied at the cinema", "Card declined.", "fail", "card_declined"),
    ]
    d = diagnose(base() + extra)
    assert not {"f-off", "f-fmt"} & d.suspect_ids
    off = cluster(d, "card_declined ← off-label output")
    assert off.kind == "off_label" and off.fixable and off.trace_ids == ["f-off"]
    fmt = cluster(d, "card_declined ← badly formatted")
    assert fmt.kind == "format" and fmt.fixable and fmt.trace_ids == ["f-fmt"]


def test_failure_without_correction_is_an_unfixable_uncorrected_cluster() -> None:
    extra = [
        trace(
            "f-nc-0", "my card didn't work at the gas pump", "balance", "fail", None, reason="wrong intent"
        ),
        trace("f-nc-1", "why was my payment card refused online", "balance", "fail", None),
    ]
    d = diagnose(base() + extra)
    assert not {"f-nc-0", "f-nc-1"} & d.suspect_ids
    unc = [c for c in d.clusters if c.kind == "uncorrected"]
    assert len(unc) == 1
    assert not unc[0].fixable and sorted(unc[0].trace_ids) == ["f-nc-0", "f-nc-1"] and unc[0].count == 2
    assert cluster(d, "card_declined ← balance").count == 6  # the corrected ones are unaffected
    assert d.n_failures == 8


def test_unlabeled_traces_are_counted_and_appear_in_no_cluster() -> None:
    unl = [
        trace(f"u-{i}", text, "balance", None)
        for i, text in enumerate(
            [
                "what's left in my checking account",
                "why did my card get declined at the airport",
                "freeze my card and account",
            ]
        )
    ]
    d = diagnose(base() + unl)
    assert (d.n_traces, d.n_labeled, d.n_unlabeled) == (57, 54, 3)
    assert (d.n_failures, d.n_passes) == (6, 48)
    in_clusters = {i for c in d.clusters for i in c.trace_ids}
    assert not in_clusters & {"u-0", "u-1", "u-2"}
    assert not d.suspect_ids & {"u-0", "u-1", "u-2"}


def test_all_unlabeled_gives_an_empty_diagnosis() -> None:
    d = diagnose(
        [trace(f"u-{i}", t.messages[-1]["content"], t.output, None) for i, t in enumerate(passing(3))]
    )
    assert (d.n_traces, d.n_labeled, d.n_unlabeled, d.n_failures) == (12, 0, 12, 0)
    assert d.clusters == [] and d.suspects == []


# ------------------------------------------------------------------------------ suspect feedback
def test_correction_outside_the_label_set_is_flagged_with_evidence() -> None:
    d = diagnose(
        base()
        + [
            trace(
                "bad-lab",
                "why does my card keep getting declined at walmart",
                "balance",
                "fail",
                "refund_request",
            )
        ]
    )
    s = suspect(d, "bad-lab")
    assert s.kind == "correction_off_label"
    assert s.evidence["correction"] == "refund_request" and s.evidence["labels"] == LABELS


def test_correction_contradicting_near_duplicates_is_flagged_with_the_neighbours() -> None:
    dups = [trace(f"dup-{i}", text, "balance") for i, text in enumerate(NEAR_DUPS)]
    poison = trace("poison", "how much money do i have in my savings acount", "balance", "fail", "transfer")
    d = diagnose(base() + dups + [poison])
    s = suspect(d, "poison")
    assert s.kind == "contradicts_near_duplicates"
    assert s.evidence["correction"] == "transfer"
    neighbours = s.evidence["neighbours"]
    assert {f"dup-{i}" for i in range(4)} <= {n["trace_id"] for n in neighbours}
    assert all(n["label"] == "balance" and n["similarity"] >= 0.75 for n in neighbours)
    # the near-duplicates themselves (passes that agree with each other) are not suspect
    assert not {f"dup-{i}" for i in range(4)} & d.suspect_ids


def test_a_correction_agreeing_with_its_near_duplicates_is_not_flagged() -> None:
    dups = [trace(f"dup-{i}", text, "balance") for i, text in enumerate(NEAR_DUPS)]
    ok = trace("ok", "how much money do i have in my savings acount", "transfer", "fail", "balance")
    d = diagnose(base() + dups + [ok])
    assert "ok" not in d.suspect_ids
    assert cluster(d, "balance ← transfer").trace_ids == ["ok"]


@pytest.mark.parametrize(
    "text",
    ["what size wipers does this car take", "how many sides are in a hexagon", "when was kobe bryant born"],
)
def test_off_domain_input_is_flagged_with_its_best_similarity(text: str) -> None:
    d = diagnose(base() + [trace("off", text, "balance", "fail", "transfer")])
    s = suspect(d, "off")
    assert s.kind == "off_domain_input"
    assert s.evidence["input"] == text
    # by meaning (embedding cosine < 0.3) when the sentence-embedding model is installed, else by TF-IDF (< 0.12)
    limit = 0.3 if s.evidence.get("method") == "embedding" else 0.12
    assert 0.0 <= s.evidence["best_similarity"] < limit


def test_in_domain_inputs_with_typos_are_not_off_domain() -> None:
    typos = [
        trace("t-0", "whats my acount balanse", "transfer", "fail", "balance"),
        trace("t-1", "my crd was declned at the shop", "balance", "fail", "card_declined"),
        trace("t-2", "pls frezee my acount", "freeze_account"),
    ]
    d = diagnose(base() + typos)
    assert not {"t-0", "t-1", "t-2"} & d.suspect_ids, [(s.trace_id, s.kind, s.evidence) for s in d.suspects]


@pytest.mark.parametrize("text", ["", "   ", "!!!!", "12345 67890", "?", "🙂🙂🙂🙂"])
def test_empty_or_garbage_input_is_flagged(text: str) -> None:
    d = diagnose(base() + [trace("junk", text, "balance", "fail", "freeze_account")])
    s = suspect(d, "junk")
    assert s.kind == "empty_or_garbage_input"
    assert s.evidence["input"] == text[:200]


def test_garbage_passes_are_flagged_too() -> None:
    d = diagnose(base() + [trace("junk-pass", "!!!!", "balance")])
    assert suspect(d, "junk-pass").kind == "empty_or_garbage_input"


def test_is_garbage() -> None:
    assert is_garbage("") and is_garbage("!!!!") and is_garbage("12345 67890") and is_garbage("x")
    assert not is_garbage("freeze my account") and not is_garbage("send $200 to mom")


def test_correction_equal_to_output_is_flagged() -> None:
    d = diagnose(
        base()
        + [trace("same", "why was my card declined at the bakery", "card_declined", "fail", "card_declined")]
    )
    s = suspect(d, "same")
    assert s.kind == "correction_equals_output" and s.evidence["output"] == "card_declined"


def test_every_suspect_is_in_an_unfixable_suspect_cluster_and_in_no_other() -> None:
    dups = [trace(f"dup-{i}", text, "balance") for i, text in enumerate(NEAR_DUPS)]
    bad = [
        trace(
            "bad-lab",
            "why does my card keep getting declined at walmart",
            "balance",
            "fail",
            "refund_request",
        ),
        trace("poison", "how much money do i have in my savings acount", "balance", "fail", "transfer"),
        trace("off", "what size wipers does this car take", "balance", "fail", "transfer"),
        trace("junk", "!!!!", "balance", "fail", "freeze_account"),
        trace("same", "why was my card declined at the bakery", "card_declined", "fail", "card_declined"),
    ]
    d = diagnose(base() + dups + bad)
    kinds = {s.trace_id: s.kind for s in d.suspects}
    assert kinds == {
        "bad-lab": "correction_off_label",
        "poison": "contradicts_near_duplicates",
        "off": "off_domain_input",
        "junk": "empty_or_garbage_input",
        "same": "correction_equals_output",
    }
    suspect_clusters = {c.key: c for c in d.clusters if c.key.startswith("suspect:")}
    assert set(suspect_clusters) == {f"suspect:{k}" for k in kinds.values()}
    for c in suspect_clusters.values():
        assert c.kind == "suspect" and not c.fixable and c.count == len(c.trace_ids)
    for s in d.suspects:
        holders = [c.key for c in d.clusters if s.trace_id in c.trace_ids]
        assert holders == [f"suspect:{s.kind}"], (s.trace_id, holders)
    # the legit failures are untouched by the poison around them
    c = cluster(d, "card_declined ← balance")
    assert c.fixable and c.count == 6
    assert d.n_failures == 6 + len(bad)


def test_diagnosis_is_deterministic_and_order_independent() -> None:
    traces = base() + [
        trace("off", "what size wipers does this car take", "balance", "fail", "transfer"),
        trace("bad-lab", "why does my card keep getting declined at walmart", "balance", "fail", "refund"),
    ]
    a, b = diagnose(traces), diagnose(list(reversed(traces)))
    assert a.model_dump() == diagnose(traces).model_dump()
    assert {(s.trace_id, s.kind) for s in a.suspects} == {(s.trace_id, s.kind) for s in b.suspects}
    assert {(c.key, c.count, frozenset(c.trace_ids)) for c in a.clusters} == {
        (c.key, c.count, frozenset(c.trace_ids)) for c in b.clusters
    }


def test_generation_tasks_cluster_by_slice_and_reason() -> None:
    from kaizen.tools.schema import TaskSpec

    gen = TaskSpec(name="summaries", kind="generation")
    ts = [
        trace(
            f"g-{i}",
            f"summarise the statement for account {i} and list the large transfers",
            "Short summary.",
            "fail",
            "A better summary.",
            reason="too short",
            metadata={"slice": "statements"},
        )
        for i in range(3)
    ]
    ts += [
        trace(f"ok-{i}", f"summarise my card spending for month {i}", "A fine summary of card spending.")
        for i in range(3)
    ]
    d = RuleBrain().diagnose(gen, ts)
    c = cluster(d, "statements: too short")
    assert c.kind == "slice" and c.fixable and c.count == 3


# ---------------------------------------------------------------------------------------- plan
def _diag() -> Diagnosis:
    return diagnose(base())


DEFAULT = Plan(iteration=1)


def test_plan_first_iteration_is_the_default_recipe() -> None:
    p = RuleBrain().plan(1, _diag(), None, None)
    assert p == Plan(iteration=1, rationale=p.rationale)
    assert 0.1 <= p.replay_fraction <= 0.2  # Pioneer Agent: 10–20 % replay
    assert p.failure_weight == 1 and p.start == "auto"
    assert p.rationale and "default" in p.rationale[0]
    # a verdict without a previous plan (or the reverse) is still a first iteration
    assert (
        RuleBrain().plan(1, _diag(), {"new_regressions": 9}, None).replay_fraction == DEFAULT.replay_fraction
    )


def test_plan_after_too_many_regressions_doubles_replay_and_halves_lr() -> None:
    prev = Plan(iteration=1)
    last = {
        "passed": False,
        "new_regressions": 5,
        "max_new_regressions": 2,
        "target_gain": 0.5,
        "target_after": 0.9,
    }
    p = RuleBrain().plan(2, _diag(), last, prev)
    assert p.iteration == 2
    assert p.replay_fraction == pytest.approx(min(0.5, 2 * prev.replay_fraction))
    assert p.learning_rate == pytest.approx(prev.learning_rate / 2)
    assert p.epochs == prev.epochs and p.failure_weight == prev.failure_weight
    assert any("regressions" in r for r in p.rationale)
    # replay is capped at 50 %
    p3 = RuleBrain().plan(3, _diag(), last, p.model_copy(update={"replay_fraction": 0.4}))
    assert p3.replay_fraction == 0.5


def test_plan_regressions_at_the_limit_do_not_change_replay() -> None:
    last = {"new_regressions": 2, "max_new_regressions": 2, "target_gain": 0.0, "target_after": 0.9}
    p = RuleBrain().plan(2, _diag(), last, Plan(iteration=1))
    assert p.replay_fraction == DEFAULT.replay_fraction and p.learning_rate == DEFAULT.learning_rate


def test_plan_after_no_target_gain_with_a_high_target_adds_epochs() -> None:
    last = {"new_regressions": 0, "max_new_regressions": 2, "target_gain": 0.0, "target_after": 0.85}
    p = RuleBrain().plan(2, _diag(), last, Plan(iteration=1))
    assert p.epochs == DEFAULT.epochs + 1 and p.failure_weight == 1
    assert p.replay_fraction == DEFAULT.replay_fraction and p.learning_rate == DEFAULT.learning_rate
    assert any("epochs" in r for r in p.rationale)


def test_plan_after_a_low_target_score_weights_failures_up() -> None:
    last = {"new_regressions": 0, "max_new_regressions": 2, "target_gain": 0.1, "target_after": 0.4}
    prev = Plan(iteration=1)
    p = RuleBrain().plan(2, _diag(), last, prev)
    assert p.failure_weight == 2 and p.epochs == prev.epochs
    assert any("failure" in r for r in p.rationale)
    # capped at 4 copies
    p4 = RuleBrain().plan(3, _diag(), last, prev.model_copy(update={"failure_weight": 4}))
    assert p4.failure_weight == 4


def test_plan_with_regressions_and_no_gain_changes_both() -> None:
    last = {"new_regressions": 3, "max_new_regressions": 2, "target_gain": -0.1, "target_after": 0.3}
    p = RuleBrain().plan(2, _diag(), last, Plan(iteration=1))
    assert p.replay_fraction == pytest.approx(2 * DEFAULT.replay_fraction)
    assert p.learning_rate == pytest.approx(DEFAULT.learning_rate / 2) and p.failure_weight == 2
    assert len(p.rationale) == 2


def test_plan_after_a_failure_for_another_reason_adds_an_epoch() -> None:
    last = {"new_regressions": 0, "max_new_regressions": 2, "target_gain": 0.2, "target_after": 0.9}
    p = RuleBrain().plan(2, _diag(), last, Plan(iteration=1, epochs=2.0))
    assert p.epochs == 3.0 and p.rationale


def test_plan_does_not_mutate_the_previous_plan() -> None:
    prev = Plan(iteration=1)
    before = prev.model_dump()
    RuleBrain().plan(2, _diag(), {"new_regressions": 9, "max_new_regressions": 2, "target_gain": 0.0}, prev)
    assert prev.model_dump() == before
