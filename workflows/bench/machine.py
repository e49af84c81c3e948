"""What every benchmark records about the machine it ran on, and how it times what it measures.

Absolute numbers move with whatever else the machine is doing, so the benchmarks record the load
average beside them (``load_avg``), the machine's facts (``machine_facts``), a matmul peak as the
denominator of MFU figures (``matmul_peak``), best-of step times from a training job's
``metrics.jsonl`` (``step_stats``), wall and CPU seconds of a phase (``timed``), and quote ratios
measured within one run (``ratio``); ``save_result`` writes the result where the benchmarks keep them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def load_avg() -> float | None:
    """The 1-minute load average: other work on the machine lowers every absolute number."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_facts(device: str, dtype: Any) -> dict[str, Any]:
    import torch

    from kaizen.tools.models import available_cpus

    m: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores_used": torch.get_num_threads(),
        "cores_available": available_cpus(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "python": platform.python_version(),
        **_versions(),
    }
    if device.startswith("cuda"):
        m["gpu"] = torch.cuda.get_device_name(0)
    return m


def matmul_peak(device: str, dtype: Any, *, n: int | None = None, reps: int = 5) -> dict[str, Any]:
    """Best-of-``reps`` square matmul rate in GFLOP/s (2·n³ FLOPs per product)."""
    import torch

    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b  # warm-up (thread pool, kernels)
    sync()
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    del a, b
    return {"n": n, "reps": reps, "best_s": round(best, 4), "gflops": round(2 * n**3 / best / 1e9, 2)}


def step_stats(metrics: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Per-step timing from metrics.jsonl, the first logged step excluded (warm-up, model load).

    Mean figures cover the whole window; ``best_*`` take the fastest single step, like the matmul
    peak: other load on the machine only ever slows a step down.
    """
    steps = sorted((m for m in metrics if "loss" in m and "train_runtime" not in m), key=lambda m: m["step"])
    if len(steps) < 2:
        raise RuntimeError(f"need at least 2 logged steps to time training, got {len(steps)}")
    first, last = steps[0], steps[-1]
    n = last["step"] - first["step"]
    secs = last["elapsed_s"] - first["elapsed_s"]
    toks = float(last.get("num_tokens") or 0) - float(first.get("num_tokens") or 0)
    per_step = [
        (b["elapsed_s"] - a["elapsed_s"], float(b.get("num_tokens") or 0) - float(a.get("num_tokens") or 0))
        for a, b in zip(steps, steps[1:], strict=False)
        if b["step"] - a["step"] == 1 and b["elapsed_s"] > a["elapsed_s"]
    ]
    best_s = min((dt for dt, _ in per_step), default=secs / n)
    cpu = {}
    if "cpu_s" in first and "cpu_s" in last:  # runner's process CPU seconds: robust to other load
        cpu = {
            "cpu_s_per_step": round((last["cpu_s"] - first["cpu_s"]) / n, 3),
            "cpu_s_per_example": round((last["cpu_s"] - first["cpu_s"]) / (n * batch), 4),
        }
    best_tps = max((tk / dt for dt, tk in per_step if tk), default=toks / secs if secs > 0 else 0.0)
    return {
        "steps_timed": n,
        "s_per_step": round(secs / n, 3),
        "best_step_s": round(best_s, 3),
        "step_s": [round(dt, 2) for dt, _ in per_step],
        "s_per_example": round(secs / (n * batch), 4),
        "best_s_per_example": round(best_s / batch, 4),
        "tokens_per_s": round(toks / secs, 2) if secs > 0 else None,
        "best_tokens_per_s": round(best_tps, 2),
        "tokens_per_example": round(toks / (n * batch), 1),
        **cpu,
        "first_step_at_s": first["elapsed_s"],  # from runner start: imports, model load, first step
        "final_loss": last.get("loss"),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (``kaizen ingest`` runs as one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """``fn()`` and its wall and CPU seconds. On a shared machine CPU seconds are the steadier figure."""
    load0, cpu0, t0 = load_avg(), cpu_seconds(), time.perf_counter()
    value = fn()
    return value, {
        "s": round(time.perf_counter() - t0, 3),
        "cpu_s": round(cpu_seconds() - cpu0, 3),
        "load_before": load0,
        "load_after": load_avg(),
    }


def save_result(data: dict[str, Any], name: str, started: float, out_dir: Path | None) -> Path:
    """Write ``data`` (with its ``saved_to``) to ``<out_dir or cache>/bench/<name>-<started>.json``."""
    from kaizen.tools.models import cache_dir

    folder = Path(out_dir) if out_dir is not None else cache_dir() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.json"
    data["saved_to"] = str(path)
    path.write_text(json.dumps(data, indent=2))
    return path
