"""Training job specs (pydantic): what to train, on what, how — serialised to ``job.json``.

The knobs users need are fields; everything else TRL offers goes through ``trl_overrides``. A spec
is self-contained (resolved paths, no references to the store), so the runner subprocess needs
nothing but the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# vLLM serves LoRA ranks up to 512 but its default --max-lora-rank is 16; staying ≤ 64 keeps
# adapters servable with a modest setting. Embeddings/lm_head are never targeted: SmolLM2 ties them
# and vLLM cannot load adapters on tied modules.
MAX_LORA_RANK = 64
FORBIDDEN_TARGETS = {"embed_tokens", "lm_head", "wte", "wpe"}


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(
        16, ge=1, le=MAX_LORA_RANK, description="LoRA rank (≤ 64 keeps the adapter servable by vLLM)."
    )
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names to adapt (never embeddings or lm_head).",
    )
    top_layers: int | None = Field(
        None,
        ge=1,
        description="Adapt only the top N transformer layers. On CPU this skips the backward pass through the "
        "frozen lower layers — the largest single speed-up measured (see kaizen bench tools).",
    )

    @model_validator(mode="after")
    def _servable(self) -> LoraSpec:
        bad = FORBIDDEN_TARGETS.intersection(self.target_modules)
        if bad:
            raise ValueError(
                f"lora.target_modules must not include {sorted(bad)}: adapters on tied embeddings are not servable by vLLM"
            )
        return self


class LauncherSpec(BaseModel):
    """How the runner process is started: plain ``python -m`` or ``accelerate launch`` (data parallel).

    Also the ``train.launcher`` section of kaizen.yaml. Under accelerate every rank trains on its share
    of each batch (``batch_size`` is per process: the global batch is ``batch_size × grad_accum ×
    num_processes``); only rank 0 writes metrics, checkpoints' trainer state, the adapter and
    ``result.json``.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["python", "accelerate"] = Field(
        "python",
        description="python: one process. accelerate: `accelerate launch` (DDP, DeepSpeed or FSDP; several GPUs, or gloo on CPU).",
    )
    num_processes: int | None = Field(
        None,
        ge=1,
        description="accelerate: processes (one per GPU). null: the config file's value, else every visible GPU (1 on a CPU).",
    )
    strategy: Literal["ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp"] = Field(
        "ddp",
        description="accelerate without config_file: the accelerate config kaizen writes into the job dir "
        "(ddp; DeepSpeed ZeRO-2/3 needs the deepspeed package; fsdp). Only ddp has been run by kaizen's tests (CPU, gloo).",
    )
    config_file: Path | None = Field(
        None,
        description="accelerate: your own `accelerate config` YAML (multi-node, offload …); overrides strategy. "
        "A relative path is relative to the workspace root.",
    )
    main_process_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="accelerate: rendezvous port on 127.0.0.1. null: a free port per job.",
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="accelerate: further `accelerate launch` arguments, passed as-is (e.g. [--gpu_ids, '0,1']).",
    )

    @model_validator(mode="after")
    def _python_takes_no_accelerate_options(self) -> LauncherSpec:
        if self.kind == "python" and (self.config_file or (self.num_processes or 1) > 1 or self.extra_args):
            raise ValueError(
                "num_processes, config_file and extra_args need the accelerate launcher: set train.launcher.kind: accelerate"
            )
        return self

    def relative_to(self, root: Path) -> LauncherSpec:
        """The same launcher with a relative ``config_file`` resolved against ``root`` (the workspace)."""
        if self.config_file is None or self.config_file.is_absolute():
            return self
        return self.model_copy(update={"config_file": (root / self.config_file).resolve()})


class TrainJob(BaseModel):
    """One SFT or GRPO job. ``data_path`` holds rendered chats (see kaizen.tools.data)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sft", "grpo"]
    base_dir: Path = Field(description="Resolved base model directory (safetensors).")
    init_adapter: Path | None = Field(
        None, description="Start from this adapter (e.g. the incumbent's) instead of a fresh LoRA."
    )
    data_path: Path = Field(
        description="JSONL: {prompt: [...], completion: [...]} (SFT) or {prompt: [...], expected} (GRPO)."
    )
    output_dir: Path = Field(
        description="Job directory: checkpoints/, adapter/, metrics.jsonl, train.log, result.json."
    )
    full_finetune: bool = Field(False, description="Train all weights instead of a LoRA adapter.")
    lora: LoraSpec = Field(default_factory=LoraSpec)
    epochs: float = Field(2.0, gt=0, description="Passes over the data (ignored when max_steps is set).")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps (-1: use epochs).")
    learning_rate: float = Field(
        1e-3,
        gt=0,
        description="1e-3 suits LoRA on small models (measured: 2e-4 barely moves a 135M model in 15 steps).",
    )
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(256, ge=16, description="Truncate longer chats (tokens).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    seed: int = 0
    save_steps: int = Field(5, ge=1, description="Checkpoint every N steps (resume point after a kill).")
    logging_steps: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # GRPO
    rewards: list[str] = Field(
        default_factory=lambda: ["label_exact_match"],
        description="Reward names (kaizen.tools.train.rewards).",
    )
    num_generations: int = Field(4, ge=2, description="Completions per prompt (GRPO group size).")
    max_completion_length: int = Field(16, ge=1)
    temperature: float = Field(1.0, gt=0)
    adv_weight_pos: float = Field(
        1.0,
        ge=0,
        description="GRPO: weight of tokens with positive advantage (their advantage is multiplied by it). "
        "Entropy collapse in RLVR is driven mainly by positive-advantage tokens: < 1 slows it (see kaizen.tools.train.grpo).",
    )
    adv_weight_neg: float = Field(
        1.0, ge=0, description="GRPO: weight of tokens with negative advantage (> 1 also keeps entropy up)."
    )
    entropy_floor: float | None = Field(
        0.01,
        ge=0,
        description="GRPO: stop training once the policy entropy (mean nats per completion token) stays below "
        "this for entropy_patience logged steps (a collapsed policy learns nothing more). null: never stop for it.",
    )
    entropy_patience: int = Field(
        2, ge=1, description="GRPO: logged steps below entropy_floor before stopping."
    )
    hint_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="GRPO: when every completion of a prompt scores 0, re-sample that prompt with a "
        "minimal hint, for at most this share of the prompt groups seen (0: never).",
    )
    hint: Literal["auto", "labels", "prefix", "answer"] = Field(
        "auto",
        description="GRPO hint: labels (the label set), prefix (the reference's first tokens, at most half), "
        "answer (off-policy guidance: the reference reply replaces one completion of the group, the prompt "
        "unchanged; labels and JSON only), or auto (the label set if the prompt does "
        "not list it, the first test for code, else the prefix).",
    )
    hint_tokens: int = Field(
        2, ge=1, description="GRPO: tokens of the reference a prefix hint reveals (at most half of them)."
    )
    hint_recheck: bool = Field(
        True,
        description="GRPO: after training, decode each hinted prompt once without its hint (grpo.json says which pass).",
    )
    use_vllm: bool | Literal["auto"] = Field(
        "auto",
        description="GRPO generation with TRL's vLLM engine. auto: when vllm is importable and CUDA is present "
        "(never on CPU). true on a CPU is an error.",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="colocate: vLLM inside the trainer process, sharing the GPU (trl_overrides "
        "vllm_gpu_memory_utilization, default 0.3); server: a separate `trl vllm-serve` process at vllm_server_url.",
    )
    vllm_server_url: str | None = Field(
        None, description="vllm_mode server: its base URL (e.g. http://127.0.0.1:8000); null: TRL's default."
    )
    trl_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Passed to SFTConfig/GRPOConfig as-is."
    )
    launcher: LauncherSpec = Field(
        default_factory=LauncherSpec, description="python (one process) or accelerate (data parallel)."
    )

    @model_validator(mode="after")
    def _checks(self) -> TrainJob:
        # Absolute paths: the runner subprocess may start in another directory.
        for name in ("base_dir", "init_adapter", "data_path", "output_dir"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                object.__setattr__(self, name, value.resolve())
        if self.launcher.config_file is not None and not self.launcher.config_file.is_absolute():
            object.__setattr__(self, "launcher", self.launcher.relative_to(Path.cwd()))
        if self.kind == "grpo" and (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size×grad_accum ({self.batch_size * self.grad_accum}) must be a multiple of num_generations "
                f"({self.num_generations}) for GRPO: set batch_size to a multiple of num_generations"
            )
        if self.use_vllm is True and self.device == "cpu":
            raise ValueError(
                "use_vllm needs a GPU (TRL's vLLM generation does not run on CPU): set use_vllm false or auto"
            )
        if self.vllm_server_url and self.vllm_mode != "server":
            raise ValueError(
                "vllm_server_url is used only by the server mode: set vllm_mode server (or drop the URL)"
            )
        return self
