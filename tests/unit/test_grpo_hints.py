"""The pure parts of kaizen.tools.train.grpo and grpo_hints: which groups get a hint (all-zero ones, only those, within
the share), what the hint says, how a hinted batch is merged back, the advantage weighting, the entropy
early stop, the dataset encoding and the curves read back for plots. Their doctests run in test_doctests.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import kaizen.tools.train.grpo_trainer as grpo_trainer
from kaizen.tools.train.grpo import (
    decode_columns,
    decode_row,
    encode_rows,
    entropy_floor_stop,
    read_curves,
    weight_advantages,
)
from kaizen.tools.train.grpo_hints import (
    add_hint,
    all_zero_groups,
    choose_hints,
    guided_advantages,
    hint_budget,
    make_hint,
    merge_rows,
)

LABELS = ["balance", "transfer", "card_declined"]


def test_answer_guidance_is_the_whole_reference_and_trl_group_advantages() -> None:
    import torch

    row = {
        "prompt": [{"role": "user", "content": "my card failed"}],
        "expected": "card_declined",
        "labels": LABELS,
    }
    assert make_hint(row, "answer") == "card_declined"  # the reply itself, no "Hint:" wording
    assert make_hint({"prompt": "p", "expected": {"name": "Ann"}}, "answer") == '{"name": "Ann"}'
    # A math final answer or a code task's tests are not a reply: no guidance there.
    assert make_hint({"prompt": "p", "expected": "72"}, "answer") is None
    assert make_hint({"prompt": "p", "expected": {"tests": "assert f() == 1"}}, "answer") is None
    # The advantages TRL would give a group in which only the injected reference scored 1.
    for G in (2, 4, 8):
        r = torch.tensor([0.0] * (G - 1) + [1.0])
        want = ((r - r.mean()) / (r.std() + 1e-4)).tolist()
        assert guided_advantages(G) == pytest.approx(want)
        assert guided_advantages(G, scale=False) == pytest.approx((r - r.mean()).tolist())
    with pytest.raises(ValueError):
        guided_advantages(1)


def test_hint_path_triggers_on_an_all_zero_group_and_only_then() -> None:
    asked: list[int] = []

    def hint_for(g: int) -> str:
        asked.append(g)
        return f"hint {g}"

    G = 4
    mixed = [0.0, 1.0, 0.0, 0.0]
    all_one = [1.0] * G
    partial = [0.0, 0.0, 0.2, 0.0]  # a partial-credit reward is a signal too
    zero = [0.0] * G
    assert choose_hints(mixed + all_one + partial, G, budget=10, hint_for=hint_for) == []
    assert asked == []  # no hint is even built for a group with a signal
    assert choose_hints(mixed + zero + all_one + zero, G, budget=10, hint_for=hint_for) == [
        (1, "hint 1"),
        (3, "hint 3"),
    ]
    assert asked == [1, 3]
    unscorable = [math.nan, 0.0, math.nan, 0.0]
    assert choose_hints(unscorable, G, budget=1, hint_for=hint_for) == [(0, "hint 0")]
    with pytest.raises(ValueError, match="groups of 4"):
        all_zero_groups([0.0] * 6, 4)


def test_hints_stay_within_the_share() -> None:
    G, share = 4, 0.25
    seen = hinted = 0
    for _step in range(20):  # every group all-zero, 2 groups a step: the worst case
        seen += 2
        used = choose_hints([0.0] * (2 * G), G, hint_budget(seen, hinted, share), lambda g: "h")
        hinted += len(used)
        assert hinted <= share * seen
    assert hinted == math.floor(share * seen) == 10
    assert choose_hints([0.0] * G, G, budget=0, hint_for=lambda g: "h") == []  # hint_share 0: never


def test_make_hint_kinds() -> None:
    listed = {
        "prompt": [
            {"role": "system", "content": "Labels: balance, transfer, card_declined."},
            {"role": "user", "content": "my card failed"},
        ],
        "expected": "card_declined",
        "labels": LABELS,
    }
    unlisted = dict(listed, prompt=[{"role": "user", "content": "my card failed"}])
    assert make_hint(unlisted) == "Hint: the answer is one of: balance, transfer, card_declined."
    # The prompt already lists the labels: auto falls back to the reference's first token(s).
    assert (
        make_hint(listed, tokenize=lambda s: ["card", "_", "declined"])
        == 'Hint: the answer begins with "card".'
    )
    assert make_hint(listed, "labels").startswith("Hint: the answer is one of")
    # Never more than half the reference: three of seven words, one of three, one of one.
    math_row = {"prompt": "q", "expected": "3 * 4 = 12 #### 12"}
    assert make_hint(math_row, "prefix", n_tokens=5) == 'Hint: the answer begins with "3 * 4".'
    assert (
        make_hint({"prompt": "q", "expected": "a b c"}, "prefix", n_tokens=5)
        == 'Hint: the answer begins with "a".'
    )
    assert make_hint({"prompt": "q", "expected": "72"}, "prefix") == 'Hint: the answer begins with "72".'
    assert (
        make_hint({"prompt": "q", "expected": {"city": "Oslo"}}, "prefix", n_tokens=1)
        == 'Hint: the answer begins with "{"city":".'
    )
    assert make_hint({"prompt": "q", "expected": ""}, "prefix") is None
    assert make_hint({"prompt": "q", "expected": "x"}, "labels") is None  # no label set
    code = {"prompt": "q", "expected": {"tests": "# check\nassert f(2) == 4\nassert f(0) == 0"}}
    assert make_hint(code) == "Hint: the code must pass `assert f(2) == 4`."
    assert make_hint(code, "prefix") is None  # no reference solution to cut


def test_add_hint_keeps_the_original() -> None:
    prompt = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "Q2"},
    ]
    hinted = add_hint(prompt, "Hint: h.")
    assert hinted[-1]["content"] == "Q2\n\nHint: h." and hinted[1]["content"] == "Q1"
    assert prompt[-1]["content"] == "Q2"  # the dataset row is not changed in place
    assert add_hint([{"role": "system", "content": "S"}], "Hint: h.")[-1] == {
        "role": "user",
        "content": "Hint: h.",
    }


def test_weight_advantages_tensor_and_list() -> None:
    import torch

    adv = torch.tensor([[2.0], [-1.0], [0.0], [0.5]])
    out = weight_advantages(adv, pos=0.25, neg=3.0)
    assert torch.equal(out, torch.tensor([[0.5], [-3.0], [0.0], [0.125]]))
    assert torch.equal(weight_advantages(adv, 1.0, 1.0), adv)
    assert weight_advantages([1.0, -1.0], 0.0, 2.0) == [0.0, -2.0]


def test_merge_rows_pads_and_replaces() -> None:
    import torch

    base = {
        "prompt_ids": torch.tensor([[0, 5, 6], [7, 8, 9]]),
        "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
        "completion_ids": torch.tensor([[1], [2]]),
        "completion_mask": torch.tensor([[1], [1]]),
        "advantages": torch.tensor([0.0, 0.0]),
        "num_items_in_batch": torch.tensor(2),
    }
    repl = {  # one hinted row: a longer prompt, a longer completion
        "prompt_ids": torch.tensor([[7, 8, 9, 4]]),
        "prompt_mask": torch.tensor([[1, 1, 1, 1]]),
        "completion_ids": torch.tensor([[3, 3]]),
        "completion_mask": torch.tensor([[1, 1]]),
        "advantages": torch.tensor([1.5]),
        "num_items_in_batch": torch.tensor(2),
    }
    out = merge_rows(base, repl, rows=[1], repl_rows=[0], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[0, 0, 5, 6], [7, 8, 9, 4]]  # prompts padded on the left
    assert out["prompt_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert out["completion_ids"].tolist() == [[1, 0], [3, 3]]  # completions on the right
    assert out["completion_mask"].tolist() == [[1, 0], [1, 1]]
    assert out["advantages"].tolist() == [0.0, 1.5]
    assert base["advantages"].tolist() == [0.0, 0.0]  # inputs untouched


def test_entropy_floor_stop_needs_patience_consecutive_lows() -> None:
    from transformers import TrainerControl, TrainerState

    cb = entropy_floor_stop(floor=0.1, patience=2)
    state, control = TrainerState(), TrainerControl()
    for step, ent in enumerate([0.5, 0.05, 0.3, 0.05], 1):  # lows are not consecutive: no stop
        state.global_step = step
        cb.on_log(None, state, control, logs={"entropy": ent, "loss": 0.1})
        assert not control.should_training_stop
    cb.on_log(None, state, control, logs={"train_runtime": 1.0})  # a record without entropy changes nothing
    state.global_step = 5
    cb.on_log(None, state, control, logs={"entropy": 0.01})
    assert control.should_training_stop and control.should_save
    assert cb.stopped == {"step": 5, "entropy": 0.01, "floor": 0.1, "patience": 2}


def test_encode_rows_round_trip_through_arrow() -> None:
    from datasets import Dataset

    rows = [
        {"id": "a", "prompt": [{"role": "user", "content": "x"}], "expected": {"name": "Ann"}},
        {
            "id": "b",
            "prompt": [{"role": "user", "content": "y"}],
            "expected": {"city": "Oslo", "n": [1, 2]},
            "schema": {"type": "object"},
        },
    ]
    ds = Dataset.from_list(encode_rows(rows))
    back = [decode_row(r) for r in ds]
    # Arrow did not turn {"name"} into {"name", "city": None, "n": None}
    assert [b["expected"] for b in back] == [{"name": "Ann"}, {"city": "Oslo", "n": [1, 2]}]
    assert [b["schema"] for b in back] == [None, {"type": "object"}]

    @decode_columns
    def seen(completions, expected, **kw):  # noqa: ANN001, ANN003, ANN202
        return [float(e == {"name": "Ann"}) for e in expected]

    assert seen.__name__ == "seen"  # TRL names the logged reward by it
    assert seen(
        completions=["c", "c"],
        expected_json=[r["expected_json"] for r in ds],
        schema_json=[r["schema_json"] for r in ds],
    ) == [1.0, 0.0]


def test_read_curves_last_record_per_step_wins(tmp_path: Path) -> None:
    recs = [
        {"step": 1, "entropy": 2.0, "reward": 0.1, "reward_std": 0.2, "hints/used": 1.0},
        {"step": 2, "entropy": 1.5, "reward": 0.2, "reward_std": 0.3},
        {
            "step": 2,
            "entropy": 1.4,
            "reward": 0.25,
            "reward_std": 0.3,
            "hints/used": 0.0,
        },  # redone after a resume
        {"step": 2, "train_runtime": 5.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + '\n{"step": 3, "entr')
    assert read_curves(tmp_path) == {
        "step": [1, 2],
        "entropy": [2.0, 1.4],
        "reward": [0.1, 0.25],
        "reward_std": [0.2, 0.3],
        "hints_used": [1.0, 0.0],
    }


def test_module_stays_light_until_the_trainer_is_asked_for() -> None:
    """Importing kaizen.tools.train.grpo (for read_curves, read_summary …) or grpo_trainer loads no torch/TRL;
    the class does."""
    import subprocess
    import sys

    code = (
        "import sys, kaizen.tools.train.grpo as g, kaizen.tools.train.grpo_trainer; heavy = [m for m in ('torch', 'trl', 'transformers') if m in sys.modules]; "
        "print(heavy); assert not heavy; print(callable(g.read_curves))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with pytest.raises(AttributeError):
        grpo_trainer.NoSuchThing  # noqa: B018 - the module __getattr__ only knows KaizenGRPOTrainer
