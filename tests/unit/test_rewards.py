"""Tests of kaizen.tools.train.rewards (the registry and its modules): values by hand, both completion formats, the registry (doctests: test_doctests.py)."""

from __future__ import annotations

import pytest

from kaizen.tools.errors import ConfigError
from kaizen.tools.train.rewards import REWARDS, get_reward, rewards_for_kind
from kaizen.tools.train.rewards.text import (
    completion_text,
    json_format,
    label_exact_match,
    label_strict_match,
    math_final_answer,
    token_f1,
)

LABELS = ["billing", "card_declined", "refund"]


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_completion_text_formats() -> None:
    assert completion_text("x") == "x"
    assert completion_text(conv("y")) == "y"
    assert completion_text({"role": "assistant", "content": "z"}) == "z"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([]) == ""
    assert completion_text(None) == ""


def test_label_exact_match_without_labels_is_strict() -> None:
    completions = ["Billing", "billing.", conv(" REFUND "), "card declined"]
    got = label_exact_match(completions, ["billing", "billing", "refund", "card_declined"])
    assert got == [1.0, 0.0, 1.0, 0.0]


def test_label_exact_match_with_labels_normalises() -> None:
    completions = ["billing.", conv("Label: card declined"), "refunds", "refund because x"]
    expected = ["billing", "card_declined", "refund", "refund"]
    per_row = [LABELS] * 4  # how TRL passes a dataset column
    assert label_exact_match(completions, expected, labels=per_row) == [1.0, 1.0, 0.0, 1.0]
    assert label_exact_match(completions, expected, labels=LABELS) == [1.0, 1.0, 0.0, 1.0]  # one shared set


def test_label_exact_match_off_label_gold_never_rewarded_for_garbage() -> None:
    assert label_exact_match(["???"], ["???"], labels=[LABELS]) == [0.0]


def test_label_strict_match_is_what_constrained_decoding_scores() -> None:
    # The gate's constrained decoding reads only a label's exact tokens then end of turn: "Balance." and
    # "balance please" are off-label there, so they earn nothing; surrounding whitespace is not a token.
    completions = ["balance", conv(" balance\n"), "Balance.", "balance please", "Label: balance", "transfer"]
    assert label_strict_match(completions, ["balance"] * 6, labels=[["balance", "transfer"]] * 6) == [
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]
    assert rewards_for_kind("classification") == ["label_strict_match"]


def test_json_format() -> None:
    fenced = conv('```json\n{"a": [1]}\n```')
    completions = ['{"a": 1}', "  {}  ", fenced, '{"a": 1} extra', "[1]", "{'a': 1}", ""]
    assert json_format(completions, expected=[None] * 7) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_math_final_answer() -> None:
    completions = ["24 + 48 = 72\n#### 72", conv("The answer is 1,000."), "#### 7.0", "#### 8", "no answer"]
    expected = ["...#### 72", "1000", 7, "#### 9", "3"]
    assert math_final_answer(completions, expected) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_token_f1_hand_computed() -> None:
    # "a a b" vs "a b c": overlap min(2,1)+min(1,1) = 2; P = 2/3, R = 2/3 → F1 = 2/3
    # "The Cat!" vs "the cat": identical bags → 1.0
    # "x y z w" vs "x": overlap 1; P = 1/4, R = 1 → F1 = 2·(1/4)/(5/4) = 2/5
    got = token_f1(["a a b", conv("The Cat!"), "x y z w", "", "q"], ["a b c", "the cat", "x", "", ""])
    assert got == pytest.approx([2 / 3, 1.0, 2 / 5, 1.0, 0.0])


def test_registry_and_get_reward() -> None:
    assert set(REWARDS) == {
        "label_exact_match",
        "label_strict_match",
        "label_format",
        "json_format",
        "math_final_answer",
        "token_f1",
        "json_schema_match",
        "json_field_match",
        "code_unit_tests",
    }
    for name, fn in REWARDS.items():
        assert get_reward(name) is fn
    with pytest.raises(ConfigError, match="unknown reward 'bleu'.*json_format.*label_exact_match"):
        get_reward("bleu")


def test_rewards_accept_trl_call_convention() -> None:
    # TRL calls reward(prompts=..., completions=..., completion_ids=..., **dataset_columns)
    kwargs = {
        "prompts": ["p"],
        "completion_ids": [[1, 2]],
        "expected": ["#### 3"],
        "labels": [LABELS],
        "trainer_state": None,
    }
    for fn in REWARDS.values():
        out = fn(completions=["#### 3"], **kwargs)
        assert isinstance(out, list) and len(out) == 1 and 0.0 <= out[0] <= 1.0
