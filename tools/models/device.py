"""Where a model runs and in which precision.

Every choice can be forced: by argument (``model.device`` / ``model.dtype`` in kaizen.yaml) or by
the ``KAIZEN_DEVICE`` environment variable. torch is imported inside the functions so that
``import kaizen.tools.models`` stays light.
"""

from __future__ import annotations

import math
import os
from typing import Any

from kaizen.tools.errors import ConfigError

_DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
}


def pick_device(prefer: str | None = None) -> str:
    """The torch device string to use: ``prefer``, else ``$KAIZEN_DEVICE``, else auto.

    Auto (also ``"auto"`` given explicitly) is ``"cuda"`` when a CUDA device is available, else
    ``"cpu"``. ``"cuda:1"``-style indices and ``"mps"`` pass through. Asking for CUDA on a
    machine without it is a :class:`ConfigError` rather than a crash deep inside torch.
    """
    from kaizen.tools.env import env

    choice = (prefer or env().device or "auto").strip().lower()
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = choice.split(":", 1)[0]
    if kind == "cpu":
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {choice!r} was requested but torch sees no CUDA device: use device 'auto' or "
                "'cpu' (model.device in kaizen.yaml or KAIZEN_DEVICE), or install a CUDA build of torch"
            )
        return choice
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(
                f"device {choice!r} was requested but MPS is not available: use 'auto' or 'cpu'"
            )
        return choice
    raise ConfigError(f"unknown device {choice!r}: use auto, cpu, cuda (or cuda:N) or mps")


def pick_dtype(device: str, prefer: Any = None) -> Any:
    """The ``torch.dtype`` to load weights in on ``device``.

    ``prefer`` may be a ``torch.dtype`` or one of ``auto``, ``fp32``/``float32``,
    ``bf16``/``bfloat16``, ``fp16``/``float16``/``half``. Auto is bfloat16 on a CUDA device that
    supports it and float32 everywhere else (CPU matmuls in bf16 are slower than fp32 on most
    CPUs and fp16 on CPU is not worth the accuracy loss). An explicit choice is honoured as-is.
    """
    import torch

    if isinstance(prefer, torch.dtype):
        return prefer
    name = (str(prefer).strip().lower() if prefer is not None else "auto").removeprefix("torch.")
    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in _DTYPE_NAMES:
        raise ConfigError(f"unknown dtype {prefer!r}: use auto, fp32, bf16 or fp16")
    return getattr(torch, _DTYPE_NAMES[name])


def available_cpus() -> int:
    """CPUs this process may actually use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    try:  # cgroup v2 quota, e.g. "200000 100000" = 2 CPUs; "max 100000" = unlimited
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def configure_cpu_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count to the CPUs this process can really use; returns it.

    Why: torch sizes its thread pool from the machine's core count, which inside a container or
    a CI runner limited by CPU affinity / cgroup quota is often the *host's* count. More threads
    than usable cores makes every matmul fight for the same few cores (busy-waiting OpenMP
    threads), which on small models like the 135M default is several times slower than matching
    the real core count. The same happens when several processes share the cores: measured on a
    2-core box, greedy generation with the 135M model took 0.9 s for 16 tokens with 2 threads
    alone, but 5.4 s with 2 threads while another process kept one core busy (1 thread: 0.9 s
    either way). So pytest-xdist workers split the cores between them. If the user set
    ``OMP_NUM_THREADS`` (or passes ``n``) that wins.
    """
    import torch

    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            n = int(env)
        else:
            workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").strip()
            share = int(workers) if workers.isdigit() and int(workers) > 0 else 1
            n = max(1, available_cpus() // share)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
