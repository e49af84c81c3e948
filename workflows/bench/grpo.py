"""``kaizen bench grpo``: GRPO step throughput as a ratio to an SFT step on the same examples.

Run as: ``kaizen bench grpo [--quick] [--base DIR] [--prompts 2] [--steps 6] [--json]``
(or ``python -c "from kaizen.workflows.bench.grpo import bench_grpo; bench_grpo()"``).

Both arms go through the real runner subprocess (``kaizen.tools.train.launch.run_job``) on the same
CLINC150 banking prompts, the same model, LoRA and seed:

* **sft** — ``prompts`` examples a step (prompt + gold label);
* **grpo** — the same ``prompts`` prompts a step, ``num_generations`` (4) sampled completions of at
  most ``max_completion_length`` (8) tokens each, scored by ``label_exact_match``, no hints;
* **grpo_hints** (not with ``--quick``) — the same with ``hint_share`` 1.0: every all-zero group is
  sampled a second time with a hint, the worst case of what hints cost.

Step times come from ``metrics.jsonl`` (``elapsed_s`` between logged steps, the first step excluded as
warm-up; best-of and mean) and, on CPU, from the runner's process CPU seconds, which other load on the
machine inflates far less. The ratios (GRPO ÷ SFT, per step = per prompt) are the figures to quote. The
result is returned and written to ``<cache>/bench/grpo-<timestamp>.json``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.schema import TaskSpec
from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice, rows, to_items
from kaizen.workflows.bench.machine import load_avg, machine_facts, ratio, save_result, step_stats

Progress = Callable[[str], None]

NUM_GENERATIONS = 4
MAX_COMPLETION = 8


def bench_grpo(
    quick: bool = False,
    progress: Progress = print,
    *,
    base: Path | str | None = None,
    prompts: int = 2,
    steps: int | None = None,
    top_layers: int | None = 10,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Time SFT and GRPO steps on the same examples; returns ``{"machine", "arms", "ratios", ...}``.

    Args:
        quick: 3 steps an arm and no hints arm (a smoke test).
        progress: Where progress lines go.
        base: Model directory (default: the embedded smollm2-135m).
        prompts: Prompts (SFT: examples) per step.
        steps: Optimiser steps per arm (default 6; 3 with ``quick``). The first is excluded from timing.
        top_layers: LoRA on the top N layers for both arms (None: all layers).
        out_dir: Where to save the JSON (default ``<cache>/bench``).
    """
    from kaizen.tools.data import grpo_rows, sft_rows, write_items
    from kaizen.tools.models import configure_cpu_threads, pick_device, pick_dtype, resolve_base
    from kaizen.tools.train.launch import read_metrics, run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob

    started = time.time()
    steps = steps or (3 if quick else 6)
    device = pick_device()
    if device == "cpu":
        configure_cpu_threads()
    machine = machine_facts(device, pick_dtype(device))
    base_dir = Path(base) if base else resolve_base("smollm2-135m")
    slice_ = load_slice()
    labels = list(slice_["labels"])
    task = TaskSpec(name="bench-grpo", kind="classification", labels=labels, system_prompt=SYSTEM_PROMPT)
    items = to_items(
        rows("train", per_label=math.ceil(prompts * steps / len(labels)) + 1, seed=0, data=slice_)
    )
    items = items[: prompts * steps]
    lora = LoraSpec(top_layers=top_layers)
    common: dict[str, Any] = dict(
        base_dir=base_dir,
        max_steps=steps,
        save_steps=10_000,
        logging_steps=1,
        seed=0,
        warmup_ratio=0.0,
        lora=lora,
        learning_rate=1e-4,
    )
    arms: list[tuple[str, dict[str, Any]]] = [
        ("sft", dict(kind="sft", batch_size=prompts)),
        (
            "grpo",
            dict(
                kind="grpo",
                batch_size=prompts * NUM_GENERATIONS,
                num_generations=NUM_GENERATIONS,
                max_completion_length=MAX_COMPLETION,
                hint_share=0.0,
                entropy_floor=None,
            ),
        ),
    ]
    if not quick:
        arms.append(
            (
                "grpo_hints",
                dict(
                    kind="grpo",
                    batch_size=prompts * NUM_GENERATIONS,
                    num_generations=NUM_GENERATIONS,
                    max_completion_length=MAX_COMPLETION,
                    hint_share=1.0,
                    entropy_floor=None,
                    hint_recheck=False,
                ),
            )
        )
    progress(
        f"GRPO vs SFT on {base_dir.name}: {len(items)} CLINC prompts, {prompts} a step, {steps} steps, "
        f"G={NUM_GENERATIONS}, ≤{MAX_COMPLETION} completion tokens; load average {load_avg()}"
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-grpo-") as tmp:
        write_items(Path(tmp) / "sft.jsonl", sft_rows(task, items))
        write_items(Path(tmp) / "grpo.jsonl", grpo_rows(task, items))
        for name, kw in arms:
            job = TrainJob(
                data_path=Path(tmp) / f"{kw['kind']}.jsonl", output_dir=Path(tmp) / name, **common, **kw
            )

            def show(rec: dict[str, Any], name: str = name) -> None:
                if "loss" in rec and "train_runtime" not in rec:
                    extra = (
                        f", reward {rec['reward']:.2f}, entropy {rec['entropy']:.2f}"
                        if "reward" in rec
                        else ""
                    )
                    progress(
                        f"  {name}: step {rec['step']}/{rec['max_steps']} at {rec['elapsed_s']:.1f} s{extra}"
                    )

            load_before = load_avg()
            result = run_job(job, show)
            metrics = read_metrics(job.output_dir)
            stats = step_stats(metrics, prompts)
            stats["load_avg"] = [load_before, load_avg()]
            stats["train_tokens"] = result.get("train_tokens")
            if kw["kind"] == "grpo":
                steps_logged = [m for m in metrics if "reward" in m]
                stats["mean_reward"] = round(
                    sum(m["reward"] for m in steps_logged) / max(1, len(steps_logged)), 3
                )
                stats["hints_used"] = sum(m.get("hints/used") or 0 for m in steps_logged)
            results[name] = stats
            progress(
                f"  {name}: {stats['s_per_step']:.2f} s/step (best {stats['best_step_s']:.2f}"
                + (f", {stats['cpu_s_per_step']:.2f} CPU s" if "cpu_s_per_step" in stats else "")
                + ")"
            )

    def ratios(field: str) -> dict[str, float | None]:
        out = {"grpo_vs_sft_step_time": ratio(results["grpo"].get(field), results["sft"].get(field))}
        if "grpo_hints" in results:
            out["grpo_hints_vs_sft_step_time"] = ratio(
                results["grpo_hints"].get(field), results["sft"].get(field)
            )
            out["grpo_hints_vs_grpo_step_time"] = ratio(
                results["grpo_hints"].get(field), results["grpo"].get(field)
            )
        return out

    data: dict[str, Any] = {
        "machine": machine | {"load_avg_end": load_avg()},
        "model": str(base_dir),
        "setup": {
            "prompts_per_step": prompts,
            "steps": steps,
            "num_generations": NUM_GENERATIONS,
            "max_completion_length": MAX_COMPLETION,
            "lora_top_layers": top_layers,
            "examples": len(items),
        },
        "arms": results,
        # "how many SFT steps one GRPO step costs", same prompts per step: best-of wall time,
        # mean wall time, and process CPU time (the steadiest on a shared machine).
        "ratios": ratios("best_step_s"),
        "ratios_mean_steps": ratios("s_per_step"),
        "ratios_cpu_time": ratios("cpu_s_per_step")
        if all("cpu_s_per_step" in r for r in results.values())
        else {},
        "quick": quick,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "total_s": round(time.time() - started, 1),
    }
    path = save_result(data, "grpo", started, out_dir)
    progress(
        f"ratios (GRPO step ÷ SFT step): {json.dumps(data['ratios'])}; CPU time: {json.dumps(data['ratios_cpu_time'])}"
    )
    progress(f"saved {path}")
    return data
