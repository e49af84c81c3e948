"""Measuring versions on suites and comparing them: shared by the evaluate, gate and refit nodes.

Results are cached per (label, suite) in the run directory, so a resumed run and later iterations never
re-evaluate a version on a suite it was already measured on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen.agent.context import RunContext, label, run_dir
from kaizen.agent.state import RepairState
from kaizen.tools.data import load_items
from kaizen.tools.evaluate.run import dataset_id
from kaizen.tools.evaluate.run import evaluate as run_eval
from kaizen.tools.gate import SuiteComparison, compare
from kaizen.tools.schema import EvalItem
from kaizen.tools.skills import get_skill
from kaizen.tools.versions import make_backend, record_eval


def measure(
    state: RepairState, c: RunContext, version: str, skill_version: int | None, suites: dict[str, str]
) -> dict[str, Any]:
    """``"label/suite" → {score, n, correct, decoding …}`` for ``version`` (with its skill) on every suite."""
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    rd = run_dir(state)
    skill = get_skill(ws.store, task.name, skill_version) if skill_version else None
    name = label(version, skill_version)
    out: dict[str, Any] = {}
    backend = None
    for suite, path in suites.items():
        key = f"{name}/{suite}"
        cache = rd.eval_cache(name, suite)
        if cache.exists():
            out[key] = json.loads(cache.read_text())
            continue
        items: list[EvalItem] = (
            load_items(Path(path), task) if Path(path).exists() and Path(path).stat().st_size else []
        )
        if not items:
            out[key] = {"score": None, "n": 0, "correct": {}, "decoding": None}
            continue
        if backend is None:
            backend = make_backend(ws, ws.store.get_model_version(version))
        c.say(f"evaluate: {name} on {suite} ({len(items)} examples)")
        report = run_eval(
            task,
            items,
            backend,
            model_version=version,
            suite=suite,
            skill=skill,
            mode=c.eval_mode,  # type: ignore[arg-type]
            outputs_path=rd.eval_outputs(name, suite),
        )
        record_eval(ws, report, dataset_id(items), run_id=state["run_id"])
        out[key] = {
            "score": report.score,
            "n": report.n,
            "correct": report.correct_by_id,
            "decoding": report.decoding,
            "metric": report.metric,
            "outputs_path": report.outputs_path,
            "confusion": report.metrics.get("confusion"),
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out[key], default=str))
    return out


def comparison(
    evals: dict[str, Any], a: str, b: str, suite: str, *, ids: set[str] | None = None, name: str | None = None
) -> SuiteComparison | None:
    """``a`` vs ``b`` on ``suite`` (optionally restricted to ``ids``); None when either was not measured."""
    ea, eb = evals.get(f"{a}/{suite}"), evals.get(f"{b}/{suite}")
    if not ea or not eb or not ea.get("n") or not eb.get("n"):
        return None
    ca, cb = ea["correct"], eb["correct"]
    if ids is not None:
        ca, cb = {k: v for k, v in ca.items() if k in ids}, {k: v for k, v in cb.items() if k in ids}
        return compare(name or suite, ca, cb)
    return compare(name or suite, ca, cb, ea["score"], eb["score"])
