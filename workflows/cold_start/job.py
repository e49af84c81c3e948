"""Cold start: from a task description and some examples to a trained, gated, promoted version.

``start`` reads the task file, builds a training set and a held-out eval set (stratified,
decontaminated: the eval set is never trained on), measures the base model on it, then tries up
to ``max_attempts`` pipelines chosen by ``cold_start_policy.next_attempt`` — each a real
train-and-evaluate run, kept with its score — and gates the best one against the base
(the ``cold-start`` preset: never worse than the base on the held-out set).

Everything a run learns is written before the next step starts (data files, one record per
attempt, job directories that resume from their last checkpoint), so ``kaizen runs resume`` after
a kill continues where it stopped instead of starting again.

The task file and the split live in ``data``, one attempt (train, evaluate, record) in ``attempts``,
the choice of the next pipeline in ``policy``, the HTML report in ``report``; this module drives a run.
"""

from __future__ import annotations

import getpass
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from kaizen.tools.data import load_items, write_items
from kaizen.tools.errors import ConfigError, NotFoundError
from kaizen.tools.gate import compare, decide, gate_config
from kaizen.tools.lock import task_lock
from kaizen.tools.run_record import tracked
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import Workspace
from kaizen.workflows.cold_start.attempts import (
    Progress,
    base_version,
    evaluate_on,
    run_attempt,
    save_attempt,
    say,
    small_metrics,
)
from kaizen.workflows.cold_start.data import check_labels, load_task_file, seed_items, split_data
from kaizen.workflows.cold_start.policy import Attempt, next_attempt


# ---------------------------------------------------------------------------------------- run
def start(
    ws: Workspace,
    task_file: Path,
    *,
    seed_data: Path | None = None,
    dataset: Path | None = None,
    eval_set: Path | None = None,
    approve: bool = False,
    max_attempts: int | None = None,
    progress: Progress | None = None,
) -> RunRow:
    """Register the task (if new), build the data, and run the pipeline search."""
    spec = load_task_file(task_file)
    task = _ensure_task(ws, spec.task)
    seeds = seed_items(spec) + (load_items(seed_data, task) if seed_data else [])
    data = load_items(dataset, task) if dataset else []
    if not seeds and not data:
        seeds = _synthesize(ws, task, progress)
    for name, items in (("seed data", seeds), ("dataset", data)):
        check_labels(task, items, name)
    held = load_items(eval_set, task) if eval_set else None
    train, heldout, notes = split_data(
        task, seeds, data, eval_fraction=spec.eval_fraction, max_eval=spec.max_eval, eval_set=held
    )
    run_id = uuid.uuid4().hex[:12]
    with task_lock(
        ws.store, task.name, run_id
    ):  # refuse early, before anything is written; held until the run stops
        run_dir = ws.artifact_dir("runs", run_id)
        write_items(run_dir / "train.jsonl", train)
        write_items(run_dir / "eval.jsonl", heldout)
        on_gpu = _on_gpu(ws)
        run = RunRow(
            id=run_id,
            task=task.name,
            workflow="cold-start",
            status="running",
            thread_id=run_id,
            config={
                "task_file": str(task_file.resolve()),
                "approve": approve,
                "target_score": spec.target_score,
                "on_gpu": on_gpu,
                "max_attempts": max_attempts or spec.max_attempts or (5 if on_gpu else 3),
                "run_dir": str(run_dir),
                "started_at": time.time(),
            },
            summary={"attempts": [], "notes": notes, "n_train": len(train), "n_eval": len(heldout)},
        )
        ws.store.save_run(run)
        say(
            progress,
            f"cold start {run_id}: {len(train)} training / {len(heldout)} held-out examples of {task.name}",
        )
        for n in notes:
            say(progress, f"  note: {n}")
        return _drive(ws, run, progress)


def resume(ws: Workspace, run_id: str, progress: Progress | None = None) -> RunRow:
    """Continue a killed cold start: finished attempts are kept, a half-trained one resumes."""
    run = ws.store.get_run(run_id)
    if run.status in ("promoted", "not_promoted", "rejected", "awaiting_approval"):
        return run
    return _drive(ws, run, progress)


def decide_approval(
    ws: Workspace, run_id: str, approved: bool, who: str, *, reason: str | None = None
) -> RunRow:
    """Answer a cold start waiting for approval: promote its best version, or leave production alone.

    The decision (who, when, ``reason``) is kept in ``run.summary["approval"]`` and the report is rewritten.
    """
    run = ws.store.get_run(run_id)
    if run.status != "awaiting_approval":
        raise ConfigError(f"run {run_id} is {run.status}, not awaiting approval")
    version = run.summary["best"]["version"]
    if approved:
        from kaizen.tools.serve.hotswap import (
            promote_and_swap,  # the one promotion path: live servers swap first
        )

        promote_and_swap(ws.store, run.task, version, actor=who, note=f"cold start {run_id}")
    run.status = "promoted" if approved else "rejected"
    approval = {"approved": approved, "by": who, "at": time.time(), "reason": (reason or "").strip() or None}
    run.summary = run.summary | {"promoted": approved, "approval": approval}
    ws.store.save_run(run)  # the decision is recorded before the report is rewritten
    if run.config.get("run_dir"):
        try:
            _report(ws, run)
        except Exception:  # noqa: BLE001 - a report that cannot be rewritten must not undo the decision
            logging.getLogger(__name__).exception("cold start %s: could not rewrite the report", run_id)
    return run


def _drive(ws: Workspace, run: RunRow, progress: Progress | None) -> RunRow:
    with tracked(ws, run):
        task = ws.store.get_task(run.task)
        run_dir = Path(run.config["run_dir"])
        train, heldout = load_items(run_dir / "train.jsonl", task), load_items(run_dir / "eval.jsonl", task)
        _eval_base(ws, run, task, heldout, progress)
        _search(ws, run, task, train, heldout, progress)
        _finish(ws, run, progress)
    return run


def _eval_base(
    ws: Workspace, run: RunRow, task: TaskSpec, heldout: list[EvalItem], progress: Progress | None
) -> None:
    if "base" in run.summary:
        return
    base = base_version(ws, task.name)
    say(progress, f"evaluating the base model {base.name} on {len(heldout)} held-out examples")
    report = evaluate_on(ws, run, task, base, heldout)
    run.summary = run.summary | {
        "base": {
            "version": base.name,
            "score": report.score,
            "correct": report.correct_by_id,
            "metrics": small_metrics(report.metrics),
        }
    }
    ws.store.save_run(run)
    say(progress, f"  base {report.metric} = {report.score:.3f}")


def _search(
    ws: Workspace,
    run: RunRow,
    task: TaskSpec,
    train: list[EvalItem],
    heldout: list[EvalItem],
    progress: Progress | None,
) -> None:
    cfg, budget = run.config, ws.settings.budget
    deadline = cfg["started_at"] + budget.max_wall_clock_s
    has_rationales = any(it.metadata.get("rationale") for it in train)
    while True:
        history = [Attempt.model_validate(a) for a in run.summary["attempts"]]
        pending = next((a for a in history if a.status == "planned"), None)
        if pending is None:
            stop = _budget_stop(history, cfg["max_attempts"], budget.max_train_tokens, deadline)
            if stop:
                say(progress, f"search stops: {stop}")
                break
            pending = next_attempt(
                task, history, target=cfg["target_score"], on_gpu=cfg["on_gpu"], has_rationales=has_rationales
            )
            if pending is None:
                say(progress, "search stops: target reached or no new pipeline to try")
                break
            from kaizen.tools.versions import new_version_name

            pending.version = new_version_name(ws, task.name)
            save_attempt(ws, run, pending)  # planned before trained: a resume finds the same name and job dir
            say(progress, f"attempt {pending.index + 1} ({pending.name}): {pending.why}")
        run_attempt(ws, run, task, pending, train, heldout, progress)


def _budget_stop(history: list[Attempt], max_attempts: int, max_tokens: int, deadline: float) -> str | None:
    if len(history) >= max_attempts:
        return f"{max_attempts} attempts tried (budget)"
    if sum(a.train_tokens for a in history) >= max_tokens:
        return f"training-token budget of {max_tokens} spent"
    if time.time() >= deadline:
        return "wall-clock budget spent"
    return None


def _finish(ws: Workspace, run: RunRow, progress: Progress | None) -> None:
    """Gate the best attempt against the base on the held-out set; promote, wait, or keep production."""
    attempts = [Attempt.model_validate(a) for a in run.summary["attempts"] if a["status"] == "done"]
    base = run.summary["base"]
    if not attempts:
        run.status, run.summary = (
            "not_promoted",
            run.summary | {"best": None, "verdict": {"passed": False, "reasons": ["no attempt finished"]}},
        )
        _report(ws, run)
        return
    best = max(attempts, key=lambda a: (a.score or 0.0, -a.index))
    cmp = compare("heldout", base["correct"], best.correct, base["score"], best.score)
    verdict = decide(gate_config("cold-start", ws.settings.gate), cmp, [])
    summary = {
        "best": {"attempt": best.index, "name": best.name, "version": best.version, "score": best.score},
        "verdict": {"passed": verdict.passed, "reasons": verdict.reasons},
        "promoted": False,
    }
    if not verdict.passed:
        run.status = "not_promoted"
    elif run.config.get("approve") or not ws.settings.gate.require_approval:
        who = (
            f"{getpass.getuser()} (--approve)"
            if run.config.get("approve")
            else "policy (gate.require_approval: false)"
        )
        from kaizen.tools.serve.hotswap import (
            promote_and_swap,  # the one promotion path: live servers swap first
        )

        promote_and_swap(ws.store, run.task, best.version or "", actor=who, note=f"cold start {run.id}")
        run.status, summary["promoted"] = "promoted", True
    else:
        ws.store.set_aliases(
            run.task, {"candidate": (best.version or "", None)}, action="set", note=f"cold start {run.id}"
        )
        run.status = "awaiting_approval"
    run.summary = run.summary | summary
    _report(ws, run)
    say(
        progress,
        f"best: {best.name} → {best.version}, held-out {best.score:.3f} vs base {base['score']:.3f}: {run.status}",
    )


def _report(ws: Workspace, run: RunRow) -> None:
    from kaizen.workflows.cold_start.report import write_report

    run.report_path = str(write_report(Path(run.config["run_dir"]), run))
    ws.store.save_run(run)


def _ensure_task(ws: Workspace, spec: TaskSpec) -> TaskSpec:
    try:
        existing = ws.store.get_task(spec.name)
    except NotFoundError:
        ws.store.add_task(spec, declared_in="cold-start")
        return spec
    if existing.model_dump() != spec.model_dump():
        raise ConfigError(
            f"task {spec.name!r} already exists with another definition: rename it in the task file "
            f"or compare with `kaizen task show {spec.name}`"
        )
    return existing


def _synthesize(ws: Workspace, task: TaskSpec, progress: Progress | None) -> list[EvalItem]:
    """Examples from the task description, written by the LLM brain (the only source without data)."""
    if ws.settings.brain.kind != "llm":
        raise ConfigError(
            "cold start needs examples: pass --seed-data FILE or --dataset FILE (JSONL lines "
            '{"messages": [...], "expected": ...}), add seed_examples to the task file, '
            "or configure an LLM brain (brain.kind: llm in kaizen.yaml) to synthesise them from the description"
        )
    from kaizen.agent.brain import make_brain

    brain = make_brain(ws)
    say(
        progress,
        f"no examples given: asking the brain ({ws.settings.brain.model}) to write them from the description",
    )
    return brain.synthesize_seed(
        task, n=max(60, 8 * max(1, len(task.labels)))
    )  # validated, provenance "synthetic"


def _on_gpu(ws: Workspace) -> bool:
    dev = ws.settings.model.device
    if dev != "auto":
        return dev == "cuda"
    import torch

    return torch.cuda.is_available()


def summary_json(run: RunRow) -> dict[str, Any]:
    """The ``--json`` shape of ``kaizen cold-start``."""
    s = run.summary
    return {
        "run_id": run.id,
        "task": run.task,
        "status": run.status,
        "promoted": bool(s.get("promoted")),
        "n_train": s.get("n_train"),
        "n_eval": s.get("n_eval"),
        "base": {k: (s.get("base") or {}).get(k) for k in ("version", "score")},
        "best": s.get("best"),
        "verdict": s.get("verdict"),
        "notes": s.get("notes", []),
        "approval": s.get("approval"),
        "attempts": [
            {
                k: a.get(k)
                for k in (
                    "index",
                    "name",
                    "strategy",
                    "why",
                    "version",
                    "status",
                    "score",
                    "train_tokens",
                    "seconds",
                    "error",
                )
            }
            for a in s.get("attempts", [])
        ],
        "report_path": run.report_path,
    }
