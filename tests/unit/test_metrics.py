"""Tests of kaizen.tools.evaluate.metrics against values computed by hand."""

from __future__ import annotations

import time

import pytest

from kaizen.tools.errors import ConfigError, DataError
from kaizen.tools.evaluate.metrics import (
    classification_metrics,
    code_metrics,
    compute_metrics,
    extract_code,
    extract_final_answer,
    extraction_metrics,
    generation_metrics,
    math_metrics,
    mcnemar_exact,
    normalize_label,
    parse_json_object,
)

LABELS = ["billing", "card_declined", "refund"]

# ----------------------------------------------------------------------------------------------
# normalize_label
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "want"),
    [
        ("billing", "billing"),
        ("  'Billing.'  ", "billing"),
        ('"REFUND"!', "refund"),
        ("**refund**", "refund"),
        ("`billing`", "billing"),
        ("card_declined", "card_declined"),
        ("card declined", "card_declined"),
        ("Card-Declined.", "card_declined"),
        ("Label: card declined", "card_declined"),
        ("label:billing", "billing"),
        ("Answer: Refund.", "refund"),
        ("\n\n  refund\nbecause the customer asked", "refund"),  # first non-empty line
        ("billing - the customer asks about an invoice", "billing"),  # label opens the output
        ("card declined at checkout", "card_declined"),
        ("refunds", None),  # not a whole word
        ("I think it is billing", None),  # label not at the start
        ("", None),
        ("   \n  ", None),
        ("shipping", None),
    ],
)
def test_normalize_label(output: str, want: str | None) -> None:
    assert normalize_label(output, LABELS) == want


def test_normalize_label_prefers_exact_then_longest_prefix() -> None:
    labels = ["card", "card declined"]
    assert normalize_label("card", labels) == "card"
    assert normalize_label("card declined twice", labels) == "card declined"
    assert normalize_label("card expired", labels) == "card"
    assert normalize_label("billing", []) is None


# ----------------------------------------------------------------------------------------------
# classification
# ----------------------------------------------------------------------------------------------

# gold:   B  B  B  C  C  R  R     R
# pred:   B  B  R  C  C  R  None  B
# accuracy = 5/8
# billing:       TP 2, FP 1 (#7), FN 1 (#2)       → P 2/3, R 2/3, F1 2/3
# card_declined: TP 2, FP 0, FN 0                 → P 1,   R 1,   F1 1
# refund:        TP 1, FP 1 (#2), FN 2 (#6, #7)   → P 1/2, R 1/3, F1 2·(1/6)/(5/6) = 2/5
# macro F1 = (2/3 + 1 + 2/5) / 3 = (10 + 15 + 6) / 45 = 31/45
CLS_OUTPUTS = [
    "billing",
    "Billing.",
    "refund",
    "card declined",
    "Label: Card_Declined",
    "refund",
    "I don't know",
    "billing",
]
CLS_GOLD = ["billing", "billing", "billing", "card_declined", "card_declined", "refund", "refund", "refund"]


def test_classification_metrics_hand_computed() -> None:
    m = classification_metrics(CLS_OUTPUTS, CLS_GOLD, LABELS)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["macro_f1"] == pytest.approx(31 / 45)
    assert m["invalid_rate"] == pytest.approx(1 / 8)
    assert m["correct"] == [True, True, False, True, True, True, False, False]
    per = m["per_label"]
    assert per["billing"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert per["card_declined"] == pytest.approx({"precision": 1, "recall": 1, "f1": 1, "support": 2})
    assert per["refund"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5, "support": 3})
    assert m["confusion"]["labels"] == ["billing", "card_declined", "refund", "<invalid>"]
    assert m["confusion"]["matrix"] == [
        [2, 0, 1, 0],  # gold billing
        [0, 2, 0, 0],  # gold card_declined
        [1, 0, 1, 1],  # gold refund
        [0, 0, 0, 0],  # gold is never invalid
    ]


def test_classification_macro_f1_ignores_labels_that_never_occur() -> None:
    m = classification_metrics(CLS_OUTPUTS, CLS_GOLD, [*LABELS, "shipping"])
    assert m["macro_f1"] == pytest.approx(31 / 45)
    assert m["per_label"]["shipping"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_classification_gold_is_normalised_and_labels_default_to_gold_set() -> None:
    m = classification_metrics(["Refund"], ["REFUND"], LABELS)
    assert m["correct"] == [True]
    m = classification_metrics(["yes", "no", "maybe"], ["yes", "yes", "no"], [])
    assert m["confusion"]["labels"] == ["yes", "no", "<invalid>"]
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["invalid_rate"] == pytest.approx(1 / 3)


def test_classification_gold_not_in_label_set_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"example 1: expected label 'shipping'"):
        classification_metrics(["billing", "refund"], ["billing", "shipping"], LABELS)


def test_classification_empty() -> None:
    m = classification_metrics([], [], LABELS)
    assert m["accuracy"] == 0.0 and m["correct"] == []


# ----------------------------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------------------------


def test_parse_json_object() -> None:
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object('```json\n{"a": {"b": [1, 2]}}\n```') == {"a": {"b": [1, 2]}}
    assert parse_json_object('Here you go: {"a": "}"} hope it helps {"b": 2}') == {"a": "}"}
    assert parse_json_object('{not json} then {"a": 2}') == {"a": 2}
    assert parse_json_object("[1, 2]") is None
    assert parse_json_object("no json here") is None
    assert parse_json_object("") is None


# #0 gold name=ann, tags∋a, tags∋b (3 units); pred the same → TP 3
# #1 gold name=bob, age=3; pred name=bob, city=paris       → TP 1, FP 1, FN 1
# #2 gold x=1; output is not JSON                           → FN 1
# #3 gold n=5, tags∋a, tags∋b; pred n=5, tags∋a, tags∋c     → TP 2, FP 1, FN 1
# TP 6, FP 2, FN 3 → P = 6/8 = 3/4, R = 6/9 = 2/3, F1 = 2·(1/2)/(3/4 + 2/3) = 12/17
def test_extraction_metrics_hand_computed() -> None:
    outputs = [
        '```json\n{"name": " Ann ", "tags": ["a", "B"]}\n```',
        'Sure: {"name": "Bob", "city": "Paris"} done',
        "not json",
        '{"n": 5, "tags": ["a", "c"]}',
    ]
    expected = [
        {"name": "ann", "tags": ["b", "a"]},
        {"name": "bob", "age": 3},
        {"x": 1},
        {"n": "5", "tags": ["a", "b"]},
    ]
    m = extraction_metrics(outputs, expected)
    assert m["json_valid_rate"] == pytest.approx(3 / 4)
    assert m["field_precision"] == pytest.approx(3 / 4)
    assert m["field_recall"] == pytest.approx(2 / 3)
    assert m["field_f1"] == pytest.approx(12 / 17)
    assert m["correct"] == [True, False, False, False]


def test_extraction_nulls_count_as_absent() -> None:
    m = extraction_metrics(['{"a": "X", "b": null, "c": []}'], [{"a": "x", "b": None}])
    assert m["field_f1"] == pytest.approx(1.0)
    assert m["correct"] == [True]


def test_extraction_extra_field_is_not_exactly_right() -> None:
    m = extraction_metrics(['{"a": "x", "b": "y"}'], [{"a": "x"}])
    assert m["field_precision"] == pytest.approx(1 / 2)
    assert m["field_recall"] == pytest.approx(1.0)
    assert m["correct"] == [False]


# ----------------------------------------------------------------------------------------------
# math
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("#### 72\nThe answer is 5", "72"),  # the #### wins over a later number
        ("a #### 1 then #### 2", "2"),  # the last ####
        ("#### $1,200.00.", "1200"),
        ("The answer is 42.", "42"),
        ("First 3, then 7, finally 10.0", "10"),
        ("Total: 1,234,567", "1234567"),
        ("It drops to -5 degrees", "-5"),
        ("She has 2.50 dollars", "2.5"),
        ("about .5 of it", "0.5"),
        ("####\n 9 apples", "9"),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_final_answer(text: str, want: str | None) -> None:
    assert extract_final_answer(text) == want


def test_math_metrics() -> None:
    outputs = ["so 3 * 24 = 72\n#### 72", "It is $5.00", "I get 17", "no idea"]
    expected = ["Some reasoning.\n#### 72", "5", 18, 3]
    m = math_metrics(outputs, expected)
    assert m["correct"] == [True, True, False, False]
    assert m["exact_match"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------


# pred "the cat sat on the mat" vs ref "the cat sat on a mat" (6 tokens each)
#   rouge1: overlap the, cat, sat, on, mat = 5   → F = 5/6
#   rouge2: the-cat, cat-sat, sat-on of 5 bigrams → F = 3/5
#   rougeL: LCS "the cat sat on mat" = 5          → F = 5/6
# pred "hello world" vs "goodbye": all 0.  Means: 5/12, 3/10, 5/12.
def test_generation_metrics_hand_computed() -> None:
    m = generation_metrics(["the cat sat on the mat", "hello world"], ["the cat sat on a mat", "goodbye"])
    assert m["rouge1"] == pytest.approx(5 / 12)
    assert m["rouge2"] == pytest.approx(3 / 10)
    assert m["rougeL"] == pytest.approx(5 / 12)
    assert m["correct"] == [True, False]


def test_generation_matches_rouge_default_on_english_and_scores_non_ascii() -> None:
    from rouge_score import rouge_scorer

    pred, ref = "The runners were running quickly, 3 times!", "A runner runs quick 3 times."
    default = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure
    assert generation_metrics([pred], [ref])["rougeL"] == pytest.approx(default)
    assert generation_metrics(["привет мир"], ["привет мир"])["rougeL"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# code
# ----------------------------------------------------------------------------------------------

TESTS = {"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"}


def test_extract_code() -> None:
    assert extract_code("Here:\n```python\nx = 1\n```\nDone") == "x = 1\n"
    assert extract_code("```\ny = 2\n```") == "y = 2\n"
    assert extract_code("```text\nnote\n```\n```py\nz = 3\n```") == "z = 3\n"
    assert extract_code("def f(): pass") == "def f(): pass"


def test_code_metrics_pass_fail_and_timeout() -> None:
    outputs = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "def add(a, b):\n    return a - b",
        "def add(a, b):\n    while True:\n        pass",
    ]
    start = time.monotonic()
    m = code_metrics(outputs, [TESTS] * 3, timeout_s=2)
    elapsed = time.monotonic() - start
    assert m["correct"] == [True, False, False]
    assert m["pass@1"] == pytest.approx(1 / 3)
    assert m["errors"][0] is None
    assert "AssertionError" in m["errors"][1]
    assert "timeout" in m["errors"][2]
    assert elapsed < 10


def test_code_exiting_early_does_not_pass() -> None:
    outputs = ["import sys\nsys.exit(0)", "import os\nos._exit(0)"]
    assert code_metrics(outputs, [TESTS] * 2, timeout_s=5)["correct"] == [False, False]


def test_code_runs_isolated() -> None:
    program = (
        "import os, sys\n"
        "def add(a, b):\n    return a + b\n"
        "allowed = {'PATH', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'LC_CTYPE'}\n"
        "assert set(os.environ) <= allowed, dict(os.environ)\n"
        "assert sys.flags.isolated\n"
        "assert sys.stdin is None or sys.stdin.read() == ''\n"
        "assert set(os.listdir('.')) == {'solution.py', '.stdout', '.stderr'}  # a fresh directory\n"
    )
    m = code_metrics([program], [TESTS], timeout_s=5)
    assert m["correct"] == [True], m["errors"]


def test_code_memory_limit() -> None:
    program = "def add(a, b):\n    return a + b\nx = bytearray(2 * 1024 ** 3)"
    m = code_metrics([program], [TESTS], timeout_s=5)
    assert m["correct"] == [False]
    assert "MemoryError" in m["errors"][0]


# ----------------------------------------------------------------------------------------------
# compute_metrics
# ----------------------------------------------------------------------------------------------


def test_compute_metrics_headline_per_kind() -> None:
    cls = compute_metrics("classification", CLS_OUTPUTS, CLS_GOLD, LABELS)
    assert (cls["metric"], cls["score"]) == ("accuracy", pytest.approx(5 / 8))
    ext = compute_metrics("extraction", ['{"a": 1}'], [{"a": 1}])
    assert (ext["metric"], ext["score"], ext["correct"]) == ("field_f1", 1.0, [True])
    mth = compute_metrics("math", ["#### 4", None], ["4", "5"])
    assert (mth["metric"], mth["score"], mth["correct"]) == ("exact_match", 0.5, [True, False])
    gen = compute_metrics("generation", ["a b"], ["a b"])
    assert (gen["metric"], gen["score"]) == ("rougeL", pytest.approx(1.0))
    code = compute_metrics("code", ["def add(a, b): return a + b"], [TESTS], timeout_s=5)
    assert (code["metric"], code["score"], code["correct"]) == ("pass@1", 1.0, [True])


def test_compute_metrics_metric_override() -> None:
    m = compute_metrics("classification", CLS_OUTPUTS, CLS_GOLD, LABELS, metric="macro_f1")
    assert (m["metric"], m["score"]) == ("macro_f1", pytest.approx(31 / 45))
    with pytest.raises(ConfigError, match="not reported"):
        compute_metrics("classification", CLS_OUTPUTS, CLS_GOLD, LABELS, metric="bleu")


@pytest.mark.parametrize(
    ("kind", "outputs", "expected", "match"),
    [
        ("classification", ["billing", "refund"], ["billing", {"label": "x"}], r"classification example 1"),
        ("extraction", ['{"a": 1}'], ['{"a": 1}'], r"extraction example 0: expected must be a JSON object"),
        ("code", ["x = 1"], [{"test": "assert x"}], r"code example 0: expected must be a dict \{\"tests\""),
        ("code", ["x = 1"], ["assert x"], r"code example 0"),
        ("math", ["4"], ["four"], r"math example 0"),
        ("math", ["4"], [True], r"math example 0"),
        ("generation", ["hi"], [None], r"generation example 0"),
        ("classification", ["billing"], ["billing", "refund"], r"1 outputs but 2 expected"),
    ],
)
def test_compute_metrics_bad_expected(kind: str, outputs: list, expected: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        compute_metrics(kind, outputs, expected, LABELS)


def test_compute_metrics_bad_kind_and_outputs() -> None:
    with pytest.raises(ConfigError, match="unknown task kind 'summarize'"):
        compute_metrics("summarize", ["a"], ["a"])
    with pytest.raises(DataError, match="output 0 is a dict"):
        compute_metrics("generation", [{"content": "a"}], ["a"])


# ----------------------------------------------------------------------------------------------
# mcnemar_exact
# ----------------------------------------------------------------------------------------------


def test_mcnemar_exact_hand_computed() -> None:
    # discordant pairs: 3 newly right, 1 newly wrong. Two-sided binomial(n=4, p=1/2):
    # P(X ≤ 1) + P(X ≥ 3) = (1 + 4 + 4 + 1) / 16 = 10/16
    r = mcnemar_exact([True, True, False, False, False, True], [True, False, True, True, True, True])
    assert (r["newly_right"], r["newly_wrong"]) == (3, 1)
    assert r["p_value"] == pytest.approx(10 / 16)
    # 10 newly right, none newly wrong: p = 2 · (1/2)^10
    r = mcnemar_exact([False] * 10 + [True] * 5, [True] * 15)
    assert r["p_value"] == pytest.approx(2 / 1024)


def test_mcnemar_exact_no_discordant_pairs_and_bad_lengths() -> None:
    assert mcnemar_exact([True, False], [True, False]) == {"newly_right": 0, "newly_wrong": 0, "p_value": 1.0}
    assert mcnemar_exact([], [])["p_value"] == 1.0
    with pytest.raises(DataError, match="same examples"):
        mcnemar_exact([True], [True, False])
