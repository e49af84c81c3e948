"""The GPU path through the same runner subprocess: bf16 LoRA SFT of the default model, and GRPO.

Marked ``gpu`` and skipped without CUDA. Run on a GPU machine with
``pytest tests/gpu -m gpu -s`` and record the printed numbers in the issue note.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from kaizen.tools.data import grpo_rows, sft_rows, write_items  # noqa: E402
from kaizen.tools.schema import EvalItem, TaskSpec  # noqa: E402
from kaizen.tools.train.launch import read_metrics, run_job  # noqa: E402
from kaizen.tools.train.spec import LoraSpec, TrainJob  # noqa: E402

pytestmark = pytest.mark.gpu

INTENTS = TaskSpec(name="intents", kind="classification", labels=["balance", "transfer", "card_declined"])
TEXTS = {
    "balance": [
        "how much money do I have",
        "what is my balance",
        "show my account balance",
        "balance please",
    ],
    "transfer": [
        "send 20 dollars to Ann",
        "move money to savings",
        "wire funds to my landlord",
        "pay Bob back",
    ],
    "card_declined": [
        "my card was declined",
        "why did my card not work",
        "payment refused at the shop",
        "card rejected",
    ],
}


def test_bf16_lora_sft_on_default_model(smollm_dir: Path, tmp_path: Path) -> None:
    items = [
        EvalItem(id=f"{lab}{i}", messages=[{"role": "user", "content": t}], expected=lab)
        for lab, ts in TEXTS.items()
        for i, t in enumerate(ts)
    ]
    write_items(tmp_path / "data.jsonl", sft_rows(INTENTS, items))
    job = TrainJob(
        kind="sft",
        base_dir=smollm_dir,
        data_path=tmp_path / "data.jsonl",
        output_dir=tmp_path / "job",
        max_steps=15,
        batch_size=8,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        save_steps=5,
        lora=LoraSpec(r=16, alpha=32),
        device="auto",
        dtype="auto",
    )
    result = run_job(job, poll_s=0.2)
    assert result["device"].startswith("cuda")
    assert result["dtype"] == "bf16"  # auto on a bf16-capable GPU
    assert result["steps"] == 15
    ckpt = max(
        (job.output_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
    )
    args = torch.load(ckpt / "training_args.bin", weights_only=False)
    assert args.bf16 is True and args.fp16 is False and not args.use_cpu
    losses = [m["loss"] for m in read_metrics(job.output_dir) if "loss" in m]
    assert len(losses) == 15
    first, last = statistics.mean(losses[:3]), statistics.mean(losses[-3:])
    print(
        f"\nGPU bf16 LoRA SFT of the default model: loss {first:.3f} → {last:.3f}, "
        f"{result['train_tokens']} tokens at {result['tokens_per_s']} tokens/s ({torch.cuda.get_device_name()})"
    )
    assert last < 0.7 * first
    assert (Path(result["output_path"]) / "adapter_model.safetensors").exists()


def test_grpo_two_steps_on_gpu(yes_no_llama_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    task = TaskSpec(name="parity", kind="classification", labels=["yes", "no"])
    items = [
        EvalItem(
            id=f"p{i}", messages=[{"role": "user", "content": f"Is {i} even?"}], expected=["yes", "no"][i % 2]
        )
        for i in range(4)
    ]
    write_items(tmp_path / "data.jsonl", grpo_rows(task, items))
    job = TrainJob(
        kind="grpo",
        base_dir=yes_no_llama_dir,
        data_path=tmp_path / "data.jsonl",
        output_dir=tmp_path / "job",
        max_steps=2,
        num_generations=4,
        batch_size=8,
        max_completion_length=1,
        warmup_ratio=0.0,
        rewards=["label_exact_match"],
        lora=LoraSpec(r=4, alpha=8),
        save_steps=100,
        device="auto",
        dtype="auto",
    )
    result = run_job(job, poll_s=0.2)
    assert result["device"].startswith("cuda") and result["dtype"] == "bf16" and result["steps"] == 2
    steps = [m for m in read_metrics(job.output_dir) if "train_runtime" not in m]
    assert all("reward" in m and "entropy" in m for m in steps), steps
    assert min(m["frac_reward_zero_std"] for m in steps) < 1.0, steps
    weights = load_file(str(Path(result["output_path"]) / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(v.abs().max().item() > 0 for v in lora_b)
    print(
        f"\nGPU GRPO: 2 steps in {result['train_runtime_s']} s; "
        + json.dumps({k: steps[-1][k] for k in ("reward", "entropy")})
    )
