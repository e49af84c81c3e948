"""evaluate: incumbent and candidate on the same suites, same backend and decoding.

Results are cached per (version, suite) in the run directory, so a resumed run and later
iterations do not re-evaluate the incumbent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen.agent.context import candidate_label, event, incumbent_label, label, progress, run_dir, workspace
from kaizen.tools.data import load_items
from kaizen.tools.evaluate.run import dataset_id
from kaizen.tools.evaluate.run import evaluate as run_eval
from kaizen.tools.schema import EvalItem
from kaizen.tools.skills import get_skill
from kaizen.tools.versions import make_backend, record_eval
from langchain_core.runnables import RunnableConfig


def suites_for(state: dict[str, Any], config: RunnableConfig) -> dict[str, str]:
    """target, regression, plus the regression suites recorded at the incumbent's promotion."""
    ws = workspace(config)
    suites = {"target": state["splits"]["target"], "regression": state["splits"]["regression"]}
    inc = ws.store.get_model_version(state["incumbent"])
    for name, path in (inc.metrics.get("suites") or {}).items():
        if Path(path).exists() and name not in suites:
            suites[name] = path
    for i, path in enumerate(config["configurable"].get("extra_eval_sets", [])):
        suites[f"extra{i + 1}"] = path
    return suites


def _eval_version(state: dict[str, Any], config: RunnableConfig, version: str, skill_version: int | None,
                  suites: dict[str, str]) -> dict[str, Any]:
    ws = workspace(config)
    task = ws.store.get_task(state["task"])
    skill = get_skill(ws.store, task.name, skill_version) if skill_version else None
    name = label(version, skill_version)
    out: dict[str, Any] = {}
    backend = None
    for suite, path in suites.items():
        key = f"{name}/{suite}"
        cache = run_dir(state) / "evals" / f"{name}--{suite}.json"
        if cache.exists():
            out[key] = json.loads(cache.read_text())
            continue
        items: list[EvalItem] = load_items(Path(path), task) if Path(path).stat().st_size else []
        if not items:
            out[key] = {"score": None, "n": 0, "correct": {}, "decoding": None}
            continue
        if backend is None:
            backend = make_backend(ws, ws.store.get_model_version(version))
        progress(config, f"evaluate: {name} on {suite} ({len(items)} examples)")
        report = run_eval(task, items, backend, model_version=version, suite=suite, skill=skill,
                          outputs_path=run_dir(state) / "evals" / f"{name}--{suite}.jsonl")
        record_eval(ws, report, dataset_id(items), run_id=state["run_id"])
        out[key] = {"score": report.score, "n": report.n, "correct": report.correct_by_id, "decoding": report.decoding,
                    "metric": report.metric, "outputs_path": report.outputs_path,
                    "confusion": report.metrics.get("confusion")}
        cache.write_text(json.dumps(out[key], default=str))
    return out


def evaluate(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    suites = suites_for(state, config)
    evals = dict(state.get("evals") or {})
    evals.update(_eval_version(state, config, state["incumbent"], state.get("incumbent_skill"), suites))
    evals.update(_eval_version(state, config, state["candidate"], state.get("candidate_skill"), suites))
    inc, cand = incumbent_label(state), candidate_label(state)
    scores = {k: v["score"] for k, v in evals.items() if k.startswith(cand + "/") or k.startswith(inc + "/")}
    return {"evals": evals, "events": [event("evaluate", iteration=state["iteration"], scores=scores)]}
