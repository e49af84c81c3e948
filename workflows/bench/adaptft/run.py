"""``kaizen bench adaptft``: does the agent (triage + gate + rollback) beat naive retraining as the
feedback gets more poisoned? AdaptFT-Bench's staged protocol, run for real on kaizen's own tools.

A deployed v1 (a brief LoRA SFT with deliberate gaps, cached under the model cache keyed by data
and recipe) meets three stages of production traffic with 15 / 25 / 40 % poison. Two arms, each in
its own workspace, run *their own* production model on the same perturbed inputs and get feedback
(the naive arm's corrupted the AdaptFT way; see ``feedback``). The agent arm ingests its logs and runs
``repair.start(approve=True, max_iterations=2)`` (the gate keeps production unless a candidate passes); the naive arm runs ``run_naive`` once per stage (retrain on
every correction, promote anyway). After each stage both are scored on the held-out set, the union
of all stages' 30 % test splits on clean gold. Per stage: ``first`` (the agent's first candidate of
the stage), ``best`` (the best version the agent promoted so far, v1 included), ``naive``, ``gap``
(best − naive) and ``regressions`` (right→wrong flips of the agent's production against the
previous stage's production, on the held-out examples both were scored on: the current set).

Presets: see ``prepare``. Results go to ``<out>/results.json`` and ``<out>/adaptft.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError
from kaizen.workflows.bench.adaptft.arms import ARMS, run_stage
from kaizen.workflows.bench.adaptft.plot import plot
from kaizen.workflows.bench.adaptft.prepare import (
    Preset,
    Progress,
    base_dir,
    check_request,
    make_scenario,
    make_workspace,
    train_v1,
)
from kaizen.workflows.bench.adaptft.scenarios import Scenario
from kaizen.workflows.bench.adaptft.scorer import Scorer
from kaizen.workflows.bench.adaptft.stages import Stage, build_stages


def _say(progress: Progress | None, t0: float) -> Progress:
    def say(msg: str) -> None:
        if progress:
            m, s = divmod(int(time.time() - t0), 60)
            progress(f"[adaptft {m:02d}:{s:02d}] {msg}")

    return say


@contextlib.contextmanager
def _own_workspaces() -> Iterator[None]:
    """The bench makes its own two workspaces: a KAIZEN_HOME/KAIZEN_DB_URL from the shell would
    point both arms at one store, so they are unset for the duration of the run."""
    saved = {k: os.environ.pop(k) for k in ("KAIZEN_HOME", "KAIZEN_DB_URL") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def bench_adaptft(
    scenario: str = "clinc",
    preset: str = "small",
    *,
    seed: int = 0,
    out_dir: Path | None = None,
    base: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the staged benchmark; returns (and saves) ``{"stages": [...], ...}``."""
    from kaizen.tools.models import cache_dir

    t0 = time.time()
    say = _say(progress, t0)
    p = check_request(scenario, preset)
    _preload()
    out = (out_dir or cache_dir() / "bench" / f"adaptft-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: pass a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    sc = make_scenario(scenario, p, seed)
    stages = build_stages(sc, p.per_stage, seed)
    say(
        f"{scenario}/{preset}, seed {seed}: v1 on {len(sc.v1_items)} examples; {len(stages)} stages × {p.per_stage} inputs "
        f"(poisoned {[s.poisoned for s in stages]}); out {out}"
    )
    with _own_workspaces():
        bdir = base_dir(p, base)
        v1 = train_v1(sc, p, bdir, say)
        t_setup = time.time() - t0
        ctx: dict[str, Any] = {
            "sc": sc,
            "preset": p,
            "out": out,
            "seed": seed,
            "scorer": Scorer(sc, out, p.eval_batch),
            "agent": make_workspace(out / "agent", sc, bdir, v1),
            "naive": make_workspace(out / "naive", sc, bdir, v1),
            "oracle": make_workspace(out / "oracle", sc, bdir, v1),
            "tests": [],
            "promoted": ["v1"],
            "poisoned_ids": {f"s{s.index}-{it.id}" for s in stages for it in s.logs if it.poisoned},
        }
        results: list[dict[str, Any]] = []
        for stage in stages:
            results.append(run_stage(stage, ctx, say))
            # Saved after every stage: a long run that dies late still leaves what it measured.
            data = _results(
                results, stages, sc, p, seed, bdir, out, t0, t_setup, complete=stage is stages[-1]
            )
            (out / "results.json").write_text(json.dumps(data, indent=2))
    data["plot_path"] = plot(data, out / "adaptft.png")
    (out / "results.json").write_text(json.dumps(data, indent=2))
    say(f"done in {data['seconds']['total']:.0f}s → {data['results_path']}")
    return data


def _preload() -> None:
    """Import what the stages need before the first one: a run lasts many minutes, and it should run
    one version of the code throughout (not pick up a half-saved edit at stage 3)."""
    import kaizen.tools.evaluate.run  # noqa: F401
    import kaizen.tools.logs  # noqa: F401
    import kaizen.tools.versions  # noqa: F401
    import kaizen.workflows.repair.job  # noqa: F401
    import kaizen.workflows.repair.naive  # noqa: F401


def _results(
    results: list[dict[str, Any]],
    stages: list[Stage],
    sc: Scenario,
    p: Preset,
    seed: int,
    bdir: Path,
    out: Path,
    t0: float,
    t_setup: float,
    complete: bool,
) -> dict[str, Any]:
    return {
        "stages": [r["row"] for r in results],
        "scenario": sc.name,
        "preset": p.name,
        "seed": seed,
        "complete": complete,
        "poison_rates": [s.poison_rate for s in stages],
        "base": str(bdir),
        "citation": sc.citation,
        "sizes": {
            "v1_train": len(sc.v1_items),
            "per_stage": p.per_stage,
            "logs_per_stage": len(stages[0].logs),
            "test_per_stage": len(stages[0].test),
            "max_iterations": p.max_iterations,
        },
        "details": [r["detail"] for r in results],
        "seconds": {"setup": round(t_setup, 1), "total": round(time.time() - t0, 1)},
        "out": str(out),
        "workspaces": {arm: str(out / arm) for arm in ARMS},
        "results_path": str(out / "results.json"),
        "plot_path": None,
    }
