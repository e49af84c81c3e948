"""The training subprocess: ``python -m kaizen.tools.train.runner JOB_DIR/job.json``.

Runs in its own process (group) so GPU memory is freed and a crash is contained. It writes, inside
the job directory:

* ``runner.pid`` — pid and start time, so a launcher that resumes can adopt or stop an orphan;
* ``metrics.jsonl`` — one JSON object per log step (loss, lr, grad_norm, reward, entropy, tokens/s);
* ``checkpoints/checkpoint-N`` — the resume points; a re-run resumes from the newest;
* ``adapter/`` (LoRA) or ``model/`` (full fine-tune) — the result;
* ``result.json`` — written last: steps, train_tokens, tokens_per_s, runtime. Its presence means done.

Under ``accelerate launch`` (``TrainJob.launcher``) every rank runs this module; only rank 0 writes the
files above (the Trainer saves checkpoints and the adapter on the main process), and a rank whose
launcher dies goes too (``PR_SET_PDEATHSIG``) instead of waiting forever in a collective.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kaizen.tools.data import write_json
from kaizen.tools.train.spec import TrainJob


def _rank() -> tuple[int, int]:
    """(global rank, world size) from torchrun's environment; (0, 1) for a plain ``python -m`` run."""
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)


def _die_with_parent() -> None:
    """Linux: let the kernel SIGTERM this rank when its launcher (torch's elastic agent) dies.

    Only for ranks: a plain runner must outlive a killed kaizen process, which then adopts it.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except OSError as e:
        print(
            f"kaizen runner: cannot tie this rank to its launcher ({e}); it may outlive a killed launcher",
            flush=True,
        )


# What each row of a job's data file must hold (tools.data.sft_rows / grpo_rows write them).
REQUIRED_KEYS = {"sft": ("prompt", "completion"), "grpo": ("prompt", "expected")}


def _load_rows(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The job's data rows; a bad line raises ``ValueError("FILE:LINE: problem")`` before any model loads."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON: {e}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: each line must be a JSON object")
        missing = [k for k in required if k not in row]
        if missing:
            need = ", ".join(required)
            raise ValueError(f"{path}:{lineno}: missing {', '.join(map(repr, missing))} (rows need {need})")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no training rows")
    return rows


def _round(v: float) -> float:
    """Six significant digits: short lines, yet a learning rate of 2e-7 is not logged as 0."""
    return float(f"{v:.6g}")


def _latest_checkpoint(ckpt_dir: Path) -> str | None:
    """Newest checkpoint that finished saving (trainer_state.json is written last)."""
    ckpts = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(ckpts[-1]) if ckpts else None


def _checkpoint_tokens(ckpt: str) -> int:
    """Tokens trained up to a checkpoint (from its trainer_state.json; 0 when unknown)."""
    try:
        state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return 0
    logged = [h.get("num_tokens") or 0 for h in state.get("log_history", [])]
    return int(max([state.get("num_input_tokens_seen") or 0, *logged]))


def _metrics_callback(path: Path, t0: float, t_train_start: list[float], prior_tokens: int = 0):  # noqa: ANN202
    from transformers import TrainerCallback

    class MetricsToJsonl(TrainerCallback):
        """Append every log record (with step, elapsed time and tokens/s) to metrics.jsonl.

        tokens/s counts from the first step of *this* process (model loading excluded; after a
        resume, only the tokens trained since: ``prior_tokens`` were trained before the checkpoint).
        """

        start: float | None = None
        start_tokens = 0.0

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN003
            if not logs or not state.is_world_process_zero:  # one writer: rank 0 (logs are gathered already)
                return
            # cpu_s: this process's CPU seconds (all threads). Other load on the machine stretches
            # elapsed_s far more than cpu_s (with one thread, hardly at all): kaizen bench tools
            # compares steps by both.
            rec = {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "elapsed_s": round(time.time() - t0, 2),
                "cpu_s": round(time.process_time(), 2),
            }
            rec.update({k: (_round(v) if isinstance(v, float) else v) for k, v in logs.items()})
            tokens = float(logs.get("num_tokens") or getattr(state, "num_input_tokens_seen", 0) or 0)
            if self.start is None:
                # First log: we do not know when the step began, so rate from the train start.
                self.start, self.start_tokens = t_train_start[0] or t0, float(prior_tokens)
            if tokens and "train_runtime" not in logs:
                rec["tokens_per_s"] = round(
                    (tokens - self.start_tokens) / max(time.time() - self.start, 1e-6), 2
                )
            with path.open("a") as f:
                f.write(json.dumps(rec) + "\n")

    return MetricsToJsonl()


def _load_model(job: TrainJob):  # noqa: ANN202
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kaizen.tools.models.device import configure_cpu_threads, pick_device, pick_dtype

    device = pick_device(None if job.device == "auto" else job.device)
    dtype = pick_dtype(device, None if job.dtype == "auto" else job.dtype)
    if device == "cpu":
        configure_cpu_threads()
    tok = AutoTokenizer.from_pretrained(job.base_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(job.base_dir, dtype=dtype)
    peft_config = None
    if job.init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(job.init_adapter), is_trainable=True)
    elif not job.full_finetune:
        from peft import LoraConfig

        n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
        layers = (
            list(range(n_layers - job.lora.top_layers, n_layers))
            if job.lora.top_layers and n_layers
            else None
        )
        peft_config = LoraConfig(
            r=job.lora.r,
            lora_alpha=job.lora.alpha,
            lora_dropout=job.lora.dropout,
            target_modules=job.lora.target_modules,
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
        )
    return model, tok, peft_config, device, dtype == torch.bfloat16, dtype == torch.float16


def _common_args(job: TrainJob, bf16: bool, fp16: bool, device: str) -> dict[str, Any]:
    return dict(
        output_dir=str(job.output_dir / "checkpoints"),
        num_train_epochs=job.epochs,
        max_steps=job.max_steps,
        learning_rate=job.learning_rate,
        per_device_train_batch_size=job.batch_size,
        gradient_accumulation_steps=job.grad_accum,
        warmup_steps=job.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        lr_scheduler_type="linear",
        logging_steps=job.logging_steps,
        save_strategy="steps",
        save_steps=job.save_steps,
        save_total_limit=2,
        seed=job.seed,
        data_seed=job.seed,
        bf16=bf16,
        fp16=fp16,
        use_cpu=device == "cpu",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
        # TRL turns gradient checkpointing on by default; for small models it only re-computes the
        # forward pass (measured ~2x slower on CPU). Memory is not the constraint here.
        gradient_checkpointing=False,
        # Under DDP every trainable weight (LoRA or full) gets a gradient each step: skip the extra
        # autograd-graph walk that transformers' default (find unused parameters) costs every step.
        ddp_find_unused_parameters=False,
    )


def _sft_trainer(job: TrainJob, rows: list[dict[str, Any]], model, tok, peft_config, common: dict[str, Any]):  # noqa: ANN001, ANN202
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    args = SFTConfig(
        **(
            common
            | dict(
                max_length=job.max_length,
                completion_only_loss=True,
                # Batches of similar length waste fewer tokens on padding; on CPU padding is pure cost.
                train_sampling_strategy="group_by_length",
            )
            | job.trl_overrides
        )
    )
    return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)


def _use_vllm(job: TrainJob, device: str) -> bool:
    """``job.use_vllm`` resolved: "auto" means vllm importable and a CUDA device in use."""
    if job.use_vllm != "auto":
        return bool(job.use_vllm)
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    return (
        device == "cuda" and spec is not None and spec.origin is not None
    )  # origin None: a bare folder named vllm


def _grpo_trainer(job: TrainJob, rows: list[dict[str, Any]], model, tok, peft_config, common: dict[str, Any]):  # noqa: ANN001, ANN202
    """TRL's GRPO with kaizen's hooks (kaizen.tools.train.grpo, grpo_trainer): advantage weighting, hints, entropy stop."""
    from datasets import Dataset
    from trl import GRPOConfig

    from kaizen.tools.train.grpo import decode_columns, encode_rows, entropy_floor_stop
    from kaizen.tools.train.grpo_trainer import KaizenGRPOTrainer
    from kaizen.tools.train.rewards import get_reward

    ds = Dataset.from_list(encode_rows(rows))  # expected as JSON text: Arrow would reshape extraction targets
    device = "cpu" if common.get("use_cpu") else "cuda" if _cuda() else "cpu"
    vllm = _use_vllm(job, device)
    vllm_args: dict[str, Any] = dict(use_vllm=vllm, vllm_mode=job.vllm_mode)
    if vllm and job.vllm_mode == "server" and job.vllm_server_url:
        vllm_args["vllm_server_base_url"] = job.vllm_server_url
    args = GRPOConfig(
        **(
            common
            | dict(
                remove_unused_columns=False,
                num_generations=job.num_generations,
                max_completion_length=job.max_completion_length,
                temperature=job.temperature,
            )
            | vllm_args
            | job.trl_overrides
        )
    )
    rewards = [decode_columns(get_reward(name)) for name in job.rewards]
    callbacks = (
        [entropy_floor_stop(job.entropy_floor, job.entropy_patience)]
        if job.entropy_floor is not None
        else None
    )
    if vllm:
        print(f"kaizen runner: GRPO generation with vLLM ({job.vllm_mode})", flush=True)
    return KaizenGRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
        adv_weight_pos=job.adv_weight_pos,
        adv_weight_neg=job.adv_weight_neg,
        hint_share=job.hint_share,
        hint=job.hint,
        hint_tokens=job.hint_tokens,
        hint_recheck=job.hint_recheck,
        job_dir=job.output_dir,
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(job: TrainJob) -> dict[str, Any]:
    """Train (or resume) the job and write its outputs; returns the result record."""
    out = job.output_dir
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _rank()
    if world > 1:
        _die_with_parent()
    if rank == 0:
        (out / "runner.pid").write_text(
            json.dumps({"pid": os.getpid(), "started": time.time(), "world_size": world})
        )
    t0 = time.time()
    rows = _load_rows(job.data_path, REQUIRED_KEYS[job.kind])  # fail on bad data before the slow model load
    model, tok, peft_config, device, bf16, fp16 = _load_model(job)
    if world > 1 and device == "cpu":
        # accelerate names a CPU rank's device "cpu:0", and torch.load(map_location="cpu:0") cannot restore
        # the optimizer state on resume ("don't know how to restore data location"): plain "cpu" can.
        os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
    common = _common_args(job, bf16, fp16, device)
    build = _sft_trainer if job.kind == "sft" else _grpo_trainer
    trainer = build(job, rows, model, tok, peft_config, common)
    resume = _latest_checkpoint(out / "checkpoints")
    prior_tokens = _checkpoint_tokens(resume) if resume else 0
    if resume:
        print(f"kaizen runner: resuming from {resume}", flush=True)
        if hasattr(trainer, "_total_train_tokens"):
            # TRL's SFTTrainer counts num_tokens in an attribute that is not part of the checkpoint
            # (GRPO uses state.num_input_tokens_seen, which is): continue the count, not restart it.
            trainer._total_train_tokens = prior_tokens
    t_train_start = [0.0]
    trainer.add_callback(_metrics_callback(out / "metrics.jsonl", t0, t_train_start, prior_tokens))
    t_train = t_train_start[0] = time.time()
    train_out = trainer.train(resume_from_checkpoint=resume)
    train_s = time.time() - t_train
    final = out / ("model" if job.full_finetune else "adapter")
    trainer.save_model(str(final))  # every rank calls it (ZeRO-3/FSDP gather); the main process writes
    trainer.accelerator.wait_for_everyone()  # result.json (done) only once every rank has finished
    if rank != 0:
        return {"rank": rank}
    tok.save_pretrained(str(final))
    state = trainer.state
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    if not tokens:
        tokens = int(max((h.get("num_tokens", 0) for h in state.log_history), default=0))
    result = {
        "kind": job.kind,
        "output_path": str(final),
        "steps": state.global_step,
        "resumed_from": resume,
        "train_tokens": tokens,
        "train_runtime_s": round(train_s, 2),
        # Rate of this process only: tokens trained before the resumed checkpoint took no time here.
        "tokens_per_s": round((tokens - prior_tokens) / train_s, 2)
        if train_s > 0 and tokens > prior_tokens
        else None,
        "train_loss": train_out.training_loss,
        "device": device,
        "dtype": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "num_processes": world,
        "total_s": round(time.time() - t0, 2),
    }
    if job.kind == "grpo":
        from kaizen.tools.train.grpo import read_summary

        result["grpo"] = read_summary(out)  # hints, their recheck, early stop (also in grpo.json)
    write_json(out / "result.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m kaizen.tools.train.runner JOB_DIR/job.json", file=sys.stderr)
        return 2
    job = TrainJob.model_validate_json(Path(argv[0]).read_text())
    result = run(job)
    if _rank()[0] == 0:
        print("kaizen runner: done " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
