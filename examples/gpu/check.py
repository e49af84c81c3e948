"""The GPU path, measured: one script, ≤ 5 minutes on one CUDA GPU, one JSON summary on stdout.

Run as: ``examples/gpu/check.sh`` (or ``make gpu-check``), which makes kaizen, TRL and datasets importable
first; directly: ``python examples/gpu/check.py [--out summary.json]``. ``--smoke`` runs the same code on the
CPU with a tiny model (a plumbing check, no figures); without it and without CUDA the script fails at once.

What it measures, each through kaizen's own training runner (``kaizen.tools.train.launch.run_job``: the
subprocess, TRL, bf16 chosen automatically on CUDA):

* **sft_lora / sft_full** — LoRA SFT (r=16, every linear layer) and full fine-tuning of a model shaped like
  Qwen2.5-1.5B (28 layers, hidden 1536, GQA 12/2 heads, vocab 151,936; random init: throughput only) on
  ~512-token chats. Steady-state tokens/s (from the runner's metrics.jsonl, the first steps excluded) and
  MFU = model FLOPs/s over the bf16 peak — both the peak measured here (an 8192³ matmul) and the GPU's
  nominal dense bf16 peak where known. Model FLOPs per token: full fine-tuning 6·N + 12·L·d·s, LoRA
  4·N + 12·L·d·s (frozen weights get no weight gradients), N the parameter count, s the mean sequence length.
* **grpo** — GRPO with generation by transformers (``use_vllm`` off): seconds per step, generated tokens/s.
* **eval** — greedy generation of 128 prompts × 32 tokens, transformers (batched) vs vLLM's offline engine;
  without vLLM the row says ``not run: vLLM absent``.

The model is random, so its outputs are noise: the figures are speeds, not quality. It, its tokenizer
and the chats are built by ``synthetic.py`` beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from synthetic import QWEN25_15B, TINY, WORDS, build_model, build_tokenizer, sft_rows  # beside this script

# Dense bf16 tensor-core peaks (no sparsity), from NVIDIA's datasheets (SXM parts).
NOMINAL_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.05, "L4": 121.0, "A10": 125.0}


def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def matmul_peak(device: str, n: int = 8192, reps: int = 10) -> float | None:
    """The best measured bf16 matmul rate (TFLOP/s) of this GPU."""
    import torch

    if device != "cuda":
        return None
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    return round(best, 1)


def steady_rate(metrics: list[dict[str, Any]], skip: int) -> tuple[float | None, float | None]:
    """(tokens/s, s/step) between the ``skip``-th logged step and the last one (warm-up excluded)."""
    steps = [m for m in metrics if "num_tokens" in m and "train_runtime" not in m]
    if len(steps) <= skip + 1:
        return None, None
    a, b = steps[skip], steps[-1]
    dt = b["elapsed_s"] - a["elapsed_s"]
    if dt <= 0:
        return None, None
    return (b["num_tokens"] - a["num_tokens"]) / dt, dt / (b["step"] - a["step"])


def train(
    kind: str,
    model_dir: Path,
    root: Path,
    *,
    full: bool,
    steps: int,
    batch: int,
    words: int,
    device: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from kaizen.tools.data import write_items
    from kaizen.tools.train.launch import read_metrics, run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob

    name = f"{kind}-{'full' if full else 'lora'}"
    job_dir = root / name
    rows = sft_rows(batch * steps, words, seed=len(name))
    if kind == "grpo":
        rows = [{"prompt": r["prompt"], "expected": "balance"} for r in rows]
    write_items(job_dir.parent / f"{name}.jsonl", rows)
    job = TrainJob(
        kind=kind,
        base_dir=model_dir,
        data_path=job_dir.parent / f"{name}.jsonl",
        output_dir=job_dir,
        full_finetune=full,
        max_steps=steps,
        batch_size=batch,
        max_length=1024,
        save_steps=10_000,
        warmup_ratio=0.0,
        lora=LoraSpec(r=16, alpha=32),
        device=device,
        **(extra or {}),
    )
    t0 = time.perf_counter()
    result = run_job(job, poll_s=0.5)
    wall = time.perf_counter() - t0
    tps, s_step = steady_rate(read_metrics(job_dir), skip=min(3, steps // 3))
    shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)
    return {
        "steps": result["steps"],
        "batch": batch,
        "dtype": result["dtype"],
        "device": result["device"],
        "train_tokens": result["train_tokens"],
        "tokens_per_s_steady": round(tps, 1) if tps else None,
        "s_per_step_steady": round(s_step, 4) if s_step else None,
        "tokens_per_s_whole_run": result["tokens_per_s"],
        "job_wall_s": round(wall, 1),
    }


def with_mfu(
    row: dict[str, Any], model: dict[str, Any], *, lora: bool, peak: float | None, nominal: float | None
) -> dict[str, Any]:
    tps = row.get("tokens_per_s_steady")
    if not tps or not row.get("steps"):
        return row
    shape = model["shape"]
    seq = row["train_tokens"] / (row["steps"] * row["batch"])  # mean tokens per sequence
    per_token = (4 if lora else 6) * model["params"] + 12 * shape["num_hidden_layers"] * shape[
        "hidden_size"
    ] * seq
    tflops = per_token * tps / 1e12
    row |= {
        "mean_seq_len": round(seq, 1),
        "model_tflops_per_s": round(tflops, 1),
        "flops_per_token": f"{'4' if lora else '6'}·N + 12·L·d·s",
    }
    if peak:
        row["mfu_vs_measured_peak"] = round(tflops / peak, 3)
    if nominal:
        row["mfu_vs_nominal_peak"] = round(tflops / nominal, 3)
    return row


def eval_speed(model_dir: Path, device: str, n: int, new_tokens: int) -> dict[str, Any]:
    """Greedy generation throughput: transformers (batched) vs vLLM (offline engine) where it is installed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    rnd = random.Random(1)
    chats = [
        tok.apply_chat_template(
            [{"role": "user", "content": " ".join(rnd.choice(WORDS) for _ in range(40))}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for _ in range(n)
    ]
    model = (
        AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.bfloat16 if device == "cuda" else torch.float32
        )
        .to(device)
        .eval()
    )
    out: dict[str, Any] = {"prompts": n, "new_tokens": new_tokens}
    batch = 64 if device == "cuda" else 16
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        enc = tok(chats[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(
            device
        )
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out["transformers"] = {"batch": batch, "s": round(dt, 2), "tokens_per_s": round(n * new_tokens / dt, 1)}
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    try:
        import vllm  # noqa: F401
    except ImportError:
        out["vllm"] = "not run: vLLM absent"
        return out
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), dtype="bfloat16", gpu_memory_utilization=0.5, enforce_eager=False)
    params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, temperature=0.0)
    llm.generate(chats[:8], params)  # warm-up (graph capture)
    t0 = time.perf_counter()
    llm.generate(chats, params)
    dt = time.perf_counter() - t0
    out["vllm"] = {"s": round(dt, 2), "tokens_per_s": round(n * new_tokens / dt, 1)}
    out["vllm_over_transformers"] = round(
        out["vllm"]["tokens_per_s"] / out["transformers"]["tokens_per_s"], 2
    )
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU plumbing check with a tiny model (no figures).")
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON summary here.")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    summary: dict[str, Any] = {
        "ok": False,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "smoke": args.smoke,
    }

    def finish(code: int) -> int:
        summary["total_s"] = round(time.perf_counter() - t_start, 1)
        text = json.dumps(summary, indent=2)
        print(text, flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        return code

    try:
        import torch
    except ImportError as e:
        summary["error"] = f"torch is not importable ({e}): this check needs a CUDA build of torch"
        return finish(2)
    summary["versions"] = versions()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        summary["error"] = (
            "CUDA is not available (torch.cuda.is_available() is False): this check measures the GPU path "
            "and must run on a CUDA machine; `--smoke` runs its plumbing on the CPU without figures"
        )
        return finish(2)
    missing = [m for m in ("trl", "datasets", "peft") if summary["versions"][m] == "absent"]
    try:
        import kaizen.tools.train.launch  # noqa: F401
    except ImportError as e:
        missing.append(f"kaizen ({e})")
    if missing:
        summary["error"] = (
            f"not importable: {', '.join(missing)} — run examples/gpu/check.sh (it installs carried wheels and finds kaizen)"
        )
        return finish(2)
    device = "cuda" if cuda else "cpu"
    if cuda:
        name = torch.cuda.get_device_name(0)
        summary["gpu"] = {
            "name": name,
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
        }
        nominal = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)
    else:
        nominal = None
    root = Path(tempfile.mkdtemp(prefix="kaizen-gpu-check-"))
    failed = False

    def phase(key: str, fn: Any) -> Any:
        nonlocal failed
        log(f"{key} …")
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - every phase reports its own failure; the others still run
            failed = True
            summary[key] = {
                "error": f"{type(e).__name__}: {e}"[-2000:],
                "traceback": traceback.format_exc()[-3000:],
            }
            log(f"{key} failed: {e}")
            return None
        log(f"{key} done in {time.perf_counter() - t0:.1f} s")
        return value

    try:
        shape = TINY if args.smoke else QWEN25_15B
        peak = phase("matmul_peak_tflops", lambda: matmul_peak(device))
        summary["matmul_peak_tflops"] = peak
        summary["nominal_peak_tflops"] = nominal
        model_dir = root / "model"
        build_tokenizer(model_dir, shape["vocab_size"])
        model = phase("model", lambda: build_model(model_dir, shape, device))
        if model is not None:
            summary["model"] = model
            steps, batch, words = (6, 4, 40) if args.smoke else (30, 8, 400)
            sft_lora = phase(
                "sft_lora",
                lambda: train(
                    "sft", model_dir, root, full=False, steps=steps, batch=batch, words=words, device=device
                ),
            )
            if sft_lora:
                summary["sft_lora"] = with_mfu(sft_lora, model, lora=True, peak=peak, nominal=nominal)
            sft_full = phase(
                "sft_full",
                lambda: train(
                    "sft",
                    model_dir,
                    root,
                    full=True,
                    steps=max(4, steps * 2 // 3),
                    batch=batch,
                    words=words,
                    device=device,
                ),
            )
            if sft_full:
                summary["sft_full"] = with_mfu(sft_full, model, lora=False, peak=peak, nominal=nominal)
            grpo = phase(
                "grpo",
                lambda: train(
                    "grpo",
                    model_dir,
                    root,
                    full=False,
                    steps=3 if args.smoke else 6,
                    batch=8,
                    words=40,
                    device=device,
                    extra={
                        "num_generations": 4,
                        "max_completion_length": 8 if args.smoke else 64,
                        "rewards": ["label_exact_match"],
                    },
                ),
            )
            if grpo:
                grpo["generation"] = "transformers (use_vllm off)"
                summary["grpo"] = grpo
            ev = phase(
                "eval",
                lambda: eval_speed(model_dir, device, 32 if args.smoke else 128, 8 if args.smoke else 32),
            )
            if ev:
                summary["eval"] = ev
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary["ok"] = not failed
    return finish(0 if not failed else 1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
