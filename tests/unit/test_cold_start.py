"""Cold start without training: task files, the data split (eval never trained on), the pipeline
policy, the attempt's data mix, and the clear error when there is nothing to learn from."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizen.tools.errors import ConfigError, DataError
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.bench.clinc import rows, to_items
from kaizen.workflows.cold_start import job as cold_start
from kaizen.workflows.cold_start.attempts import attempt_items
from kaizen.workflows.cold_start.data import load_task_file, seed_items, split_data
from kaizen.workflows.cold_start.policy import Attempt, next_attempt, weak_labels

LABELS = ["balance", "transfer", "freeze_account", "card_declined"]
TASK = TaskSpec(name="bank", kind="classification", labels=LABELS)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------- task file
def test_task_file_reads_task_and_extras(tmp_path: Path) -> None:
    spec = load_task_file(
        write(
            tmp_path / "t.yaml",
            (
                "name: bank\nkind: classification\nlabels: [balance, transfer]\ndescription: Route messages.\n"
                "seed_examples:\n  - {input: how much money do I have, expected: balance}\ntarget_score: 0.9\n"
            ),
        )
    )
    assert spec.task.labels == ["balance", "transfer"] and spec.target_score == 0.9
    (item,) = seed_items(spec)
    assert item.messages[0].content == "how much money do I have" and item.expected == "balance"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: bank\nkind: classification\nlabelz: [a]\n", "labelz: unknown key"),
        ("name: bank\nkind: poetry\n", "kind"),
        ("kind: classification\n", "name"),
        ("name: bank\nkind: classification\ntarget_score: 2\n", "target_score"),
        ("- just a list\n", "expected a mapping"),
        ("name: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_task_files_name_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "t.yaml", text)
    with pytest.raises(ConfigError) as ei:
        load_task_file(path)
    assert str(path) in str(ei.value) and fragment in str(ei.value)


def test_missing_task_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task file not found"):
        load_task_file(tmp_path / "nope.yaml")


# -------------------------------------------------------------------------------------- data
def test_eval_is_stratified_and_never_trained_on() -> None:
    data = to_items(rows("train", LABELS, per_label=20, seed=0))
    seeds = to_items(rows("val", LABELS, per_label=2, seed=0))
    train, heldout, _ = split_data(TASK, seeds, data, eval_fraction=0.25, max_eval=100)
    assert len(heldout) == 20
    assert {it.expected for it in heldout} == set(LABELS)
    assert not {it.id for it in train} & {it.id for it in heldout}
    assert {it.id for it in seeds} <= {it.id for it in train}  # seeds train when a data set supplies the eval


def test_near_duplicates_of_eval_inputs_are_dropped_from_training() -> None:
    data = to_items(rows("train", LABELS, per_label=12, seed=0))
    heldout = data[:12]
    copy = EvalItem(
        id="copy",
        messages=[{"role": "user", "content": heldout[0].messages[0].content + "!"}],
        expected=heldout[0].expected,
    )
    train, held, notes = split_data(
        TASK, [], data[12:] + [copy], eval_fraction=0.3, max_eval=50, eval_set=heldout
    )
    assert held == heldout and "copy" not in {it.id for it in train}
    assert any("decontamination dropped 1" in n for n in notes)


def test_too_few_examples_is_a_clear_error() -> None:
    seeds = to_items(rows("train", LABELS, per_label=3, seed=0))
    with pytest.raises(DataError, match="too few"):
        split_data(TASK, seeds, [], eval_fraction=0.3, max_eval=50)


def test_no_examples_and_no_brain_says_what_to_pass(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    path = write(tmp_path / "t.yaml", "name: bank\nkind: classification\nlabels: [balance, transfer]\n")
    with pytest.raises(ConfigError) as ei:
        cold_start.start(ws, path)
    msg = str(ei.value)
    assert "--seed-data" in msg and "--dataset" in msg and "brain.kind: llm" in msg
    assert ws.store.list_runs() == []


def test_labels_outside_the_label_set_are_refused(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    path = write(
        tmp_path / "t.yaml",
        "name: bank\nkind: classification\nlabels: [balance, transfer]\n"
        "seed_examples:\n  - {input: hello there, expected: greeting}\n",
    )
    with pytest.raises(DataError, match="greeting"):
        cold_start.start(ws, path)


def test_a_task_redefined_differently_is_refused(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    ws.store.add_task(TaskSpec(name="bank", kind="classification", labels=["a", "b"]))
    path = write(tmp_path / "t.yaml", "name: bank\nkind: classification\nlabels: [balance, transfer]\n")
    with pytest.raises(ConfigError, match="another definition"):
        cold_start.start(ws, path)


# ------------------------------------------------------------------------------------ policy
def scored(name: str, score: float, index: int = 0, **kw) -> Attempt:  # noqa: ANN003
    f1 = {lab: {"f1": 0.9, "precision": 0.9, "recall": 0.9, "support": 5} for lab in LABELS}
    f1["card_declined"]["f1"] = 0.1
    return Attempt(
        index=index,
        name=name,
        status="done",
        score=score,
        metrics={"per_label": f1},
        params={"epochs": 3.0, "learning_rate": 1e-3, "lora": {"r": 16, "alpha": 32}},
        **kw,
    )


def test_first_attempt_is_the_default_sft() -> None:
    a = next_attempt(TASK, [], target=0.96)
    assert a.name == "sft" and a.strategy == "sft" and a.params["lora"]["top_layers"] == 12
    assert "top_layers" not in next_attempt(TASK, [], target=0.96, on_gpu=True).params["lora"]


def test_low_score_reworks_the_data_first() -> None:
    a = next_attempt(TASK, [scored("sft", 0.5)], target=0.96)
    assert a.name == "sft-weak-x2" and a.oversample == {"card_declined": 2} and a.index == 1


def test_mid_score_tunes_hyperparameters_and_keeps_the_data_mix() -> None:
    best = scored("sft-weak-x2", 0.85, index=1, oversample={"card_declined": 2})
    a = next_attempt(TASK, [scored("sft", 0.5), best], target=0.96)
    assert (
        a.name == "sft-lr-half" and a.params["learning_rate"] == 5e-4 and a.oversample == {"card_declined": 2}
    )


def test_no_attempt_is_repeated_and_the_target_stops_the_search() -> None:
    hist = [scored("sft", 0.5), scored("sft-weak-x2", 0.55, 1), scored("sft-more-epochs", 0.6, 2)]
    assert next_attempt(TASK, hist, target=0.96) is None
    assert next_attempt(TASK, [scored("sft", 0.97)], target=0.96) is None
    failed = Attempt(index=0, name="sft", status="failed", error="boom")
    assert next_attempt(TASK, [failed], target=0.96) is None


def test_grpo_only_on_a_gpu_and_with_a_verifier() -> None:
    hist = [scored("sft", 0.85), scored("sft-lr-half", 0.86, 1), scored("sft-rank-32", 0.86, 2)]
    assert next_attempt(TASK, hist, target=0.96) is None
    a = next_attempt(TASK, hist, target=0.96, on_gpu=True)
    assert a.strategy == "grpo" and a.from_attempt == 1
    gen = TaskSpec(name="g", kind="generation")
    assert next_attempt(gen, hist, target=0.96, on_gpu=True) is None


def test_weak_labels_are_those_below_the_mean_f1() -> None:
    assert weak_labels({"per_label": {"a": {"f1": 0.9}, "b": {"f1": 0.2}, "c": {"f1": 0.8}}}) == {"b": 2}
    assert weak_labels({}) == {}


def test_attempt_items_apply_oversampling_and_rationales() -> None:
    items = [
        EvalItem(id="1", messages=[{"role": "user", "content": "x"}], expected="a"),
        EvalItem(
            id="2",
            messages=[{"role": "user", "content": "y"}],
            expected="b",
            metadata={"rationale": "because #### b"},
        ),
    ]
    out = attempt_items(Attempt(index=0, name="x", oversample={"a": 3}, rationale=True), items)
    assert [it.id for it in out] == ["1", "1~1", "1~2", "2"]
    assert out[-1].expected == "because #### b"
