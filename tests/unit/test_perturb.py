"""The AdaptFT-style perturbation generator: the registry, what each perturbation does, seeding and
order independence, exact poison counts, and the realistic-naive feedback corruption. Pure values."""

from __future__ import annotations

import random
import re
import string
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from kaizen.workflows.bench.perturb import (
    NAIVE_NO_CORRECTION,
    OUT_OF_SCOPE,
    PERTURBATIONS,
    STAGE_POISON_RATES,
    Item,
    PerturbedItem,
    apply_one,
    effective_rates,
    hit_counts,
    items_from_pairs,
    naive_feedback,
    names,
    perturb,
    poison_count,
    table,
)
from kaizen.workflows.bench.perturb.words import (
    CODE_SWITCH,  # the dictionary the effect check compares against
)

LABELS = ["card_declined", "balance", "transfer", "bill_due", "freeze_account"]
TEXTS = [
    (
        "Why was my card declined at the store yesterday? I have money in the account, please help.",
        "card_declined",
    ),
    ("can you tell me what the balance is on my checking account", "balance"),
    ("I need to transfer $200 to my friend's account today!", "transfer"),
    ("When is my electricity bill due?", "bill_due"),
    ("Please freeze my account, I think someone has my card.", "freeze_account"),
]
SEEDS = range(12)


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    return len(sa & sb) / max(1, len(sa | sb))


def is_subsequence(small: list[str] | str, big: list[str] | str) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def corpus(n: int, seed: int = 0) -> list[Item]:
    """n items cycling over the test texts, with a counter so every text is distinct."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        text, label = TEXTS[rnd.randrange(len(TEXTS))]
        out.append(Item(id=f"it{i:05d}", text=f"{text} (ref {i})", label=label))
    return out


def only(**rates: float) -> dict[str, float]:
    """Every perturbation off except the given ones."""
    return {**{n: 0.0 for n in PERTURBATIONS}, **rates}


# ---------------------------------------------------------------------- per-type effect checks
# check(text, label, out_text, correction) asserts what the perturbation claims to do.
def _fixable(fn: Callable[[str, str], None]) -> Callable[[str, str, str, str | None], None]:
    def check(text: str, label: str, out: str, corr: str | None) -> None:
        assert corr == label, "a fixable perturbation keeps the correction right"
        fn(text, out)

    return check


def _typo(text: str, out: str) -> None:
    assert out != text and abs(len(out) - len(text)) <= 3
    assert [w for w in out.split() if w in text.split()], "most words survive a typo"
    diff = (Counter(text) - Counter(out)) + (Counter(out) - Counter(text))
    assert sum(diff.values()) <= 2, "swaps keep the letters; drops and doubles change one each"


def _casing(text: str, out: str) -> None:
    assert out != text and out.lower() == text.lower()


def _grammar(text: str, out: str) -> None:
    agreement = {"is", "are", "was", "were", "do", "does", "has", "have", "don't", "doesn't"}
    if not set(words(text)) & ({"a", "an", "the"} | agreement):
        assert out == text, "nothing to break: left alone"
        return
    assert out != text
    removed = Counter(words(text)) - Counter(words(out))
    added = Counter(words(out)) - Counter(words(text))
    assert set(removed) <= {"a", "an", "the"} | agreement and set(added) <= agreement


def _truncation(text: str, out: str) -> None:
    assert len(out) < len(text) and text.startswith(out) and len(out.split()) >= len(text.split()) // 2


def _prefix(text: str, out: str) -> None:
    assert out.endswith(text) and len(out) > len(text)


def _suffix(text: str, out: str) -> None:
    assert out.startswith(text) and len(out) > len(text)


def _filler(text: str, out: str) -> None:
    assert is_subsequence(text.split(), out.split()) and len(out.split()) > len(text.split())


def _emoji(text: str, out: str) -> None:
    plain = "".join(c for c in out if ord(c) < 0x2000)
    assert out != text and plain.split() == text.split()


def _stutter(text: str, out: str) -> None:
    extra = Counter(words(out)) - Counter(words(text))
    assert sum(extra.values()) == 1 and not Counter(words(text)) - Counter(words(out))
    (w,) = extra
    assert re.search(rf"\b{re.escape(w)} {re.escape(w)}\b", out.lower())


def _code_switch(text: str, out: str) -> None:
    foreign = {w for table in CODE_SWITCH.values() for v in table.values() for w in words(v)}
    new = set(words(out)) - set(words(text))
    assert out != text and new and new <= foreign
    assert len(words(out)) - len(words(text)) <= 6, "a few words, not a translation"


def _near_duplicate(text: str, out: str) -> None:
    assert out != text and jaccard(text, out) >= 0.6


def _abbreviation(text: str, out: str) -> None:
    shortened = len(out) < len(text) and len(out.split()) == len(text.split())
    tail = out.startswith(text) and out[len(text) :].strip() in {"pls", "thx", "asap", "plz", "tia"}
    assert shortened or tail


def _punctuation_loss(text: str, out: str) -> None:
    if not any(c in string.punctuation for c in text):
        assert out == text
        return
    assert out != text and is_subsequence(out, text)
    assert all(c in string.punctuation for c in (Counter(text) - Counter(out)).elements())


def _whitespace(text: str, out: str) -> None:
    assert out != text and out.split() == text.split()


def _label_flip(text: str, label: str, out: str, corr: str | None) -> None:
    assert out == text and corr in LABELS and corr != label


def _off_label(text: str, label: str, out: str, corr: str | None) -> None:
    assert out == text and corr and corr not in LABELS


def _false_premise(text: str, label: str, out: str, corr: str | None) -> None:
    assert out.endswith(text) and corr in LABELS and corr != label
    assert corr.replace("_", " ") in out[: len(out) - len(text)]


def _injection(text: str, label: str, out: str, corr: str | None) -> None:
    assert out.startswith(text) and corr in LABELS and corr != label
    tail = out[len(text) :].lower()
    assert corr in tail and ("ignore" in tail or "disregard" in tail or "system:" in tail)


def _replaced(min_overlap: float = 0.25) -> Callable[[str, str, str, str | None], None]:
    def check(text: str, label: str, out: str, corr: str | None) -> None:
        assert corr in LABELS, "the feedback names a label, which cannot be right for this input"
        assert text not in out and jaccard(text, out) < min_overlap

    return check


def _jailbreak(text: str, label: str, out: str, corr: str | None) -> None:
    _replaced(0.3)(text, label, out, corr)
    markers = r"without any rules|no content policy|developer mode|no restrictions|pretend"
    assert re.search(markers, out.lower())


def _gibberish(text: str, label: str, out: str, corr: str | None) -> None:
    _replaced(0.01)(text, label, out, corr)
    assert re.fullmatch(r"[a-z]+( [a-z]+)*", out)


def _empty(text: str, label: str, out: str, corr: str | None) -> None:
    assert out.strip() == "" and corr in LABELS


CHECKS: dict[str, Callable[[str, str, str, str | None], None]] = {
    "typo": _fixable(_typo),
    "casing": _fixable(_casing),
    "grammar": _fixable(_grammar),
    "truncation": _fixable(_truncation),
    "preamble": _fixable(_prefix),
    "retry": _fixable(_prefix),
    "signature": _fixable(_suffix),
    "filler": _fixable(_filler),
    "emoji": _fixable(_emoji),
    "stutter": _fixable(_stutter),
    "code_switch": _fixable(_code_switch),
    "near_duplicate": _fixable(_near_duplicate),
    "abbreviation": _fixable(_abbreviation),
    "punctuation_loss": _fixable(_punctuation_loss),
    "whitespace": _fixable(_whitespace),
    "label_flip": _label_flip,
    "off_label_correction": _off_label,
    "false_premise": _false_premise,
    "prompt_injection": _injection,
    "jailbreak": _jailbreak,
    "off_domain": _replaced(0.25),
    "gibberish": _gibberish,
    "empty": _empty,
}


# ------------------------------------------------------------------------------------ registry
def test_module_is_pure_no_ml_stack_imported() -> None:
    """The benchmark generator must run where torch is not installed (and import fast)."""
    code = (
        "import sys, kaizen.workflows.bench.perturb; "
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in "
        "{'torch', 'transformers', 'trl', 'peft', 'vllm', 'datasets', 'numpy'} or m.startswith('kaizen.tools')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=__file__.rsplit("/tests/", 1)[0],
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_registry_has_at_least_20_types_in_both_families() -> None:
    assert len(PERTURBATIONS) >= 20
    fam = Counter(p.family for p in PERTURBATIONS.values())
    assert fam["fixable"] >= 13 and fam["poison"] >= 7
    for name, p in PERTURBATIONS.items():
        assert p.name == name and 0 < p.default_rate <= 1 and p.effect and p.fn.__doc__.count("\n") >= 1
    assert names("fixable") + names("poison") == list(PERTURBATIONS), "fixable ones first (application order)"


def test_every_type_has_an_effect_check() -> None:
    """A new perturbation must come with a test of what it claims to do."""
    assert set(CHECKS) == set(PERTURBATIONS)


def test_registry_metadata_is_consistent() -> None:
    for p in PERTURBATIONS.values():
        if p.family == "fixable":
            assert p.target == "input" and p.keeps_label and not p.replaces_input
        if p.replaces_input:
            assert not p.keeps_label and p.family == "poison"
    assert {p.name for p in PERTURBATIONS.values() if p.target == "correction"} >= {"label_flip"}
    assert table()[0].keys() == {"name", "family", "default_rate", "target", "effect"}
    assert abs(sum(PERTURBATIONS[n].default_rate for n in names("poison")) - STAGE_POISON_RATES[0]) < 1e-9


# -------------------------------------------------------------------------- per-type behaviour
@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_does_what_it_claims(name: str) -> None:
    for text, label in TEXTS:
        for seed in SEEDS:
            out, corr = apply_one(name, text, label, LABELS, seed=seed)
            CHECKS[name](text, label, out, corr)


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_is_deterministic_and_seed_dependent(name: str) -> None:
    text, label = TEXTS[0]
    assert apply_one(name, text, label, LABELS, seed=3) == apply_one(name, text, label, LABELS, seed=3)
    assert apply_one(name, text, label, LABELS, 3, "a") == apply_one(name, text, label, LABELS, 3, "a")
    outcomes = {apply_one(name, text, label, LABELS, seed=s) for s in range(20)}
    assert len(outcomes) > 1, "a different seed should usually give a different result"


@pytest.mark.parametrize("name", [n for n, p in PERTURBATIONS.items() if p.target == "correction"])
def test_correction_poisons_leave_the_input_alone(name: str) -> None:
    items = perturb(corpus(200), LABELS, seed=1, rates=only(**{name: 1.0}), poison_rate=1.0)
    assert all(it.text == it.source_text and it.correction != it.gold for it in items)
    assert all(it.correct_label_known and it.expected == it.gold for it in items)


def test_typo_on_text_without_letters_is_a_no_op_and_not_recorded() -> None:
    assert apply_one("typo", "1234 ?!", "balance", LABELS) == ("1234 ?!", "balance")
    item = Item(id="x", text="1234 ?!", label="balance")
    items = perturb([item], LABELS, 0, rates=only(typo=1.0), poison_rate=0)
    assert items[0].perturbations == [] and items[0].text == "1234 ?!"


def test_truncation_of_a_single_word_cuts_characters() -> None:
    out, _ = apply_one("truncation", "transfers", "transfer", LABELS, seed=2)
    assert "transfers".startswith(out) and len("transfers") / 2 <= len(out) < len("transfers")


# --------------------------------------------------------------------------------- perturb()
def test_perturb_records_truth_for_every_item() -> None:
    items = corpus(400)
    out = perturb(items, LABELS, seed=7, poison_rate=0.25)
    assert [o.id for o in out] == [i.id for i in items]
    for src, o in zip(items, out, strict=True):
        assert o.source_text == src.text and o.gold == src.label
        if not o.poisoned:
            assert o.correction == o.gold and o.correct_label_known and o.poison is None
            assert (o.text != o.source_text) == bool(o.perturbations)
            assert all(PERTURBATIONS[n].family == "fixable" for n in o.perturbations)
        else:
            assert o.perturbations[-1] == o.poison and PERTURBATIONS[o.poison].family == "poison"
            assert sum(PERTURBATIONS[n].family == "poison" for n in o.perturbations) == 1
            assert o.correct_label_known == PERTURBATIONS[o.poison].keeps_label
            if PERTURBATIONS[o.poison].replaces_input:
                assert o.perturbations == [o.poison] and o.expected is None


def test_perturb_is_deterministic_and_seed_dependent() -> None:
    items = corpus(300)
    a = perturb(items, LABELS, seed=11, poison_rate=0.4)
    assert a == perturb(items, LABELS, seed=11, poison_rate=0.4)
    assert a != perturb(items, LABELS, seed=12, poison_rate=0.4)


def test_rate_of_one_perturbation_is_honoured_over_2000_items() -> None:
    out = perturb(corpus(2000), LABELS, seed=3, rates=only(preamble=0.1), poison_rate=0)
    frac = sum("preamble" in o.perturbations for o in out) / 2000
    assert abs(frac - 0.1) < 0.02
    assert set(hit_counts(out)) == {"preamble"}


def test_default_rates_are_roughly_honoured() -> None:
    out = perturb(corpus(2000), LABELS, seed=5, poison_rate=0)
    counts = hit_counts(out)
    for name in ("typo", "preamble", "retry", "signature", "filler", "whitespace", "stutter", "casing"):
        rate = PERTURBATIONS[name].default_rate
        assert abs(counts.get(name, 0) / 2000 - rate) < 0.025, (name, counts.get(name, 0))


def test_rate_zero_disables_and_rate_one_always_hits() -> None:
    out = perturb(corpus(300), LABELS, seed=2, rates={"typo": 0.0, "signature": 1.0}, poison_rate=0)
    assert all("typo" not in o.perturbations and "signature" in o.perturbations for o in out)


@pytest.mark.parametrize("n", [1, 7, 40, 500, 2000])
@pytest.mark.parametrize("rate", STAGE_POISON_RATES)
def test_poison_rate_gives_an_exact_count(n: int, rate: float) -> None:
    out = perturb(corpus(n), LABELS, seed=n, poison_rate=rate)
    assert sum(o.poisoned for o in out) == poison_count(n, rate) == int(rate * n + 0.5)


def test_poison_count_rounds_half_up() -> None:
    assert poison_count(10, 0.25) == 3 and poison_count(10, 0.15) == 2 and poison_count(3, 0.4) == 1
    assert poison_count(500, 0.15) == 75 and poison_count(500, 0.25) == 125 and poison_count(500, 0.4) == 200
    assert poison_count(0, 0.4) == 0 and poison_count(9, 1.0) == 9


def test_poison_types_follow_the_rates_as_weights() -> None:
    out = perturb(corpus(2000), LABELS, seed=4, poison_rate=1.0)
    types = Counter(o.poison for o in out)
    total = sum(PERTURBATIONS[n].default_rate for n in names("poison"))
    assert set(types) == set(names("poison"))
    for name, k in types.items():
        assert abs(k / 2000 - PERTURBATIONS[name].default_rate / total) < 0.04, (name, k)


def test_poison_without_a_target_rate_uses_the_per_type_rates() -> None:
    out = perturb(corpus(2000), LABELS, seed=6)
    assert abs(sum(o.poisoned for o in out) / 2000 - 0.15) < 0.025
    only_flips = perturb(corpus(2000), LABELS, seed=6, rates=only(label_flip=0.1))
    assert {o.poison for o in only_flips if o.poisoned} == {"label_flip"}
    assert abs(sum(o.poisoned for o in only_flips) / 2000 - 0.1) < 0.02


def test_disabled_poisons_are_never_chosen() -> None:
    out = perturb(corpus(500), LABELS, seed=8, rates={"empty": 0.0, "gibberish": 0.0}, poison_rate=0.4)
    assert not {"empty", "gibberish"} & {o.poison for o in out}


# --------------------------------------------------------------------------- order independence
def test_results_do_not_depend_on_item_order() -> None:
    items = corpus(600)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    for kw in ({"poison_rate": 0.25}, {}):
        a = {o.id: o for o in perturb(items, LABELS, seed=9, **kw)}
        b = {o.id: o for o in perturb(shuffled, LABELS, seed=9, **kw)}
        assert a == b


def test_hits_do_not_depend_on_which_other_perturbations_are_enabled() -> None:
    items = corpus(800)
    alone = perturb(items, LABELS, seed=10, rates=only(typo=0.3), poison_rate=0)
    crowd = perturb(items, LABELS, seed=10, rates={"typo": 0.3}, poison_rate=0)

    def hit(out: list[PerturbedItem]) -> set[str]:
        return {o.id for o in out if "typo" in o.perturbations}

    assert hit(alone) == hit(crowd) and hit(alone)
    assert hit_counts(crowd).keys() > {"typo"}, "the others did fire"


def test_poison_choice_does_not_depend_on_the_fixable_rates() -> None:
    items = corpus(500)
    poison_only = only(**{n: PERTURBATIONS[n].default_rate for n in names("poison")})
    a = perturb(items, LABELS, seed=12, rates=poison_only, poison_rate=0.25)
    b = perturb(items, LABELS, seed=12, poison_rate=0.25)
    assert [(o.id, o.poison, o.correction) for o in a] == [(o.id, o.poison, o.correction) for o in b]


# ------------------------------------------------------------------------------------ validation
def test_bad_inputs_are_errors() -> None:
    items = corpus(5)
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(items, LABELS, 0, rates={"nope": 0.1})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        effective_rates({"typo": 1.5})
    with pytest.raises(ValueError, match="poison_rate"):
        perturb(items, LABELS, 0, poison_rate=-0.1)
    with pytest.raises(ValueError, match="not in the label set"):
        perturb([Item(id="a", text="x", label="other")], LABELS, 0)
    with pytest.raises(ValueError, match="unique"):
        perturb([items[0], items[0]], LABELS, 0)
    with pytest.raises(ValueError, match="two distinct"):
        perturb([Item(id="a", text="x", label="balance")], ["balance"], 0)
    with pytest.raises(ValueError, match="every poison"):
        perturb(items, LABELS, 0, rates=only(typo=0.1), poison_rate=0.4)
    with pytest.raises(ValidationError):
        Item(id="a", text="x", label="balance", extra=1)  # type: ignore[call-arg]


def test_items_from_pairs_gives_unique_content_ids() -> None:
    pairs = [(t, lab) for t, lab in TEXTS] + [TEXTS[0]]
    items = items_from_pairs(pairs)
    assert len({i.id for i in items}) == len(items) and items[-1].id == items[0].id + "-2"
    assert items_from_pairs(reversed(pairs[:-1]))[-1].id == items[0].id


def test_perturbed_item_round_trips_through_json() -> None:
    (o,) = perturb(corpus(1), LABELS, seed=0, poison_rate=1.0)
    assert PerturbedItem.model_validate_json(o.model_dump_json()) == o


# ------------------------------------------------------------------------------ naive feedback
def staged(n: int = 2000, seed: int = 21, rate: float = 0.25) -> tuple[list[PerturbedItem], set[str]]:
    """A stage's logs and its failures: every other item failed."""
    out = perturb(corpus(n), LABELS, seed=seed, poison_rate=rate)
    return out, {o.id for i, o in enumerate(out) if i % 2 == 0}


def test_naive_rates_are_honoured_exactly() -> None:
    logs, failed = staged()
    out = naive_feedback(logs, LABELS, seed=1, failed=failed)
    noisy = [o for o in out if not o.poisoned and o.perturbations and o.id in failed]
    poisoned = [o for o in out if o.poisoned]
    assert len(noisy) > 100 and len(poisoned) == 500
    assert sum(o.naive == "no_correction" for o in noisy) == int(NAIVE_NO_CORRECTION * len(noisy) + 0.5)
    assert all(o.correction is None for o in noisy if o.naive == "no_correction")
    assert all(o.naive is None and o.correction == o.gold for o in noisy if o.naive != "no_correction")
    tally = Counter(o.naive for o in poisoned)
    assert tally == {"wrong": 250, "correct": 100, "no_correction": 150}


def test_naive_corrections_are_what_they_say() -> None:
    logs, failed = staged(seed=22, rate=0.4)
    for o in naive_feedback(logs, LABELS, seed=2, failed=failed):
        right = o.gold if o.correct_label_known else OUT_OF_SCOPE
        if o.naive == "wrong":
            assert o.correction is not None and o.correction != right
        elif o.naive == "correct":
            assert o.correction == right
        elif o.naive == "no_correction":
            assert o.correction is None


def test_naive_leaves_clean_and_passing_items_alone() -> None:
    logs, failed = staged(seed=23)
    by_id = {o.id: o for o in logs}
    for o in naive_feedback(logs, LABELS, seed=3, failed=failed):
        if not o.poisoned and (not o.perturbations or o.id not in failed):
            assert o == by_id[o.id]


SMALL_SPLITS = [(10, (5, 2, 3)), (1, (1, 0, 0)), (3, (1, 1, 1)), (7, (4, 1, 2)), (75, (38, 15, 22))]


@pytest.mark.parametrize("n_poisoned, expected", SMALL_SPLITS)
def test_naive_poison_split_is_exact_for_small_counts(n_poisoned: int, expected: tuple[int, ...]) -> None:
    """(wrong, correct, none): largest-remainder rounding, so the three always add up to n."""
    logs = perturb(corpus(n_poisoned), LABELS, seed=5, poison_rate=1.0)
    tally = Counter(o.naive for o in naive_feedback(logs, LABELS, seed=5))
    assert (tally["wrong"], tally["correct"], tally["no_correction"]) == expected


def test_naive_is_seeded_and_order_independent() -> None:
    logs, failed = staged(n=600, seed=24)
    a = {o.id: o for o in naive_feedback(logs, LABELS, seed=4, failed=failed)}
    assert a == {o.id: o for o in naive_feedback(list(reversed(logs)), LABELS, seed=4, failed=failed)}
    b = {o.id: o for o in naive_feedback(logs, LABELS, seed=5, failed=failed)}
    assert a != b


def test_naive_without_failures_treats_every_noisy_item_as_failed() -> None:
    logs = perturb(corpus(1000), LABELS, seed=25, poison_rate=0)
    noisy = [o for o in logs if o.perturbations]
    out = naive_feedback(logs, LABELS, seed=6)
    assert sum(o.naive == "no_correction" for o in out) == int(0.3 * len(noisy) + 0.5)


def test_naive_abstain_label_none_gives_no_correction_for_invalid_inputs() -> None:
    logs = perturb(corpus(400), LABELS, seed=26, rates=only(off_domain=0.1), poison_rate=1.0)
    out = naive_feedback(logs, LABELS, seed=7, abstain_label=None)
    assert all(o.correction is None for o in out if o.naive == "correct")
    assert all(o.correction in LABELS for o in out if o.naive == "wrong")


def test_whitespace_on_a_single_space_never_crashes() -> None:
    """A tab can take the only space before 'double' runs: that draw used to raise IndexError."""
    from kaizen.workflows.bench.perturb.fixable import whitespace

    for seed in range(200):
        text, label = whitespace("card declined", "card_declined", ["card_declined"], random.Random(seed))
        assert text.split() == ["card", "declined"] and label == "card_declined"
