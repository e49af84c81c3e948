"""Everything an AdaptFT run sets up before its first stage: the presets and the request check, the
scenario, the base model, v1 (trained once and cached) and the arms' workspaces with v1 in production.

Presets: ``tiny`` (a 2-layer random Llama; plumbing only, numbers meaningless), ``small`` (the
embedded SmolLM2-135M on CPU, sized for ≤ 45 min on 2 cores), ``full`` (GPU only; the ``gsm8k``
scenario exists only here).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError
from kaizen.workflows.bench.adaptft.scenarios import (
    TRAVEL_GAPS,
    TRAVEL_PROMPT,
    Scenario,
    clinc_scenario,
    gsm8k_scenario,
    travel_slice,
)

# What the run reports progress through: one line of text a call (the CLI prints it).
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Preset:
    """Sizes of one benchmark run. ``base``: ``tiny`` (random 2-layer Llama) or a model spec."""

    name: str
    base: str
    per_stage: int  # fresh inputs per stage (70 % logs, 30 % held out)
    v1_per_label: int  # CLINC: v1's examples per intent (gaps aside)
    v1_epochs: float
    v1_lora: dict[str, Any] = field(default_factory=lambda: {"r": 8, "alpha": 16, "top_layers": 12})
    v1_max_steps: int = -1
    max_iterations: int = 2
    gsm8k_v1_size: int = 0  # GSM8K: worked solutions v1 is trained on
    plan_defaults: dict[str, Any] = field(default_factory=dict)  # the agent's first plan (repair.start)
    train_overrides: dict[str, Any] = field(default_factory=dict)  # the agent's training jobs (repair.start)
    gpu_only: bool = False
    eval_batch: int = 32


PRESETS = {
    # CI plumbing: a random 2-layer model, 10 inputs a stage, one-step v1; every stage still
    # trains (agent and naive) and every number is produced, just meaningless.
    "tiny": Preset(
        "tiny",
        base="tiny",
        per_stage=10,
        v1_per_label=1,
        v1_epochs=1,
        v1_max_steps=2,
        v1_lora={"r": 4, "alpha": 8},
        max_iterations=1,
        plan_defaults={"min_steps": 1, "epochs": 1, "grpo_steps": 2},
        train_overrides={"save_steps": 1000},
    ),
    # SmolLM2-135M on 2 CPU cores, ≤ 45 min: v1 as in the support-intents demo (98 examples);
    # 100 inputs a stage → 70 logs per arm and 30 held out (90 after three stages). Measured:
    # 12 min with v1 cached on a quiet 2-core machine (v1 itself: ~2 min idle, 18 min under load);
    # shared with other CPU jobs (load 4-6) the same run took over an hour.
    "small": Preset("small", base="smollm2-135m", per_stage=100, v1_per_label=12, v1_epochs=3),
    # GPUs: AdaptFT has ~500 logs per stage; the CLINC banking slice's pool holds ~1,260 inputs
    # after v1's share, so 400 a stage (GSM8K's pool has 6,400).
    "full": Preset(
        "full",
        base="smollm2-135m",
        per_stage=400,
        v1_per_label=30,
        v1_epochs=3,
        gpu_only=True,
        gsm8k_v1_size=1000,
        v1_lora={"r": 16, "alpha": 32},
    ),
}
SCENARIOS = ("clinc", "clinc-travel", "gsm8k")


def check_request(scenario: str, preset: str) -> Preset:
    """Refuse combinations that cannot run here, before anything is built."""
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}: use {', '.join(SCENARIOS)}")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if scenario == "gsm8k" and preset != "full":
        raise ConfigError(
            "the gsm8k scenario runs only with --preset full (a GPU): 256-token worked solutions are "
            "far beyond a CPU budget; use --scenario clinc for tiny/small"
        )
    if p.gpu_only:
        from kaizen.tools.models import pick_device

        if not pick_device().startswith("cuda"):
            raise ConfigError(
                f"--preset full needs a CUDA GPU and this machine has none (device: {pick_device()}); "
                "use --preset small on CPU (~45 min on 2 cores) or --preset tiny (a smoke test)"
            )
    return p


def make_scenario(name: str, p: Preset, seed: int) -> Scenario:
    if name == "gsm8k":
        return gsm8k_scenario(v1_size=p.gsm8k_v1_size, seed=seed)
    if name == "clinc-travel":
        return clinc_scenario(
            v1_per_label=p.v1_per_label,
            seed=11 + seed,
            data=travel_slice(),
            gaps=TRAVEL_GAPS,
            domain="travel",
            system_prompt=TRAVEL_PROMPT,
        )
    return clinc_scenario(v1_per_label=p.v1_per_label, seed=11 + seed)


# ------------------------------------------------------------------------------- models
def base_dir(p: Preset, base: str | None) -> Path:
    """The base model directory: the cached tiny random Llama, or ``base`` / the preset's model."""
    from kaizen.tools.models import build_tiny_random_llama, cache_dir, resolve_base

    if (base or p.base) != "tiny":
        return resolve_base(base or p.base)
    target = cache_dir() / "bench" / "tiny-random-llama"
    if not (target / "config.json").exists():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        build_tiny_random_llama(tmp, resolve_base("smollm2-135m"))
        with contextlib.suppress(OSError):  # a concurrent build won: use it
            tmp.rename(target)
    return target


def train_v1(sc: Scenario, p: Preset, base: Path, say: Progress) -> Path:
    """v1's adapter, trained once and cached under ``<cache>/bench`` keyed by data, recipe and base."""
    from kaizen.tools.data import sft_rows, write_items
    from kaizen.tools.models import cache_dir
    from kaizen.tools.schema import content_hash
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob
    from kaizen.tools.versions import progress_printer

    rows = sft_rows(sc.task, sc.v1_items)
    recipe = {
        "epochs": p.v1_epochs,
        "max_steps": p.v1_max_steps,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "seed": 0,
        "save_steps": 1000,
        "lora": p.v1_lora,
    }
    key = content_hash({"data": rows, "recipe": recipe, "base": str(base), "v": 1})
    job_dir = cache_dir() / "bench" / f"adaptft-v1-{sc.name}-{key}"
    write_items(job_dir / "data.jsonl", rows)
    say(f"v1: {len(rows)} examples, {p.v1_epochs:g} epochs ({job_dir.name}; reused when cached)")
    job = TrainJob(
        kind="sft",
        base_dir=base,
        data_path=job_dir / "data.jsonl",
        output_dir=job_dir,
        lora=LoraSpec(**p.v1_lora),
        **{k: v for k, v in recipe.items() if k != "lora"},
    )
    return Path(run_job(job, progress_printer())["output_path"])


def make_workspace(root: Path, sc: Scenario, base: Path, v1: Path) -> Any:
    """A fresh workspace whose task's production is v1 (an adapter on the registered base)."""
    from kaizen.tools import registry
    from kaizen.tools.workspace import find_workspace, init_workspace

    init_workspace(root)
    ws = find_workspace(root)
    ws.store.add_task(sc.task)
    # The one promotion path (no server runs here yet).
    from kaizen.tools.serve.hotswap import promote_and_swap

    registry.add_external(ws.store, "bench-base", base, note="adaptft bench base")
    # The task runs on the bench's base first, so that v1 (an adapter on it) is accepted for the task.
    promote_and_swap(ws.store, sc.task.name, "bench-base", actor="adaptft bench")
    registry.add_external(
        ws.store, "v1", v1, base="bench-base", task=sc.task.name, note="adaptft deployed v1"
    )
    promote_and_swap(ws.store, sc.task.name, "v1", actor="adaptft bench")
    return ws
