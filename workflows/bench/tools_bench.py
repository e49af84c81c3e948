"""``kaizen bench tools``: how fast the model tools are on this machine, as ratios within one run.

Everything runs on the embedded default model (``smollm2-135m``) and real CLINC150 banking prompts:

* **generation** — the same prompts decoded greedily in batches of 16 and one at a time
  (``TransformersBackend.generate``), and classified by label likelihood (``score_labels``);
* **matmul peak** — the best measured fp32 (bf16 on CUDA) matmul rate of this machine, the
  denominator of the MFU figures;
* **training** — SFT through the real runner subprocess (``kaizen.tools.train.launch.run_job``): full
  fine-tuning, LoRA on all layers, LoRA on the top 10 layers, LoRA with TRL's default gradient
  checkpointing, and LoRA on chats whose system prompt lists the labels. Step times come from
  ``metrics.jsonl`` (``elapsed_s`` between logged steps), the first step excluded as warm-up.

Absolute numbers move with whatever else the machine is doing; the ratios (measured minutes
apart, in the same run) are the figures to quote. Because other load only ever slows things down,
times are also reported best-of (the fastest repetition or training step), and on CPU by process
CPU seconds, which other load inflates far less than wall time (with ``OMP_NUM_THREADS=1``, hardly
at all): ``ratios`` (best-of wall time), ``ratios_mean_steps`` and ``ratios_cpu_time``. The load
average is recorded alongside. The result is returned and written to
``<cache>/bench/tools-<timestamp>.json``.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.schema import TaskSpec, render
from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice, rows, to_items
from kaizen.workflows.bench.machine import (
    load_avg,
    machine_facts,
    matmul_peak,
    ratio,
    save_result,
    step_stats,
)

Progress = Callable[[str], None]

GEN_BATCH = 16
GEN_MAX_NEW_TOKENS = 8
TRAIN_BATCH = 8
TOP_LAYERS = 10


def _lora_params(model: Any, targets: list[str], r: int, top_layers: int | None) -> int:
    """Trainable parameters a LoRA adapter of rank ``r`` adds (r·(in+out) per adapted Linear)."""
    import re

    import torch

    n_layers = int(model.config.num_hidden_layers)
    first = n_layers - top_layers if top_layers else 0
    total = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or name.rsplit(".", 1)[-1] not in targets:
            continue
        m = re.search(r"\.layers\.(\d+)\.", name)
        if m and int(m.group(1)) < first:
            continue
        total += r * (mod.in_features + mod.out_features)
    return total


def _count_new_tokens(tok: Any, outputs: list[str], max_new: int) -> int:
    """Generated tokens, re-counted from the decoded replies (+1 for an end-of-turn before the cap)."""
    n = 0
    for text in outputs:
        k = len(tok(text, add_special_tokens=False)["input_ids"])
        n += min(max_new, k + (1 if k < max_new else 0))
    return n


def bench_generation(
    base: Path, chats: list[list[dict[str, str]]], labels: list[str], progress: Progress, reps: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Batched vs one-at-a-time greedy generation, and label scoring; returns (numbers, model facts)."""
    from kaizen.tools.evaluate.backends import TransformersBackend

    backend = TransformersBackend(base, batch_size=GEN_BATCH)
    model, tok = backend.model, backend.tokenizer
    facts = {
        "params": sum(p.numel() for p in model.parameters()),
        "layers": int(model.config.num_hidden_layers),
        "model": model,
    }
    # Warm-up both paths (first-call allocations, thread pool start).
    backend.generate(chats[:2], max_new_tokens=2)
    backend.batch_size = 1
    backend.generate(chats[:1], max_new_tokens=2)
    backend.batch_size = GEN_BATCH
    backend.score_labels(chats[:2], labels)

    cpu_times: list[float] = []

    def timed(fn: Callable[[], list[str]]) -> tuple[list[str], float]:
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        cpu_times.append(time.process_time() - c)
        return out, time.perf_counter() - t

    n = len(chats)
    res: dict[str, Any] = {
        "prompts": n,
        "max_new_tokens": GEN_MAX_NEW_TOKENS,
        "batch_size": GEN_BATCH,
        "best_of": reps,
    }
    outputs: dict[str, list[str]] = {}
    for mode, bs in (("batched", GEN_BATCH), ("serial", 1)):
        backend.batch_size = bs
        times = []
        cpu_times.clear()
        for _ in range(reps):
            outputs[mode], s = timed(lambda: backend.generate(chats, max_new_tokens=GEN_MAX_NEW_TOKENS))
            times.append(s)
        s = min(times)
        toks = _count_new_tokens(tok, outputs[mode], GEN_MAX_NEW_TOKENS)
        res[mode] = {
            "batch_size": bs,
            "seconds": round(s, 3),
            "all_seconds": [round(t, 2) for t in times],
            "cpu_s": round(min(cpu_times), 3),
            "load_avg": load_avg(),
            "new_tokens": toks,
            "tokens_per_s": round(toks / s, 2),
            "examples_per_s": round(n / s, 3),
        }
        progress(
            f"generation {mode} (batch {bs}): {n} prompts in {s:.2f} s (best of {reps}), {toks / s:.1f} new tokens/s"
        )
    res["batched_serial_same_outputs"] = round(
        sum(a == b for a, b in zip(outputs["batched"], outputs["serial"], strict=True)) / n, 3
    )
    backend.batch_size = GEN_BATCH
    cpu_times.clear()
    times = [timed(lambda: backend.score_labels(chats, labels))[1] for _ in range(reps)]
    s = min(times)
    res["score_labels"] = {
        "batch_size": GEN_BATCH,
        "labels": len(labels),
        "seconds": round(s, 3),
        "cpu_s": round(min(cpu_times), 3),
        "all_seconds": [round(t, 2) for t in times],
        "examples_per_s": round(n / s, 3),
    }
    progress(
        f"label scoring ({len(labels)} labels, batch {GEN_BATCH}): {n} prompts in {s:.2f} s, {n / s:.2f} examples/s"
    )
    return res, facts


def bench_training(
    base: Path,
    data: dict[str, list[dict[str, Any]]],
    *,
    steps: int,
    params: int,
    lora_params: dict[str, int],
    progress: Progress,
) -> dict[str, Any]:
    from kaizen.tools.data import write_items
    from kaizen.tools.train.launch import read_metrics, run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob

    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("full", "short", dict(full_finetune=True, learning_rate=1e-5)),
        ("lora_all", "short", dict(lora=LoraSpec())),
        ("lora_top10", "short", dict(lora=LoraSpec(top_layers=TOP_LAYERS))),
        (
            "lora_all_grad_ckpt",
            "short",
            dict(lora=LoraSpec(), trl_overrides={"gradient_checkpointing": True}),
        ),
        ("lora_all_long_prompt", "long", dict(lora=LoraSpec())),
    ]
    out: dict[str, Any] = {"batch_size": TRAIN_BATCH, "max_steps": steps, "params": params}
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-") as tmp:
        for key, rows_ in data.items():
            write_items(Path(tmp) / f"{key}.jsonl", rows_)
        for name, prompt, kw in variants:
            job_dir = Path(tmp) / name
            job = TrainJob(
                kind="sft",
                base_dir=base,
                data_path=Path(tmp) / f"{prompt}.jsonl",
                output_dir=job_dir,
                max_steps=steps,
                batch_size=TRAIN_BATCH,
                save_steps=10_000,
                logging_steps=1,
                seed=0,
                **kw,
            )
            progress(f"training {name} ({steps} steps, batch {TRAIN_BATCH}, {prompt} prompt) …")

            def show(rec: dict[str, Any], name: str = name) -> None:
                if "loss" in rec and "train_runtime" not in rec:
                    progress(
                        f"  {name}: step {rec['step']}/{rec['max_steps']} at {rec['elapsed_s']:.1f} s, loss {rec['loss']:.3f}"
                    )

            load_before = load_avg()
            result = run_job(job, show)

            stats = step_stats(read_metrics(job_dir), TRAIN_BATCH)
            stats["prompt"] = prompt
            stats["trainable_params"] = params if kw.get("full_finetune") else lora_params[name]
            stats["runner_tokens_per_s"] = result.get(
                "tokens_per_s"
            )  # the runner's own figure, first step included
            stats["full_finetune"] = bool(kw.get("full_finetune"))
            stats["load_avg"] = [load_before, load_avg()]
            out[name] = stats
            progress(
                f"  {name}: {stats['s_per_step']:.2f} s/step (best {stats['best_step_s']:.2f}), {stats['tokens_per_s']} tokens/s "
                f"(best step {stats['best_tokens_per_s']}), {stats['tokens_per_example']} tokens/example"
            )
            shutil.rmtree(job_dir, ignore_errors=True)  # full-FT checkpoints are ~2 GB
    return out


def bench_tools(
    quick: bool = False, progress: Progress = print, *, out_dir: Path | None = None
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"machine", "generation", "training", "ratios"}`` (also saved as JSON)."""
    from kaizen.tools.data import sft_rows
    from kaizen.tools.models import configure_cpu_threads, pick_device, pick_dtype, resolve_base
    from kaizen.tools.train.spec import LoraSpec

    started = time.time()
    device = pick_device()
    dtype = pick_dtype(device)
    if device == "cpu":
        configure_cpu_threads()
    machine = machine_facts(device, dtype)
    load0 = load_avg()
    progress(
        f"machine: {machine['cpu']}, {machine['cores_used']} threads, torch {machine['torch']}, {device} {machine['dtype']}"
        + (f", {machine['gpu']}" if "gpu" in machine else "")
        + f"; load average {load0}"
    )
    if device == "cpu" and load0 is not None and load0 > 0.5 * machine["cores_used"]:
        progress(
            f"warning: load average {load0} on {machine['cores_used']} cores — other processes share the CPU, "
            "so wall times will be long and noisy: prefer the best-of and CPU-time figures"
        )
    base = resolve_base("smollm2-135m")
    slice_ = load_slice()
    labels = list(slice_["labels"])
    short = TaskSpec(name="bench-short", kind="classification", labels=labels, system_prompt=SYSTEM_PROMPT)
    long = TaskSpec(
        name="bench-long", kind="classification", labels=labels
    )  # default prompt lists the labels

    n_gen = 8 if quick else 32
    gen_items = to_items(rows("test", per_label=math.ceil(n_gen / len(labels)), seed=0, data=slice_))[:n_gen]
    chats = [render(short, None, it.messages) for it in gen_items]

    reps = 3 if quick else 5
    mm_start = matmul_peak(device, dtype, reps=reps)
    progress(f"matmul peak ({machine['dtype']}, {mm_start['n']}²): {mm_start['gflops']} GFLOP/s")

    generation, facts = bench_generation(base, chats, labels, progress, reps=1 if quick else 2)
    model = facts.pop("model")
    lora_defaults = LoraSpec()
    lora_params = {
        name: _lora_params(model, lora_defaults.target_modules, lora_defaults.r, top)
        for name, top in (
            ("lora_all", None),
            ("lora_top10", TOP_LAYERS),
            ("lora_all_grad_ckpt", None),
            ("lora_all_long_prompt", None),
        )
    }
    del model
    gc.collect()

    steps = 3 if quick else 6
    train_items = to_items(
        rows("train", per_label=math.ceil(steps * TRAIN_BATCH / len(labels)), seed=0, data=slice_)
    )
    data = {"short": sft_rows(short, train_items), "long": sft_rows(long, train_items)}
    training = bench_training(
        base, data, steps=steps, params=facts["params"], lora_params=lora_params, progress=progress
    )
    # The peak is the best of a measurement before and after training: other load only lowers it.
    mm_end = matmul_peak(device, dtype, reps=reps)
    peak_gflops = max(mm_start["gflops"], mm_end["gflops"])
    progress(f"matmul peak after training: {mm_end['gflops']} GFLOP/s")
    for v in training.values():
        if isinstance(v, dict) and v.get("tokens_per_s"):
            # 6·params·tokens is the FLOP count of full fine-tuning; for LoRA the same figure is an
            # "FT-equivalent" rate (how fast it gets through the data), not the FLOPs it executes.
            key = "mfu" if v["full_finetune"] else "ft_equivalent_mfu"
            v[key] = round(6 * facts["params"] * v["tokens_per_s"] / (peak_gflops * 1e9), 4)
            v[key + "_best_step"] = round(
                6 * facts["params"] * v["best_tokens_per_s"] / (peak_gflops * 1e9), 4
            )
    machine["matmul"] = {
        "dtype": machine["dtype"],
        "n": mm_start["n"],
        "reps": reps,
        "gflops_measurements": [mm_start["gflops"], mm_end["gflops"]],
        "peak_gflops": peak_gflops,
    }
    machine["load_avg"] = {"start": load0, "end": load_avg()}
    machine["model"] = {
        "name": "smollm2-135m",
        "path": str(base),
        "params": facts["params"],
        "layers": facts["layers"],
    }

    t = training

    def steps_ratio(slow: str, fast: str, field: str = "best_step_s") -> float | None:
        return ratio(t[slow][field], t[fast][field])

    ratios = {
        # All ratios read "how many times faster the first is than the second". Training ratios
        # compare best-step times (other load only slows a step down; the batches are the same).
        "batched_vs_serial_generation_tokens_per_s": ratio(
            generation["batched"]["tokens_per_s"], generation["serial"]["tokens_per_s"]
        ),
        "score_labels_vs_batched_generation_examples_per_s": ratio(
            generation["score_labels"]["examples_per_s"], generation["batched"]["examples_per_s"]
        ),
        "lora_all_vs_full_step_time": steps_ratio("full", "lora_all"),
        "lora_top10_vs_full_step_time": steps_ratio("full", "lora_top10"),
        "lora_top10_vs_lora_all_step_time": steps_ratio("lora_all", "lora_top10"),
        "no_grad_ckpt_vs_grad_ckpt_step_time": steps_ratio("lora_all_grad_ckpt", "lora_all"),
        "short_vs_long_prompt_time_per_example": steps_ratio(
            "lora_all_long_prompt", "lora_all", "best_s_per_example"
        ),
    }
    # The same ratios from mean step times over the whole window (noisier under load).
    ratios_mean = {
        "lora_all_vs_full_step_time": steps_ratio("full", "lora_all", "s_per_step"),
        "lora_top10_vs_full_step_time": steps_ratio("full", "lora_top10", "s_per_step"),
        "lora_top10_vs_lora_all_step_time": steps_ratio("lora_all", "lora_top10", "s_per_step"),
        "no_grad_ckpt_vs_grad_ckpt_step_time": steps_ratio("lora_all_grad_ckpt", "lora_all", "s_per_step"),
        "short_vs_long_prompt_time_per_example": steps_ratio(
            "lora_all_long_prompt", "lora_all", "s_per_example"
        ),
    }
    # The same again by CPU seconds (process time, all threads): other load on the machine inflates
    # these far less than wall time (with OMP_NUM_THREADS=1, hardly at all).
    ratios_cpu: dict[str, float | None] = {}
    if device == "cpu":
        g = generation
        ratios_cpu = {
            "batched_vs_serial_generation": ratio(g["serial"]["cpu_s"], g["batched"]["cpu_s"]),
            "score_labels_vs_batched_generation": ratio(g["batched"]["cpu_s"], g["score_labels"]["cpu_s"]),
        }
        if all("cpu_s_per_step" in v for v in t.values() if isinstance(v, dict)):
            ratios_cpu |= {
                "lora_all_vs_full_step_time": steps_ratio("full", "lora_all", "cpu_s_per_step"),
                "lora_top10_vs_full_step_time": steps_ratio("full", "lora_top10", "cpu_s_per_step"),
                "lora_top10_vs_lora_all_step_time": steps_ratio("lora_all", "lora_top10", "cpu_s_per_step"),
                "no_grad_ckpt_vs_grad_ckpt_step_time": steps_ratio(
                    "lora_all_grad_ckpt", "lora_all", "cpu_s_per_step"
                ),
                "short_vs_long_prompt_time_per_example": steps_ratio(
                    "lora_all_long_prompt", "lora_all", "cpu_s_per_example"
                ),
            }
    result: dict[str, Any] = {
        "machine": machine,
        "generation": generation,
        "training": training,
        "ratios": ratios,
        "ratios_mean_steps": ratios_mean,
        "ratios_cpu_time": ratios_cpu,
        "quick": quick,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "total_s": round(time.time() - started, 1),
    }
    path = save_result(result, "tools", started, out_dir)
    progress(f"ratios: {json.dumps(ratios)}")
    progress(f"saved {path}")
    return result
