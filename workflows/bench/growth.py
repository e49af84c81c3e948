"""``kaizen bench growth``: how a repair's cost grows with the number of traces (1k → 100k).

Run as: ``kaizen bench growth [--sizes 1000,10000,100000] [--no-calibrate] [--json]``

For each size N a fresh workspace (SQLite, the default store) gets N synthetic production traces of the
CLINC150 banking slice (``growth_traces``) — 10 intents, the model right ~82 % of the time, systematic confusions, typos
and reference numbers so no two inputs are identical, feedback on ~85 % of them with ~6 % of the
corrections poisoned — and the phases of a repair that depend on N are **measured**:

* **ingest** — ``kaizen ingest FILE --task T`` as a user runs it (a subprocess; its interpreter start-up,
  measured apart as ``cli_startup_s``, is included);
* **observe** — reading the task's traces (with their latest feedback) back from the store;
* **diagnose** — the configured brain's ``diagnose`` (the rule brain: failure taxonomy, suspect feedback
  by similarity and sentence-embedding kNN consensus);
* **synthesize** — the held-out roles (final slice, target, regression) and the training set (replay,
  hard negatives, dedup, decontamination), as the synthesize node builds them.

Training and evaluation are **extrapolated**, not run at every size: their cost is per token and per
example, so one calibration on this machine — a short LoRA SFT of the default model through the real
runner (tokens/s) and an evaluation of 64 examples (examples/s) — times the training tokens and eval
examples each size produces gives their time. The result (with the machine, the load average before
and after each phase, and the calibration) is returned and written to ``<cache>/bench/growth-<time>.json``.
Numbers are a benchmark's, never asserted in tests; the goals (≤ 60 s to ingest 100k traces, ≤ 2 min
to diagnose them) are judged on an idle machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice
from kaizen.workflows.bench.growth_traces import TASK, synthetic_traces
from kaizen.workflows.bench.machine import cpu_seconds, load_avg, machine_facts, timed

Progress = Callable[[str], None]
DEFAULT_SIZES = (1_000, 10_000, 100_000)


def _kaizen(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "kaizen"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kaizen.workflows.cli"]
    done = subprocess.run(
        [*cmd, "-w", str(ws), *args],
        check=False,
        capture_output=True,
        text=True,
        env=os.environ | {"KAIZEN_DB_URL": ""},
    )
    if done.returncode != 0:
        raise RuntimeError(f"kaizen {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def _tokens_per_example(
    task: Any, items: list[Any], tokenizer_dir: Path | None, sample: int = 400
) -> float | None:
    """Mean tokens of a rendered training chat (prompt + completion), from a sample."""
    if not items or tokenizer_dir is None:
        return None
    from transformers import AutoTokenizer

    from kaizen.tools.data import sft_rows

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rows = sft_rows(task, items[:sample])
    texts = [tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    sizes = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    return sum(sizes) / len(sizes)


class _Stopped(Exception):
    pass


def _with_time_limit(fn: Callable[[], Any], limit_s: float | None) -> Any:
    """``fn()``, stopped with ``_Stopped`` after ``limit_s`` seconds (main thread, POSIX; no limit elsewhere)."""
    import signal
    import threading

    if (
        not limit_s
        or threading.current_thread() is not threading.main_thread()
        or not hasattr(signal, "SIGALRM")
    ):
        return fn()

    def stop(*_: Any) -> None:
        raise _Stopped

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class _memory_cap:  # noqa: N801 - a context manager
    """Within the block, this process may grow by at most ``gb`` GiB of address space (Linux ``RLIMIT_AS``):
    a phase that wants more fails with MemoryError here instead of waking the kernel's OOM killer, which
    on a shared machine may kill someone else's process."""

    def __init__(self, gb: float | None) -> None:
        self.gb = gb
        self.old: tuple[int, int] | None = None

    def __enter__(self) -> _memory_cap:
        if not self.gb:
            return self
        try:
            import resource

            vm = next(
                int(line.split()[1]) * 1024
                for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmSize:")
            )
            self.old = resource.getrlimit(resource.RLIMIT_AS)
            cap = vm + int(self.gb * 2**30)
            hard = self.old[1]
            resource.setrlimit(
                resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
            )
        except (ImportError, OSError, StopIteration, ValueError):
            self.old = None  # not Linux: no cap
        return self

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, self.old)


def _confusion_clusters(traces: list[Any]) -> dict[str, list[str]]:
    """gold ← predicted groups of the corrected failures: what synthesize needs when diagnose was stopped."""
    out: dict[str, list[str]] = {}
    for t in traces:
        if t.verdict == "fail" and t.correction:
            out.setdefault(f"{t.correction} ← {t.output}", []).append(t.id)
    return out


def measure_size(
    n: int,
    root: Path,
    tokenizer_dir: Path | None,
    progress: Progress,
    seed: int = 0,
    diagnose_limit_s: float | None = None,
    diagnose_memory_gb: float | None = 8.0,
) -> dict[str, Any]:
    """Ingest, observe, diagnose and synthesize at ``n`` traces; sizes of what training and evaluation would get.

    ``diagnose_limit_s`` / ``diagnose_memory_gb``: stop a diagnosis that runs longer or wants more memory
    (recorded as stopped, with why); synthesize then runs on the failures' gold ← predicted groups, with no
    suspects excluded."""
    from kaizen.agent.brain import make_brain
    from kaizen.agent.state import Plan
    from kaizen.tools.datasets.splits import build_splits
    from kaizen.tools.datasets.training import build_training_set
    from kaizen.tools.workspace import find_workspace

    ws_dir = root / f"ws-{n}"
    shutil.rmtree(ws_dir, ignore_errors=True)
    records, labels = synthetic_traces(n, seed)
    logs = root / f"traces-{n}.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in records))
    _kaizen(ws_dir, "init", str(ws_dir))
    _kaizen(
        ws_dir,
        "task",
        "add",
        TASK,
        "--kind",
        "classification",
        "--labels",
        ",".join(labels),
        "--system-prompt",
        SYSTEM_PROMPT,
    )
    out: dict[str, Any] = {"traces": n, "log_mb": round(logs.stat().st_size / 2**20, 1)}

    progress(f"growth {n}: ingest")
    done, out["ingest"] = timed(lambda: _kaizen(ws_dir, "ingest", str(logs), "--task", TASK, "--json"))
    out["ingest"]["imported"] = json.loads(done.stdout).get("imported")
    ws = find_workspace(ws_dir)
    task = ws.store.get_task(TASK)
    progress(f"growth {n}: observe")
    traces, out["observe"] = timed(lambda: ws.store.traces(TASK))
    progress(f"growth {n}: diagnose")
    brain = make_brain(ws)
    cpu0, t0, load0 = cpu_seconds(), time.perf_counter(), load_avg()
    try:
        with _memory_cap(diagnose_memory_gb):
            diag, out["diagnose"] = timed(
                lambda: _with_time_limit(lambda: brain.diagnose(task, traces), diagnose_limit_s)
            )
        out["diagnose"].update(
            failures=diag.n_failures, clusters=len(diag.clusters), suspects=len(diag.suspects)
        )
        clusters = {k.key: k.trace_ids for k in diag.clusters if k.fixable}
        confused_with = {
            tid: k.key.split(" ← ")[1]
            for k in diag.clusters
            if k.kind == "confusion" and " ← " in k.key
            for tid in k.trace_ids
        }
        excluded = diag.suspect_ids
    except (_Stopped, MemoryError) as e:
        why = (
            f"time limit {diagnose_limit_s:g} s"
            if isinstance(e, _Stopped)
            else f"out of memory under a {diagnose_memory_gb:g} GiB cap ({type(e).__name__}: {str(e)[:200]})"
        )
        out["diagnose"] = {
            "s": None,
            "stopped": why,
            "cpu_s": round(cpu_seconds() - cpu0, 3),
            "load_before": load0,
            "load_after": load_avg(),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        progress(f"growth {n}: diagnose stopped ({why}); synthesize on gold ← predicted groups")
        clusters = _confusion_clusters(traces)
        confused_with = {tid: key.split(" ← ")[1] for key, ids in clusters.items() for tid in ids}
        excluded = set()
    progress(f"growth {n}: synthesize")
    plan = Plan(iteration=1)
    repair = getattr(ws.settings, "repair", None)
    final_fraction = getattr(repair, "final_fraction", 0.15)

    def synthesize() -> tuple[Any, list[Any], dict[str, Any]]:
        splits = build_splits(
            task, traces, excluded=excluded, clusters=clusters, final_fraction=final_fraction
        )
        items, stats = build_training_set(
            splits,
            replay_fraction=plan.replay_fraction,
            failure_weight=plan.failure_weight,
            seed=1,
            eval_sets=[splits.final],
            confused_with=confused_with,
            hard_negatives_per_case=plan.hard_negatives_per_case,
        )
        return splits, items, stats

    (splits, items, stats), out["synthesize"] = timed(synthesize)
    out["synthesize"]["dropped_contaminated"] = stats.get("dropped_contaminated")
    held_out = len(splits.target) + len(splits.regression) + len(splits.final)
    tokens = _tokens_per_example(task, items, tokenizer_dir)
    out["synthesize"].update(
        train_examples=len(items),
        target=len(splits.target),
        regression=len(splits.regression),
        final=len(splits.final),
    )
    out["train_tokens_per_iteration"] = round(len(items) * tokens * plan.epochs) if tokens else None
    out["tokens_per_example"] = round(tokens, 1) if tokens else None
    out["eval_examples_per_iteration"] = 2 * held_out  # incumbent and candidate on the same suites
    ws.store.close()
    shutil.rmtree(ws_dir, ignore_errors=True)
    logs.unlink()
    return out


def calibrate(base: Path, root: Path, progress: Progress, *, steps: int = 8) -> dict[str, Any]:
    """This machine's training tokens/s (LoRA SFT of the default model, real runner) and eval examples/s."""
    from kaizen.tools.data import sft_rows, write_items
    from kaizen.tools.evaluate.backends import TransformersBackend
    from kaizen.tools.evaluate.run import evaluate
    from kaizen.tools.schema import TaskSpec
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob
    from kaizen.workflows.bench.clinc import rows, to_items

    data = load_slice()
    task = TaskSpec(
        name=TASK, kind="classification", labels=list(data["labels"]), system_prompt=SYSTEM_PROMPT
    )
    items = to_items(rows("train", per_label=8, seed=3))
    job_dir = root / "calibration-sft"
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    write_items(job_dir / "data.jsonl", sft_rows(task, items))
    progress(f"growth: calibrating training ({steps} LoRA SFT steps of the default model)")
    job = TrainJob(
        kind="sft",
        base_dir=base,
        data_path=job_dir / "data.jsonl",
        output_dir=job_dir,
        max_steps=steps,
        batch_size=8,
        lora=LoraSpec(r=16, alpha=32),
        save_steps=10_000,
        learning_rate=1e-3,
    )
    result, train_t = timed(lambda: run_job(job))
    progress("growth: calibrating evaluation (64 examples)")
    backend = TransformersBackend(base, None)
    eval_items = to_items(rows("test", per_label=7, seed=4))[:64]
    _, eval_t = timed(
        lambda: evaluate(
            task,
            eval_items,
            backend,
            model_version="base",
            outputs_path=root / "calibration-eval.jsonl",
            mode="prefix",
        )
    )
    return {
        "train_tokens_per_s": result.get("tokens_per_s"),
        "train_steps": result.get("steps"),
        "train_tokens": result.get("train_tokens"),
        "train": train_t,
        "eval_examples": len(eval_items),
        "eval_examples_per_s": round(len(eval_items) / eval_t["s"], 2),
        "eval": eval_t,
    }


def bench_growth(
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    *,
    calibrate_costs: bool = True,
    train_tokens_per_s: float | None = None,
    eval_examples_per_s: float | None = None,
    progress: Progress = print,
    out_dir: Path | None = None,
    seed: int = 0,
    diagnose_limit_s: float | None = None,
    diagnose_memory_gb: float | None = 8.0,
) -> dict[str, Any]:
    """Measure the N-dependent phases at each size; extrapolate training and evaluation from calibrated costs."""
    from kaizen.tools.models.resolve import resolve_base

    root = Path(tempfile.mkdtemp(prefix="kaizen-growth-"))
    try:
        base = resolve_base("smollm2-135m")
        t0 = time.perf_counter()
        _kaizen(root / "startup", "--help")
        startup = round(time.perf_counter() - t0, 2)
        result: dict[str, Any] = {
            "machine": machine_facts("cpu", None),
            "cli_startup_s": startup,
            "sizes": [],
            "command": "kaizen bench growth --sizes " + ",".join(map(str, sizes)),
        }
        for n in sizes:
            result["sizes"].append(
                measure_size(n, root, base, progress, seed, diagnose_limit_s, diagnose_memory_gb)
            )
            row = result["sizes"][-1]
            progress(
                f"growth {n}: "
                + ", ".join(
                    f"{k} {'stopped' if row[k]['s'] is None else str(row[k]['s']) + ' s'} "
                    f"(cpu {row[k]['cpu_s']} s)"
                    for k in ("ingest", "observe", "diagnose", "synthesize")
                )
            )
        cal: dict[str, Any] = {}
        if calibrate_costs and (train_tokens_per_s is None or eval_examples_per_s is None):
            cal = calibrate(base, root, progress)
        tps = train_tokens_per_s or cal.get("train_tokens_per_s")
        eps = eval_examples_per_s or cal.get("eval_examples_per_s")
        result["calibration"] = cal | {"train_tokens_per_s_used": tps, "eval_examples_per_s_used": eps}
        for row in result["sizes"]:
            row["train_s_extrapolated"] = (
                round(row["train_tokens_per_iteration"] / tps, 1)
                if tps and row["train_tokens_per_iteration"]
                else None
            )
            row["eval_s_extrapolated"] = round(row["eval_examples_per_iteration"] / eps, 1) if eps else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from kaizen.tools.models import cache_dir

    bench_dir = out_dir or cache_dir() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    path = bench_dir / f"growth-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    result["saved_to"] = str(path)
    return result
