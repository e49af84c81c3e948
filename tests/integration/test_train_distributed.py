"""Data-parallel training under ``accelerate launch``: 2 real processes on the CPU (gloo), tiny random Llama.

The proof that gradients were all-reduced (not that two copies trained side by side): LoRA SFT with 2
processes × batch 2 ends with the same adapter as 1 process × batch 4 (same global batch; LoRA dropout 0,
sequential data order, fp32: max |Δ| ≤ 1e-5), while 1 process × batch 2 (half the global batch) ends
elsewhere. Only rank 0 writes metrics, ``result.json`` and the adapter. A killed rank fails the job with an
error naming the rank, the other rank is stopped, and running the job again resumes from its checkpoint to
the very adapter of an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from kaizen.tools.data import sft_rows, write_items
from kaizen.tools.errors import TrainingFailedError
from kaizen.tools.proc import pid_alive
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.train.launch import read_metrics, read_result, run_job
from kaizen.tools.train.spec import LauncherSpec, LoraSpec, TrainJob

INTENTS = TaskSpec(name="intents", kind="classification", labels=["balance", "transfer", "card_declined"])
STEPS = 10  # long enough for a kill after step 3 to land mid-run; each step is ~0.3 s
TEXTS = {
    "balance": ["how much money do I have", "what is my balance", "show my account balance"],
    "transfer": ["send 20 dollars to Ann", "move money to savings", "wire funds to my landlord"],
    "card_declined": ["my card was declined", "why did my card not work", "payment refused at the shop"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pairs = [(t, lab) for lab, ts in TEXTS.items() for t in ts][:8]
    items = [
        EvalItem(id=f"i{i}", messages=[{"role": "user", "content": t}], expected=lab)
        for i, (t, lab) in enumerate(pairs)
    ]
    path = tmp_path_factory.mktemp("ddp-data") / "data.jsonl"
    write_items(path, sft_rows(INTENTS, items))
    return path


def job(base: Path, data: Path, out: Path, *, batch: int, procs: int, **kw) -> TrainJob:
    launcher = LauncherSpec(kind="accelerate", num_processes=procs) if procs > 1 else LauncherSpec()
    params = {
        "batch_size": batch,
        "max_steps": STEPS,
        "max_length": 64,
        "warmup_ratio": 0.0,
        "save_steps": 100,
        "lora": LoraSpec(r=4, alpha=8, dropout=0.0),
        "device": "cpu",
        "dtype": "fp32",
        # A fixed data order: kaizen's default groups batches by length, which depends on the per-rank batch.
        "trl_overrides": {"train_sampling_strategy": "sequential"},
    } | kw
    return TrainJob(kind="sft", base_dir=base, data_path=data, output_dir=out, launcher=launcher, **params)


def adapter(job_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(job_dir / "adapter" / "adapter_model.safetensors"))


def max_delta(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def runs(tiny_llama_dir: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    out = {}
    for name, batch, procs in [
        ("one_proc_batch4", 4, 1),
        ("two_procs_batch2", 2, 2),
        ("one_proc_batch2", 2, 1),
    ]:
        out[name] = root / name
        run_job(job(tiny_llama_dir, data, out[name], batch=batch, procs=procs), poll_s=0.1)
    return out


def test_two_processes_match_one_process_with_the_same_global_batch(runs: dict[str, Path]) -> None:
    same = max_delta(adapter(runs["one_proc_batch4"]), adapter(runs["two_procs_batch2"]))
    half = max_delta(adapter(runs["one_proc_batch4"]), adapter(runs["one_proc_batch2"]))
    assert same <= 1e-5, (
        f"2×2 vs 1×4: max |Δ| = {same:.3g}: the ranks' gradients were not averaged into one update"
    )
    assert half > 1e-3, f"1×2 vs 1×4: max |Δ| = {half:.3g}: the comparison cannot tell batch sizes apart"
    r2, r1 = read_result(runs["two_procs_batch2"]), read_result(runs["one_proc_batch4"])
    assert r2 is not None and r1 is not None
    assert (r2["num_processes"], r1["num_processes"]) == (2, 1)
    assert r2["steps"] == r1["steps"] == STEPS
    assert r2["train_tokens"] == r1["train_tokens"]  # token counts are gathered over the ranks


def test_only_rank_zero_writes_metrics_result_and_adapter(runs: dict[str, Path]) -> None:
    d = runs["two_procs_batch2"]
    steps = [m["step"] for m in read_metrics(d) if "loss" in m]
    assert steps == list(range(1, STEPS + 1))  # one line per step, not one per rank
    assert sorted(p.name for p in (d / "adapter").iterdir() if p.suffix == ".safetensors") == [
        "adapter_model.safetensors"
    ]
    assert (d / "accelerate_config.yaml").exists()
    log = (d / "train.log").read_text()
    assert log.count("kaizen runner: done") == 1


def _rank_pid(job_dir: Path, rank: int) -> int | None:
    """The pid of the runner process of ``rank`` for this job (its environment says RANK=…)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace")
            env = Path(f"/proc/{d}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if "kaizen.tools.train.runner" in cmd and str(job_dir) in cmd and f"RANK={rank}".encode() in env:
            return int(d)
    return None


def test_a_killed_rank_fails_the_job_clearly_and_a_rerun_resumes(
    tiny_llama_dir: Path, data: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    j = job(tiny_llama_dir, data, tmp_path / "job", batch=2, procs=2, save_steps=2)
    killed: dict[str, int] = {}

    def kill_rank_1() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and len([m for m in read_metrics(j.output_dir) if "loss" in m]) < 3:
            time.sleep(0.05)
        pid0, pid1 = _rank_pid(j.output_dir, 0), _rank_pid(j.output_dir, 1)
        if pid0 and pid1:
            killed.update(rank0=pid0, rank1=pid1)
            os.kill(pid1, signal.SIGKILL)

    killer = threading.Thread(target=kill_rank_1, daemon=True)
    killer.start()
    with pytest.raises(TrainingFailedError) as err:
        run_job(j, poll_s=0.1)
    killer.join(5)
    assert killed, "the ranks were not found while training"
    msg = str(err.value)
    assert f"training rank 1 of 2 (pid {killed['rank1']}) was killed by SIGKILL" in msg, msg
    assert "stopped the other ranks" in msg
    assert not pid_alive(killed["rank0"]), "rank 0 outlived the failed job"
    assert read_result(j.output_dir) is None

    result = run_job(j, poll_s=0.1)
    assert result["resumed_from"] and Path(result["resumed_from"]).name.startswith("checkpoint-")
    assert result["steps"] == STEPS and result["num_processes"] == 2
    # Resumed: the same weights as the uninterrupted 2-process run (optimizer, scheduler, data position restored).
    assert max_delta(adapter(j.output_dir), adapter(runs["two_procs_batch2"])) <= 1e-5
    shutil.rmtree(j.output_dir / "checkpoints", ignore_errors=True)
