"""``kaizen bench tools`` end to end (quick mode). Minutes of CPU: runs only with KAIZEN_RUN_BENCH=1.

Asserts the report's structure and that every measured number is positive; never a timing
threshold (the numbers depend on the machine and on whatever else it is running).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("KAIZEN_RUN_BENCH") != "1", reason="benchmark: set KAIZEN_RUN_BENCH=1 to run"
    ),
]

VARIANTS = ("full", "lora_all", "lora_top10", "lora_all_grad_ckpt", "lora_all_long_prompt")


def test_bench_tools_quick(smollm_dir: Path, tmp_path: Path) -> None:
    from kaizen.workflows.bench.tools_bench import bench_tools

    lines: list[str] = []
    report = bench_tools(quick=True, progress=lines.append, out_dir=tmp_path)
    print("\n" + "\n".join(lines))

    assert {"machine", "generation", "training", "ratios"} <= report.keys()
    m = report["machine"]
    assert m["cpu"] and m["cores_used"] >= 1 and m["torch"]
    assert m["matmul"]["peak_gflops"] > 0
    assert m["model"]["params"] > 100_000_000

    g = report["generation"]
    assert g["prompts"] == 8
    for mode in ("batched", "serial"):
        assert g[mode]["tokens_per_s"] > 0 and g[mode]["examples_per_s"] > 0 and g[mode]["new_tokens"] > 0
    assert g["score_labels"]["examples_per_s"] > 0

    t = report["training"]
    for name in VARIANTS:
        v = t[name]
        assert v["steps_timed"] == 2  # quick: 3 steps, the first excluded
        assert (
            v["s_per_step"] > 0
            and v["best_step_s"] > 0
            and v["tokens_per_s"] > 0
            and v["tokens_per_example"] > 0
        )
        assert v["cpu_s_per_step"] > 0  # the runner logs its CPU seconds
        assert v["trainable_params"] > 0
        assert (v["mfu"] if name == "full" else v["ft_equivalent_mfu"]) > 0
    assert (
        t["lora_top10"]["trainable_params"]
        < t["lora_all"]["trainable_params"]
        < t["full"]["trainable_params"]
    )
    assert t["lora_all_long_prompt"]["tokens_per_example"] > t["lora_all"]["tokens_per_example"]

    for key in ("ratios", "ratios_mean_steps") + (("ratios_cpu_time",) if m["device"] == "cpu" else ()):
        assert report[key] and all(isinstance(r, float) and r > 0 for r in report[key].values()), key
    saved = Path(report["saved_to"])
    assert saved.parent == tmp_path and json.loads(saved.read_text())["ratios"] == report["ratios"]
