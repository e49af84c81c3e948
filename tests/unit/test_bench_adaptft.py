"""The pure parts of ``kaizen bench adaptft``: what data each stage and each arm sees.

No model: stage batches, the 70/30 split, the held-out union on clean gold, feedback per arm (the
naive corruption only in the naive arm), regression counting, and the request checks.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

from kaizen.tools.errors import ConfigError, DataError
from kaizen.workflows.bench.adaptft.arms import STAGE_KEYS
from kaizen.workflows.bench.adaptft.feedback import feedback_counts, log_records, matches
from kaizen.workflows.bench.adaptft.prepare import PRESETS, check_request, make_scenario
from kaizen.workflows.bench.adaptft.scenarios import (
    CLINC_FULL_PATH,
    GSM8K_PATH,
    TRAVEL_LABELS,
    Scenario,
    clinc_scenario,
    final_answer,
    gsm8k_scenario,
    travel_slice,
)
from kaizen.workflows.bench.adaptft.stages import (
    build_stages,
    count_regressions,
    heldout_union,
    score,
    split_batch,
    stage_batches,
)
from kaizen.workflows.bench.perturb import STAGE_POISON_RATES, Item, PerturbedItem, poison_count


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return clinc_scenario(v1_per_label=12, seed=11)


def test_scenario_pool_excludes_v1_examples_and_keeps_the_gaps(scenario: Scenario) -> None:
    v1_texts = {it.messages[-1].content for it in scenario.v1_items}
    v1_labels = Counter(it.expected for it in scenario.v1_items)
    assert v1_labels["card_declined"] == 0 and v1_labels["bill_balance"] == 2 and v1_labels["balance"] == 12
    assert not v1_texts & {it.text for it in scenario.pool}
    assert len({it.id for it in scenario.pool}) == len(scenario.pool)
    assert {it.label for it in scenario.pool} == set(scenario.labels) == set(scenario.task.labels)


def test_stage_batches_are_disjoint_stratified_and_seeded(scenario: Scenario) -> None:
    batches = stage_batches(scenario.pool, 3, 25, seed=0)
    assert [len(b) for b in batches] == [25, 25, 25]
    ids = [it.id for b in batches for it in b]
    assert len(set(ids)) == len(ids)  # fresh inputs every stage
    for b in batches:
        counts = Counter(it.label for it in b)
        assert set(counts) == set(scenario.labels)  # every intent, the gap included, in every stage
        assert max(counts.values()) - min(counts.values()) <= 1
    # The pool's order does not matter; the seed does.
    assert stage_batches(list(reversed(scenario.pool)), 3, 25, seed=0) == batches
    assert stage_batches(scenario.pool, 3, 25, seed=1) != batches
    with pytest.raises(DataError, match="inference pool"):
        stage_batches(scenario.pool[:20], 3, 10, seed=0)


def test_build_stages_poisons_exactly_the_stage_rates(scenario: Scenario) -> None:
    stages = build_stages(scenario, 40, seed=3)
    assert [s.poison_rate for s in stages] == list(STAGE_POISON_RATES)
    assert [s.poisoned for s in stages] == [poison_count(40, r) for r in STAGE_POISON_RATES] == [6, 10, 16]
    again = build_stages(scenario, 40, seed=3)
    assert [[it.model_dump() for it in s.batch] for s in again] == [
        [it.model_dump() for it in s.batch] for s in stages
    ]


def _pitem(i: int, label: str = "balance", **kw) -> PerturbedItem:
    return PerturbedItem(
        id=f"x{i}",
        source_text=f"clean text {i}",
        text=kw.pop("text", f"noisy text {i}"),
        gold=label,
        correction=kw.pop("correction", label),
        **kw,
    )


def test_split_is_exactly_70_30_disjoint_and_order_independent() -> None:
    items = [_pitem(i) for i in range(25)]
    logs, test = split_batch(items, seed=0, stage=1)
    assert (len(logs), len(test)) == (17, 8)  # round(0.3 × 25) = 7.5 → 8 (half up)
    assert {it.id for it in logs} | {it.id for it in test} == {it.id for it in items}
    assert not {it.id for it in logs} & {it.id for it in test}
    logs_r, test_r = split_batch(list(reversed(items)), seed=0, stage=1)
    assert {it.id for it in test_r} == {it.id for it in test}
    assert {it.id for it in split_batch(items, seed=0, stage=2)[1]} != {
        it.id for it in test
    }  # each stage its own draw
    assert [len(p) for p in split_batch([_pitem(i) for i in range(10)], 0, 1)] == [7, 3]


def test_heldout_is_the_union_of_test_splits_on_clean_gold() -> None:
    poisoned = _pitem(
        9,
        text="what rhymes with orange",
        correction="transfer",
        poisoned=True,
        poison="off_domain",
        correct_label_known=False,
    )
    s1, s2 = [_pitem(1), _pitem(2, "transfer")], [_pitem(3), poisoned]
    h1 = heldout_union([s1])
    h2 = heldout_union([s1, s2])
    assert [it.id for it in h1] == ["x1", "x2"]
    assert [it.id for it in h2] == ["x1", "x2", "x3", "x9"]  # grows; earlier stages stay in
    # Scored on what the user meant: the source text and its gold label, not the noise or the poison.
    last = h2[-1]
    assert [(m.role, m.content) for m in last.messages] == [
        ("user", "clean text 9")
    ] and last.expected == "balance"
    assert heldout_union([s1, s1]) == h1  # no example twice


def test_feedback_agent_arm_keeps_corrections_naive_arm_is_corrupted(scenario: Scenario) -> None:
    stage = build_stages(scenario, 100, seed=0)[2]  # 40 % poison
    items = stage.logs
    outputs = ["balance"] * len(items)  # most answers wrong: many failures to corrupt
    agent = log_records(scenario, items, outputs, arm="agent", stage=3, seed=0, model_version="v1")
    naive = log_records(scenario, items, outputs, arm="naive", stage=3, seed=0, model_version="v1")
    assert [r["id"] for r in agent] == [r["id"] for r in naive] and all(
        r["id"].startswith("s3-") for r in agent
    )
    by_id = {f"s3-{it.id}": it for it in items}
    for r in agent:
        it, fb = by_id[r["id"]], r["feedback"]
        assert r["metadata"]["adaptft"]["naive"] is None
        if it.correction == "balance":
            assert fb == {"verdict": "pass", "source": "human"}
        else:  # the given correction: the gold for clean/noisy inputs, the poison's own for poisoned ones
            assert fb["verdict"] == "fail" and fb["correction"] == it.correction
    treat = Counter(r["metadata"]["adaptft"]["naive"] for r in naive if r["metadata"]["adaptft"]["naive"])
    poisoned = [it for it in items if it.poisoned]
    noisy_failures = [
        it for it in items if not it.poisoned and it.perturbations and it.correction != "balance"
    ]
    assert poisoned and noisy_failures
    # Every poisoned item is treated, and exactly 30 % of the noisy failures lose their correction;
    # nothing else is touched (the exact shares of the poisoned ones are tested with perturb).
    touched = {r["id"] for r in naive if r["metadata"]["adaptft"]["naive"]}
    noisy_ids = {f"s3-{it.id}" for it in noisy_failures}
    assert {f"s3-{it.id}" for it in poisoned} <= touched <= {f"s3-{it.id}" for it in poisoned} | noisy_ids
    assert len(touched & noisy_ids) == poison_count(len(noisy_failures), 0.3)
    assert abs(treat["wrong"] - 0.5 * len(poisoned)) <= 1 and abs(treat["correct"] - 0.2 * len(poisoned)) <= 1
    for r in naive:
        if r["metadata"]["adaptft"]["naive"] == "no_correction":
            assert r["feedback"]["verdict"] == "fail" and "correction" not in r["feedback"]
    assert feedback_counts(naive)["fail_uncorrected"] == treat["no_correction"]
    assert "fail_uncorrected" not in feedback_counts(agent)


def test_matches_reads_labels_and_final_answers() -> None:
    labels = ["balance", "card_declined"]
    assert matches("classification", "Card declined.", "card_declined", labels)
    assert not matches("classification", "balance", "card_declined", labels)
    assert matches("classification", "n/a", "N/A", labels)  # an off-label correction compares as text
    assert not matches("classification", "balance", None, labels)
    assert matches("math", "3 * 24 = 72.\n#### 72", "She sells 72.\n#### 72", [])
    assert not matches("math", "#### 71", "#### 72", [])


def test_count_regressions_counts_right_to_wrong_on_shared_examples() -> None:
    before = {"a": True, "b": True, "c": False, "d": True}
    after = {"a": False, "b": True, "c": True, "e": False}
    assert count_regressions(before, after) == 1  # a; c is a fix, d and e were not both scored
    assert count_regressions(after, before) == 1  # c
    assert count_regressions(before, before) == 0
    assert score({"a": True, "b": False}, ["a", "b"]) == 0.5 and score({}, []) is None
    with pytest.raises(KeyError):
        score({"a": True}, ["a", "b"])


def test_request_checks_and_presets() -> None:
    with pytest.raises(ConfigError, match="preset full"):
        check_request("gsm8k", "small")
    with pytest.raises(ConfigError, match="unknown preset"):
        check_request("clinc", "huge")
    assert check_request("clinc", "tiny").base == "tiny"
    for p in PRESETS.values():  # every preset's three stages fit in the CLINC inference pool
        assert p.per_stage * len(STAGE_POISON_RATES) <= len(
            clinc_scenario(v1_per_label=p.v1_per_label, seed=11).pool
        )
    assert STAGE_KEYS[:4] == ("stage", "v1", "first", "best") and {
        "naive",
        "oracle",
        "gap",
        "captured",
    } <= set(STAGE_KEYS)


def test_cli_registers_bench_adaptft() -> None:
    from kaizen.workflows.cli.main import build_parser

    args = build_parser().parse_args(["bench", "adaptft", "--preset", "tiny", "--json", "--seed", "3"])
    assert isinstance(args, argparse.Namespace)
    assert (args.scenario, args.preset, args.seed, args.json, args.out) == ("clinc", "tiny", 3, True, None)


def test_travel_scenario_without_the_shared_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CLINC150 not found at .*missing.json.*clinc-travel"):
        travel_slice(tmp_path / "missing.json")


@pytest.mark.skipif(not CLINC_FULL_PATH.exists(), reason="CLINC150 not in the shared data folder")
def test_travel_scenario_is_a_second_domain_with_the_same_kind_of_gaps() -> None:
    sc = make_scenario("clinc-travel", check_request("clinc-travel", "small"), seed=0)
    assert sc.name == "clinc-travel" and sc.task.labels == TRAVEL_LABELS and "travel" in sc.task.system_prompt
    v1 = Counter(it.expected for it in sc.v1_items)
    assert v1["travel_notification"] == 0 and v1["flight_status"] == 2 and v1["book_flight"] == 12
    assert {it.label for it in sc.pool} == set(TRAVEL_LABELS)
    assert not {it.messages[-1].content for it in sc.v1_items} & {it.text for it in sc.pool}
    assert len(build_stages(sc, 100, 0)) == 3


@pytest.mark.skipif(not GSM8K_PATH.exists(), reason="GSM8K not in the shared data folder")
def test_gsm8k_scenario_items_answers_and_references() -> None:
    sc = gsm8k_scenario(v1_size=50, seed=0)
    assert sc.task.kind == "math" and not sc.stratify and len(sc.v1_items) == 50
    it = sc.pool[0]
    assert "####" in sc.reference[it.id] and final_answer(sc.reference[it.id]) == it.label
    assert not {v.messages[0].content for v in sc.v1_items} & {p.text for p in sc.pool[:500]}
    stages = build_stages(sc, 20, seed=0)
    assert [s.poisoned for s in stages] == [3, 5, 8]
    # Fixable noise that would change the answer is off: inputs keep every digit of the source.
    for s in stages:
        for p in s.batch:
            if not p.poisoned:
                assert [c for c in p.text if c.isdigit()] == [c for c in p.source_text if c.isdigit()]
    # A right correction in the logs is the worked solution, so SFT learns to reason, not to guess.
    recs = log_records(
        sc,
        stages[0].logs,
        ["#### -1"] * len(stages[0].logs),
        arm="agent",
        stage=1,
        seed=0,
        model_version="v1",
    )
    clean = [r for r, p in zip(recs, stages[0].logs, strict=True) if not p.poisoned]
    assert clean and all("####" in r["feedback"]["correction"] for r in clean)
    # Every correction either arm is given holds a final answer: kaizen refuses math examples without one.
    for s in stages:
        for arm in ("agent", "naive"):
            recs = log_records(
                sc, s.logs, ["#### -1"] * len(s.logs), arm=arm, stage=s.index, seed=0, model_version="v1"
            )
            assert all(
                final_answer(r["feedback"]["correction"]) for r in recs if r["feedback"].get("correction")
            )


def test_items_are_perturb_items(scenario: Scenario) -> None:
    assert all(isinstance(it, Item) for it in scenario.pool[:5])
