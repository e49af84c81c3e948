"""Launch a training job as a subprocess, show progress, survive kills.

``run_job`` is idempotent: a finished job (``result.json`` present) returns its result at once; a
job whose runner is still alive from an earlier, killed launcher is *adopted* (we wait for it
instead of starting a second trainer); otherwise the runner starts and resumes from the newest
checkpoint. The runner gets its own process group so the launcher can stop it cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.errors import TrainingFailedError
from kaizen.tools.proc import pid_alive
from kaizen.tools.train.spec import TrainJob

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


def run_job(job: TrainJob, progress: Progress | None = None, *, poll_s: float = 1.0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run (or resume, or adopt) a training job; returns ``result.json``'s content."""
    job_dir = job.output_dir
    job_dir.mkdir(parents=True, exist_ok=True)
    done = read_result(job_dir)
    if done is not None:
        return done
    orphan = _runner_pid(job_dir)
    if orphan is not None:
        print(f"kaizen: adopting training runner pid {orphan} still working on {job_dir}", file=sys.stderr)
        _follow(job_dir, lambda: pid_alive(orphan), progress, poll_s)
        done = read_result(job_dir)
        if done is not None:
            return done
    job_path = job_dir / "job.json"
    job_path.write_text(job.model_dump_json(indent=2))
    run_env = dict(os.environ) | (env or {}) | {"PYTHONUNBUFFERED": "1"}
    with (job_dir / "train.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kaizen.tools.train.runner", str(job_path)],
            stdout=log,
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
    if proc.returncode != 0 or result is None:
        raise TrainingFailedError(proc.returncode if proc.returncode is not None else -1, log_tail(job_dir), str(job_dir))
    return result
