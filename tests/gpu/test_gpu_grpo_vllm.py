"""GRPO with TRL's vLLM generation (colocate mode) through the runner subprocess, hints included.

Marked ``gpu``; skipped without CUDA or without an importable ``vllm`` (install the ``[vllm]`` extra on
the GPU machine). Run with ``pytest tests/gpu/test_gpu_grpo_vllm.py -m gpu -s``. Not run by kaizen's CI
(no GPU there): this file is the recipe for the GPU check.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
_vllm = importlib.util.find_spec("vllm")
if _vllm is None or _vllm.origin is None:  # origin None: a namespace package (e.g. tests/vllm/), not vLLM
    pytest.skip("needs vllm (pip install -e '.[vllm]')", allow_module_level=True)

from kaizen.tools.data import grpo_rows, write_items  # noqa: E402
from kaizen.tools.schema import EvalItem, TaskSpec  # noqa: E402
from kaizen.tools.train.grpo import HINTS_FILE  # noqa: E402
from kaizen.tools.train.launch import read_metrics, run_job  # noqa: E402
from kaizen.tools.train.spec import LoraSpec, TrainJob  # noqa: E402

pytestmark = pytest.mark.gpu


def test_grpo_with_vllm_colocate_and_hints(yes_no_llama_dir: Path, tmp_path: Path) -> None:
    task = TaskSpec(
        name="parity",
        kind="classification",
        labels=["yes", "no", "maybe"],
        system_prompt="Answer with one word.",
    )
    gold = ["yes", "maybe", "no", "maybe"]  # "maybe" is never said: all-zero groups, hinted
    items = [
        EvalItem(id=f"q{i}", messages=[{"role": "user", "content": f"Is {i} even?"}], expected=g)
        for i, g in enumerate(gold)
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
        lora=LoraSpec(r=4, alpha=8),
        save_steps=100,
        device="auto",
        dtype="auto",
        use_vllm=True,
        vllm_mode="colocate",
        hint_share=1.0,
        hint="labels",
        entropy_floor=None,
        trl_overrides={"vllm_gpu_memory_utilization": 0.2},
    )
    result = run_job(job, poll_s=0.2)
    assert "GRPO generation with vLLM (colocate)" in (job.output_dir / "train.log").read_text()
    assert result["steps"] == 2 and result["grpo"]["use_vllm"] is True
    steps = [m for m in read_metrics(job.output_dir) if "train_runtime" not in m]
    assert all(m["hints/used"] == m["hints/all_zero_groups"] for m in steps), steps
    events = [json.loads(line) for line in (job.output_dir / HINTS_FILE).read_text().splitlines()]
    assert events and all(e["rewards_before"] == [0.0] * 4 for e in events)
    print(
        f"\nGPU GRPO with vLLM colocate: 2 steps in {result['train_runtime_s']} s; hints {result['grpo']['hints']}"
    )
