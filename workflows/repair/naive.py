"""The naive baseline: what teams do by hand — retrain on every correction as given, promote anyway.

No triage (poisoned and off-domain corrections included), no replay, no held-out target, no gate.
It exists to show what kaizen's triage and gate are worth, measured on the same data
(``kaizen repair --strategy naive``). Its ``before``/``after`` are measured on its own training
failures (``target``) and the passing traces (``regression``) — the honest comparison is on a
gold held-out set (see the demo).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from kaizen.tools import registry
from kaizen.tools.data import expected_from_feedback
from kaizen.tools.datasets.splits import trace_item
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.evaluate.run import dataset_id, evaluate
from kaizen.tools.gate import compare
from kaizen.tools.lock import task_lock
from kaizen.tools.store.tables import RunRow
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import LoraSpec
from kaizen.tools.versions import build_job, make_backend, progress_printer, record_eval, register_trained
from kaizen.tools.workspace import Workspace


def run_naive(ws: Workspace, task_name: str, progress: Callable[[str], None] | None = None) -> RunRow:
    """Train on every correction, promote without a gate; holds the task's lock like any run."""
    run_id = uuid.uuid4().hex[:12]
    with task_lock(ws.store, task_name, run_id):
        return _naive(ws, task_name, run_id, progress)


def _naive(ws: Workspace, task_name: str, run_id: str, progress: Callable[[str], None] | None) -> RunRow:
    say = progress or (lambda _m: None)
    task = ws.store.get_task(task_name)
    incumbent = registry.resolve(ws.store, "production", task_name)
    run = RunRow(
        id=run_id,
        task=task_name,
        workflow="repair-naive",
        status="running",
        thread_id=run_id,
        config={"strategy": "naive"},
    )
    ws.store.save_run(run)
    out = ws.artifact_dir("runs", run_id)
    traces = ws.store.traces(task_name)
    # every correction as given — except one the task cannot even score (an extraction correction that is
    # not JSON): there is no reply to teach, so even a hand-run retrain would drop it
    usable = [t for t in traces if expected_from_feedback(task, t.gold)[1] is None]  # no feedback: no gold
    train = [
        trace_item(task, t, "trace", "naive: every correction, as given")
        for t in usable
        if t.verdict == "fail" and t.correction
    ]
    passes = [trace_item(task, t, "trace", "passing trace") for t in usable if t.verdict == "pass"]
    say(f"naive: training on all {len(train)} corrections as given (no triage, no replay)")
    job = build_job(
        ws,
        task,
        train,
        kind="sft",
        start=incumbent,
        job_dir=out / "job",
        from_incumbent=incumbent.adapter_path is not None,
        epochs=3,
        learning_rate=5e-4,
        lora=LoraSpec(r=16, alpha=32),
    )
    t_train = time.monotonic()
    result = run_job(job, progress_printer() if progress else None)
    t_eval = time.monotonic()
    cand = register_trained(
        ws, task, job, result, name=f"{task_name}-{run_id[:8]}-naive", parent=incumbent, items=train
    )
    scores: dict[str, dict[str, Any]] = {}
    for version in (incumbent.name, cand.name):
        backend = make_backend(ws, ws.store.get_model_version(version))
        # Corrections outside the label set are trained on (that is the naive strategy) but cannot
        # be scored, so they are left out of its measurement.
        scorable = [
            it
            for it in train
            if not task.labels or normalize_label(str(it.expected), task.labels) is not None
        ]
        for suite, items in (("target", scorable), ("regression", passes)):
            if not items:
                continue
            say(f"naive: evaluating {version} on {suite} ({len(items)})")
            rep = evaluate(
                task,
                items,
                backend,
                model_version=version,
                suite=suite,
                outputs_path=out / "evals" / f"{version}--{suite}.jsonl",
            )
            record_eval(ws, rep, dataset_id(items), run_id=run_id)
            scores[f"{version}/{suite}"] = {"score": rep.score, "correct": rep.correct_by_id}
    phases = {"train": round(t_eval - t_train, 1), "evaluate": round(time.monotonic() - t_eval, 1)}
    spent = round(sum(phases.values()), 1)
    from kaizen.tools.serve.hotswap import promote_and_swap  # the one promotion path: live servers swap first

    promote_and_swap(ws.store, task_name, cand.name, actor="naive strategy (no gate)", note=f"run {run_id}")
    say(f"naive: promoted {cand.name} without a gate")

    def get(v: str, s: str) -> float | None:
        return (scores.get(f"{v}/{s}") or {}).get("score")

    reg = scores.get(f"{incumbent.name}/regression"), scores.get(f"{cand.name}/regression")
    tgt = scores.get(f"{incumbent.name}/target"), scores.get(f"{cand.name}/target")
    broken = compare("regression", reg[0]["correct"], reg[1]["correct"]).newly_wrong if all(reg) else []
    fixed = compare("target", tgt[0]["correct"], tgt[1]["correct"]).newly_right if all(tgt) else []
    run.status = "promoted"
    run.summary = {
        "run_id": run_id,
        "status": "promoted",
        "promoted": True,
        "incumbent": incumbent.name,
        "candidate": cand.name,
        "verdict": {"passed": True, "reasons": ["naive strategy: no gate, promoted anyway"]},
        "iterations": 1,
        "before": {"target": get(incumbent.name, "target"), "regression": get(incumbent.name, "regression")},
        "after": {"target": get(cand.name, "target"), "regression": get(cand.name, "regression")},
        "new_regressions": len(broken),
        "fixed": len(fixed),
        "excluded_suspect": [],
        "train_tokens": result.get("train_tokens"),
        # the agent's shape (`kaizen repair --json` → seconds.total / by_phase / by_step), so one reader fits both
        "seconds": {
            "total": round(time.time() - run.created_at.timestamp(), 1) if run.created_at.tzinfo else spent,
            "by_phase": phases,
            "by_step": {"naive": spent},
        },
    }
    run.report_path = _report(out, run, incumbent.name)
    ws.store.save_run(run)
    return run


def _report(out: Any, run: RunRow, incumbent: str) -> str | None:
    """report.json + report.html like an agent run; a report failure never costs the run its outcome."""
    import logging

    from kaizen.workflows.report.build import write_report

    try:
        json_path, _ = write_report(
            out,
            {
                "run": {"id": run.id, "task": run.task, "status": run.status, "config": run.config},
                "summary": run.summary,
                "incumbent": incumbent,
                "events": [],
            },
        )
        return str(json_path)
    except Exception:  # noqa: BLE001 - the report is a view; the promotion already happened
        logging.getLogger(__name__).exception("naive: report failed")
        return None
