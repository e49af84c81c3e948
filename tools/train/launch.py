"""Launch a training job as a subprocess, show progress, survive kills.

``run_job`` is idempotent: a finished job (``result.json`` present) returns its result at once; a
job whose runner is still alive from an earlier, killed launcher is *adopted* (we wait for it
instead of starting a second trainer); otherwise the runner starts and resumes from the newest
checkpoint. The runner gets its own process group so the launcher can stop it cleanly.

``job.launcher`` chooses how: ``python -m kaizen.tools.train.runner job.json`` (one process) or
``accelerate launch … -m kaizen.tools.train.runner job.json`` (data parallel: DDP, DeepSpeed or FSDP;
on a CPU the ranks talk over gloo). Under accelerate, torch's elastic agent stops the other ranks when
one dies; we then name the rank that died, and how, as the last line of ``train.log``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, ToolUnavailableError, TrainingFailedError
from kaizen.tools.proc import pid_alive
from kaizen.tools.train.spec import LauncherSpec, TrainJob

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def _runner_pid(job_dir: Path) -> int | None:
    """The pid of a runner still training this job, if any (checked against its command line)."""
    try:
        pid = int(json.loads((job_dir / "runner.pid").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return pid  # no /proc (macOS): trust the pid file
    return pid if "kaizen.tools.train.runner" in cmd and str(job_dir) in cmd else None


def log_tail(job_dir: Path, n: int = 30) -> str:
    try:
        return "\n".join((job_dir / "train.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def read_result(job_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None


def read_metrics(job_dir: Path) -> list[dict[str, Any]]:
    path = job_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    return out


def _follow(job_dir: Path, is_running: Callable[[], bool], progress: Progress | None, poll_s: float) -> None:
    seen = 0
    while True:
        running = is_running()
        metrics = read_metrics(job_dir)
        if progress:
            for rec in metrics[seen:]:
                progress(rec)
        seen = len(metrics)
        if not running:
            return
        time.sleep(poll_s)


def stop_runner(pid: int, timeout_s: float = 30) -> None:
    """SIGTERM the runner's process group, then SIGKILL if it does not go."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout_s
    while time.time() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the rendezvous port of one accelerate job)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _visible_gpus() -> int:
    import torch  # only here: choosing a process count for accelerate; the launcher stays light otherwise

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# accelerate config files kaizen writes for ``launcher.strategy`` (the shapes of TRL's
# examples/accelerate_configs). Only "ddp" has been run by kaizen's own tests (CPU, gloo).
_STRATEGY_CONFIG: dict[str, dict[str, Any]] = {
    "ddp": {"distributed_type": "MULTI_GPU"},
    "deepspeed-zero2": {
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {
            "deepspeed_multinode_launcher": "standard",
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": False,
            "zero_stage": 2,
        },
    },
    "deepspeed-zero3": {
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {
            "deepspeed_multinode_launcher": "standard",
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": True,
            "zero3_save_16bit_model": True,
            "zero_stage": 3,
        },
    },
    "fsdp": {
        "distributed_type": "FSDP",
        "fsdp_config": {
            "fsdp_activation_checkpointing": False,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_forward_prefetch": True,
            "fsdp_offload_params": False,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": True,
        },
    },
}


def accelerate_config(launcher: LauncherSpec, num_processes: int) -> dict[str, Any]:
    """The accelerate config for ``launcher.strategy`` on one machine with ``num_processes`` ranks.

    Mixed precision stays "no" here: the runner's TrainingArguments (bf16 on CUDA, fp32 on CPU) decide.
    DDP on a machine without GPUs is still ``MULTI_GPU`` to accelerate: that is its torchrun launcher,
    and the ranks, seeing no CUDA, join a gloo process group on the CPU.
    """
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "downcast_bf16": "no",
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": "no",
        "num_machines": 1,
        "num_processes": num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    cfg |= _STRATEGY_CONFIG[launcher.strategy]
    if launcher.strategy == "ddp" and num_processes == 1:
        cfg["distributed_type"] = "NO"
    return cfg


def runner_command(job: TrainJob, job_path: Path) -> list[str]:
    """The command line that runs ``job_path``: the runner itself, or the runner under accelerate launch."""
    runner = ["-m", "kaizen.tools.train.runner", str(job_path)]
    launcher = job.launcher
    if launcher.kind == "python":
        return [sys.executable, *runner]
    try:
        import accelerate  # noqa: F401 - only its presence is checked here; it runs in the subprocess
    except ImportError:
        raise ToolUnavailableError(
            "accelerate (train.launcher.kind: accelerate)", "pip install accelerate"
        ) from None
    if launcher.strategy.startswith("deepspeed") and launcher.config_file is None:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ToolUnavailableError(
                f"deepspeed (train.launcher.strategy: {launcher.strategy})", "pip install deepspeed"
            ) from None
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launcher.config_file is not None:
        if not launcher.config_file.exists():
            raise ConfigError(
                f"train.launcher.config_file {launcher.config_file} does not exist: "
                f"write it with `accelerate config --config_file {launcher.config_file}` or set it to null"
            )
        cmd += ["--config_file", str(launcher.config_file)]
        if launcher.num_processes:
            cmd += ["--num_processes", str(launcher.num_processes)]
    else:
        import yaml

        n = launcher.num_processes or max(1, _visible_gpus())
        cfg_path = job.output_dir / "accelerate_config.yaml"
        cfg_path.write_text(yaml.safe_dump(accelerate_config(launcher, n), sort_keys=True))
        cmd += ["--config_file", str(cfg_path)]
    cmd += [
        "--main_process_port",
        str(launcher.main_process_port or free_port()),
        *launcher.extra_args,
        *runner,
    ]
    return cmd


# torch.distributed.elastic's summary when a rank fails (printed by the agent, which then stops the
# other ranks): "[0]:\n  time : …\n  host : …\n  rank : 1 (local_rank: 1)\n  exitcode : -9 (pid: 123)\n …
# traceback : Signal 9 (SIGKILL) received by PID 123". The first entry under "Root Cause" died first.
_ELASTIC_ROOT = re.compile(
    r"Root Cause.*?rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*exitcode\s*:\s*(-?\d+)\s*\(pid:\s*(\d+)\)",
    re.DOTALL,
)


def rank_failure(log_text: str, num_processes: int | None = None) -> str | None:
    """One line naming the rank that failed first and how, from the elastic agent's summary in the log."""
    m = _ELASTIC_ROOT.search(log_text)
    if not m:
        return None
    rank, code, pid = int(m.group(1)), int(m.group(2)), int(m.group(3))
    of = f" of {num_processes}" if num_processes else ""
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return (
        f"kaizen launcher: training rank {rank}{of} (pid {pid}) {how}; accelerate stopped the other ranks "
        "and the job failed (its checkpoints are kept: run it again to resume)"
    )


def run_job(
    job: TrainJob, progress: Progress | None = None, *, poll_s: float = 1.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run (or resume, or adopt) a training job; returns ``result.json``'s content."""
    job_dir = job.output_dir
    job_dir.mkdir(parents=True, exist_ok=True)
    done = read_result(job_dir)
    if done is not None:
        return done
    orphan = _runner_pid(job_dir)
    if orphan is not None:
        log.info("adopting training runner pid %s still working on %s", orphan, job_dir)
        _follow(job_dir, lambda: pid_alive(orphan), progress, poll_s)
        done = read_result(job_dir)
        if done is not None:
            return done
    job_path = job_dir / "job.json"
    job_path.write_text(job.model_dump_json(indent=2))
    run_env = dict(os.environ) | (env or {}) | {"PYTHONUNBUFFERED": "1"}
    cmd = runner_command(job, job_path)
    with (job_dir / "train.log").open("a") as train_log:
        log_start = train_log.tell()
        proc = subprocess.Popen(
            cmd,
            stdout=train_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stoppable as a whole, survives our Ctrl-C
            env=run_env,
            cwd=str(job_dir),  # the runner is found by its package name, wherever the user stands
        )
    try:
        _follow(job_dir, lambda: proc.poll() is None, progress, poll_s)
    except BaseException:
        stop_runner(proc.pid)  # interrupted: leave checkpoints for a resume, never a stray trainer
        raise
    result = read_result(job_dir)
    if proc.returncode != 0 and job.launcher.kind == "accelerate":
        _note_rank_failure(job_dir, log_start, job.launcher.num_processes)
    if proc.returncode != 0 or result is None:
        raise TrainingFailedError(
            proc.returncode if proc.returncode is not None else -1, log_tail(job_dir), str(job_dir)
        )
    return result


def _note_rank_failure(job_dir: Path, since: int, num_processes: int | None) -> None:
    """Append which rank died (and how) to train.log, so the error's last line says it."""
    path = job_dir / "train.log"
    try:
        with path.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return
    line = rank_failure(text, num_processes)
    if line:
        with path.open("a") as f:
            f.write(line + "\n")
