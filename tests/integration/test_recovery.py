"""Recovery before rejection, on the embedded SmolLM2-135M (top 4 layers adapted, seconds a job): a candidate that learned its target but broke what its
start knew is mended by (a) a short refresh and (b) a training-free sparse rollback; the refit's shrink (weight-space
interpolation toward the start) lands between the two.

Constructed so the damage is certain: the start adapter A0 learns R (inputs answered "yes"); the candidate
A1 continues A0 on T (other inputs answered "no") hard enough to forget R. Losses (mean cross-entropy of
the completion) stand in for accuracy: a random model's greedy answers would not show learning in seconds.
Each recovery must win back ≥ half of R's loss increase and keep ≥ half of T's gain — measured on R and T
themselves, while the recoveries only see *other* examples of R's label (as the recover node does).
The random tiny Llama does not learn a label in a few steps, so the real small model is used here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizen.tools.data import sft_rows, write_items
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import LoraSpec, TrainJob

TASK = TaskSpec(name="yn", kind="classification", labels=["yes", "no"])
LORA = LoraSpec(r=8, alpha=16, dropout=0.0, top_layers=4)


def items(prefix: str, texts: list[str], label: str) -> list[EvalItem]:
    return [
        EvalItem(id=f"{prefix}{i}", messages=[{"role": "user", "content": t}], expected=label)
        for i, t in enumerate(texts)
    ]


R = items("r", ["is the sky blue", "is water wet", "do birds fly", "is fire hot"], "yes")
R_SIDE = items(
    "s", ["is snow cold", "do fish swim", "is sugar sweet", "is grass green"], "yes"
)  # training-side, same label
T = items("t", ["is the moon cheese", "do cows fly", "is ice hot", "is salt sweet"], "no")


def train(base: Path, out: Path, data: list[EvalItem], *, init: Path | None, steps: int, lr: float) -> Path:
    path = out.parent / f"{out.name}.jsonl"
    write_items(path, sft_rows(TASK, data))
    job = TrainJob(
        kind="sft",
        base_dir=base,
        data_path=path,
        output_dir=out,
        init_adapter=init,
        max_steps=steps,
        learning_rate=lr,
        batch_size=4,
        max_length=64,
        warmup_ratio=0.0,
        lora=LORA,
        device="cpu",
        seed=0,
    )
    return Path(run_job(job)["output_path"])


def loss(base: Path, adapter: Path, data: list[EvalItem]) -> float:
    import torch

    from kaizen.tools.models.load import load_model
    from kaizen.tools.train.rollback import _loss

    model, tok = load_model(base, adapter, device="cpu", dtype="float32")
    with torch.no_grad():
        return float(_loss(model, tok, sft_rows(TASK, data), "cpu"))


@pytest.fixture(scope="module")
def damaged(smollm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("recovery")
    a0 = train(smollm_dir, tmp / "a0", R + R_SIDE, init=None, steps=16, lr=2e-3)
    a1 = train(smollm_dir, tmp / "a1", T, init=a0, steps=16, lr=2e-3)
    m = {
        name: {"R": loss(smollm_dir, a, R), "T": loss(smollm_dir, a, T)}
        for name, a in (("a0", a0), ("a1", a1))
    }
    assert m["a1"]["R"] > m["a0"]["R"] + 0.3 and m["a1"]["T"] < m["a0"]["T"] - 0.3, m  # the damage is real
    return {"tmp": tmp, "a0": a0, "a1": a1, "m": m}


def _check(m: dict, rec: dict) -> None:
    assert m["a1"]["R"] - rec["R"] >= 0.5 * (m["a1"]["R"] - m["a0"]["R"]), (m, rec)  # half the damage undone
    assert m["a0"]["T"] - rec["T"] >= 0.5 * (m["a0"]["T"] - m["a1"]["T"]), (m, rec)  # half the gain kept


def test_refresh_recovers_the_damaged_label(smollm_dir: Path, damaged: dict) -> None:
    # The recover node's recipe: examples of the broken label (training side) plus the training failures,
    # a few steps continuing the candidate at half the learning rate.
    a2 = train(smollm_dir, damaged["tmp"] / "refresh", R_SIDE + T, init=damaged["a1"], steps=8, lr=1e-3)
    rec = {"R": loss(smollm_dir, a2, R), "T": loss(smollm_dir, a2, T)}
    print(damaged["m"], rec)
    _check(damaged["m"], rec)


def test_sparse_rollback_recovers_without_training(smollm_dir: Path, damaged: dict) -> None:
    from kaizen.tools.train.rollback import sparse_rollback

    out = damaged["tmp"] / "rolled"
    info = sparse_rollback(
        smollm_dir, damaged["a0"], damaged["a1"], sft_rows(TASK, R_SIDE), out, fraction=0.05
    )
    assert 0 < info["rolled_back"] <= 0.05 * info["coordinates"] + 1
    assert info["first_order_loss_drop"] > 0
    rec = {"R": loss(smollm_dir, out, R), "T": loss(smollm_dir, out, T)}
    print(damaged["m"], rec, info)
    _check(damaged["m"], rec)


def test_rollback_refuses_adapters_that_do_not_continue_each_other(smollm_dir: Path, damaged: dict) -> None:
    from safetensors.torch import load_file, save_file

    from kaizen.tools.train.rollback import IncompatibleAdapters, sparse_rollback

    other = train(smollm_dir, damaged["tmp"] / "other", T, init=None, steps=2, lr=1e-3)
    t = load_file(str(other / "adapter_model.safetensors"))  # drop a tensor: not the same adapter layout
    save_file({k: v for i, (k, v) in enumerate(t.items()) if i > 0}, str(other / "adapter_model.safetensors"))
    with pytest.raises(IncompatibleAdapters):
        sparse_rollback(smollm_dir, other, damaged["a1"], sft_rows(TASK, R_SIDE), damaged["tmp"] / "x")


def test_interpolation_lands_between_the_start_and_the_candidate(smollm_dir: Path, damaged: dict) -> None:
    # The refit's shrink (agent/shrink.py): θ(α) = θ_start + α (θ_cand − θ_start). α = 0 and 1 are the two
    # adapters exactly; halfway undoes part of the damage on R and keeps part of the gain on T.
    from kaizen.tools.train.interpolate import interpolate_adapter

    m, got = damaged["m"], {}
    for alpha in (0.0, 0.5, 1.0):
        out = damaged["tmp"] / f"interp-{alpha}"
        info = interpolate_adapter(damaged["a0"], damaged["a1"], alpha, out)
        assert info["from_start"] and (out / "adapter_config.json").exists()
        assert not out.with_name(out.name + ".tmp").exists()
        got[alpha] = {"R": loss(smollm_dir, out, R), "T": loss(smollm_dir, out, T)}
    print(m, got)
    for s in ("R", "T"):
        assert got[0.0][s] == pytest.approx(m["a0"][s], abs=1e-4)
        assert got[1.0][s] == pytest.approx(m["a1"][s], abs=1e-4)
    assert m["a0"]["R"] < got[0.5]["R"] < m["a1"]["R"]  # part of the damage undone
    assert m["a1"]["T"] < got[0.5]["T"] < m["a0"]["T"]  # part of the gain kept
