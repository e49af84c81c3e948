"""The repair workflow: config → graph → run record → summary.

``start`` begins a run, ``resume`` continues one that was killed, ``decide`` answers an approval.
All three drive the same compiled graph with LangGraph's checkpointer — SQLite, or the PostgreSQL store's
database (``durability="sync"``: each node's result is stored before the next starts) — under the task's lock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kaizen.agent.graph import build_graph
from kaizen.tools import registry
from kaizen.tools.errors import ConfigError
from kaizen.tools.lock import task_lock
from kaizen.tools.run_record import tracked
from kaizen.tools.store.tables import RunRow
from kaizen.tools.workspace import Workspace

PRESETS = {"repair": {}, "demo": {"max_iterations": 2}}


@contextmanager
def _graph(ws: Workspace) -> Iterator[Any]:
    from kaizen.tools.store.checkpoint import checkpointer  # SQLite file, or the PostgreSQL store's database

    with checkpointer(ws.db_url, ws.checkpoints_path) as saver:
        yield build_graph(saver)


def _context(ws: Workspace, run: RunRow, progress: Callable[[str], None] | None, brain: Any = None) -> Any:
    """The run's typed context (rebuilt from the run record on resume: it is never checkpointed)."""
    from kaizen.agent.brain import make_brain
    from kaizen.agent.context import RunContext

    opts = run.config
    return RunContext(
        workspace=ws,
        progress=progress,
        brain=brain or make_brain(ws, log_path=ws.artifact_dir("runs", run.id) / "brain.jsonl"),
        extra_eval_sets=opts.get("extra_eval_sets", []),
        train_overrides=opts.get("train_overrides", {}),
        plan_defaults=opts.get("plan_defaults", {}),
        answer_key=opts.get("answer_key"),
        eval_mode=opts.get("eval_mode", "prefix"),
    )


def _drive(
    ws: Workspace, run: RunRow, graph_input: Any, progress: Callable[[str], None] | None, brain: Any = None
) -> RunRow:
    """Run the graph until it ends or interrupts; keep the run record and lock in step."""
    with tracked(ws, run):
        with _graph(ws) as graph:
            cfg = {"configurable": {"thread_id": run.thread_id}}
            ctx = _context(ws, run, progress, brain)
            for _ in graph.stream(graph_input, cfg, context=ctx, stream_mode="updates", durability="sync"):
                pass  # the task lock's own thread keeps its heartbeat
            snap = graph.get_state(cfg)
        state = dict(snap.values)
        run.status = "awaiting_approval" if snap.interrupts else (state.get("status") or "not_promoted")
        run.summary = summarize(state)
        client = getattr(ctx.brain, "client", None)
        if client is not None:  # the LLM brain: calls, cache hits, fallbacks, tokens, redactions, cost
            run.summary["brain"] = client.summary() | {"log": str(client.log_path)}
        run.events = state.get("events", [])
        run.report_path = _write_report(ws, run, state)
        ws.store.save_run(run)
    return run


def start(
    ws: Workspace,
    task: str,
    *,
    approve: bool = False,
    preset: str = "repair",
    max_iterations: int | None = None,
    extra_eval_sets: list[Path] | None = None,
    train_overrides: dict[str, Any] | None = None,
    plan_defaults: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    run_id: str | None = None,
    brain: Any = None,
    answer_key: Path | None = None,
) -> RunRow:
    """Start a repair run on ``task`` from its production version.

    ``brain``: a brain object instead of the one kaizen.yaml configures (tests, embedding kaizen).

    ``answer_key``: the **oracle** arm — the scenario's true labels replace the logged feedback (perfect
    triage and corrections), everything else as in an agent run. Only benchmarks and demos have one.

    ``run_id``: the run's id (a scheduled tick gives its own). A caller that holds the task's lock
    in this thread (a tick) keeps it: the run works under it.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: use {', '.join(PRESETS)}")
    _check_plan_defaults(plan_defaults or {})
    spec = ws.store.get_task(task)
    incumbent = registry.resolve(ws.store, "production", spec.name)
    budget, rs = ws.settings.budget, ws.settings.repair
    if answer_key is not None and not Path(answer_key).is_file():
        raise ConfigError(
            f"answer key {answer_key} not found: the oracle arm needs the scenario's answer_key.jsonl"
        )
    iters = max_iterations or PRESETS[preset].get("max_iterations") or budget.max_iterations
    run_id = run_id or uuid.uuid4().hex[:12]
    with task_lock(
        ws.store, task, run_id
    ):  # refuse early, before any record is written; _drive's tracked joins it
        now = time.time()
        run = RunRow(
            id=run_id,
            task=task,
            workflow="repair",
            status="running",
            thread_id=run_id,
            config={
                "preset": preset,
                "approve": approve,
                "max_iterations": iters,
                "extra_eval_sets": [str(p.resolve()) for p in (extra_eval_sets or [])],
                "train_overrides": train_overrides or {},
                "plan_defaults": plan_defaults or {},
                "answer_key": str(Path(answer_key).resolve()) if answer_key else None,
                "strategy": "oracle" if answer_key else "agent",
            },
        )
        ws.store.save_run(run)
        state = {
            "run_id": run_id,
            "task": task,
            "preset": "demo" if preset == "demo" else "repair",
            "auto_approve": approve,
            "incumbent": incumbent.name,
            "incumbent_skill": _production_skill(ws, task),
            "iteration": 0,
            "max_iterations": iters,
            "started_at": now,
            "deadline": now + budget.max_wall_clock_s,
            "train_tokens_budget": budget.max_train_tokens,
            "train_tokens_used": 0,
            "artifacts": str(ws.artifact_dir("runs", run_id)),
            "evals": {},
            "promoted": False,
            "events": [],
            "path": [],
            "target_score": rs.target_score,
            "plateau": rs.plateau,
            "refit_enabled": rs.refit,
            "shrink_enabled": rs.shrink,
            "recoveries": recoveries(rs, spec.kind),
            "final_n": 0,
            "recovery": [],
        }
        return _drive(ws, run, state, progress, brain)


def _check_plan_defaults(plan_defaults: dict[str, Any]) -> None:
    """Refuse a bad first-plan setting (``--epoch-examples -1``, ``--grpo-steps 0``) before any record is written,
    with the Plan's own bounds — not from inside the graph's plan node."""
    from pydantic import ValidationError

    from kaizen.agent.state import Plan
    from kaizen.tools.config import validation_message

    settable = sorted(set(Plan.model_fields) - {"iteration", "rationale"})
    unknown = sorted(set(plan_defaults) - set(settable))
    if unknown:  # the Plan ignores extra keys (the LLM brain's proposals): a caller's typo must not vanish
        import difflib

        hints = [
            f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, settable, 1)) else repr(k)
            for k in unknown
        ]
        raise ConfigError(f"unknown plan setting {', '.join(hints)}: the settings are {', '.join(settable)}")
    try:
        Plan.model_validate({"iteration": 1} | plan_defaults)
    except ValidationError as e:
        raise ConfigError(f"plan setting {validation_message(e)}") from None


def recoveries(rs: Any, task_kind: str) -> list[str]:
    """The recoveries a run tries, in order: refresh → sparse rollback → GRPO (repair.recover, repair.grpo_recovery;
    GRPO only for a task kind with a verifier)."""
    from kaizen.tools.train.rewards import VERIFIABLE_KINDS

    if not rs.recover:
        return []
    return ["refresh", "rollback"] + (["grpo"] if rs.grpo_recovery and task_kind in VERIFIABLE_KINDS else [])


def _production_skill(ws: Workspace, task: str) -> int | None:
    alias = ws.store.get_alias(task, "production")
    return alias.skill_version if alias else None


def resume(ws: Workspace, run_id: str, progress: Callable[[str], None] | None = None) -> RunRow:
    """Continue a run that was interrupted (killed, Ctrl-C) from its last finished node."""
    run = ws.store.get_run(run_id)
    if run.status in ("promoted", "not_promoted", "rejected"):
        return run
    if run.status == "awaiting_approval":
        raise ConfigError(
            f"run {run_id} waits for approval: `kaizen runs approve {run_id}` or `kaizen runs reject {run_id}`"
        )
    return _drive(ws, run, None, progress)


def decide(
    ws: Workspace,
    run_id: str,
    approved: bool,
    who: str,
    progress: Callable[[str], None] | None = None,
    *,
    reason: str | None = None,
) -> RunRow:
    """Answer the approval a run waits for, and let it finish.

    The answer — approved or not, by ``who``, at when, because ``reason`` — is what the promote node records:
    it lands in the promote event (``run.events``), in ``run.summary["approval"]`` and in the run's report.
    """
    from langgraph.types import Command

    run = ws.store.get_run(run_id)
    if run.status != "awaiting_approval":
        raise ConfigError(f"run {run_id} is {run.status}, not awaiting approval")
    answer = {"approved": approved, "by": who, "at": time.time(), "reason": (reason or "").strip() or None}
    return _drive(ws, run, Command(resume=answer), progress)


def summarize(state: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` shape of ``kaizen repair``.

    ``before``/``after`` are the target and regression suites of the best *loop* candidate (a refit trained
    on those suites, so its own numbers there would prove nothing); ``final`` is the refit's verification
    on the final slice; ``path`` lists every gated step.
    """
    from kaizen.agent.context import label

    best = state.get("best") or state.get("verdict") or {}
    inc = label(state["incumbent"], state.get("incumbent_skill")) if state.get("incumbent") else None
    cand = best.get("candidate") or state.get("candidate")
    loop_cand = best.get("loop_candidate") or cand
    ev = state.get("evals") or {}

    def score(version: str | None, suite: str) -> float | None:
        return (ev.get(f"{version}/{suite}") or {}).get("score") if version else None

    refit = best if best.get("step") == "refit" else best.get("refit")
    return {
        "run_id": state.get("run_id"),
        "status": state.get("status"),
        "promoted": bool(state.get("promoted")),
        "incumbent": inc,
        "candidate": cand,
        "loop_candidate": loop_cand,
        "verdict": {"passed": bool(best.get("passed")), "reasons": best.get("reasons", [])},
        "iterations": state.get("iteration", 0),
        "before": {"target": score(inc, "target"), "regression": score(inc, "regression")},
        "after": {"target": score(loop_cand, "target"), "regression": score(loop_cand, "regression")},
        "final": None
        if not refit
        else {
            "n": refit.get("final_n"),
            "scores": refit.get("final_scores"),
            "refit_promoted": best.get("step") == "refit",
            "reasons": refit.get("reasons"),
        },
        "new_regressions": best.get("new_regressions", 0),
        "fixed": len(best.get("fixed", [])),
        "path": state.get("path", []),
        "excluded_suspect": state.get("excluded_suspect", []),
        "train_tokens": state.get("train_tokens_used", 0),
        "approval": state.get("approval"),  # who approved or rejected the promotion, when, and why
        "seconds": phase_seconds(state.get("timings") or []),
    }


def phase_seconds(timings: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time by phase (node) and by step (iteration, recovery, refit): where a repair's minutes went."""
    by_phase: dict[str, float] = {}
    by_step: dict[str, float] = {}
    for t in timings:
        by_phase[t["node"]] = round(by_phase.get(t["node"], 0.0) + t["seconds"], 1)
        if t.get("step"):
            by_step[t["step"]] = round(by_step.get(t["step"], 0.0) + t["seconds"], 1)
    return {"total": round(sum(t["seconds"] for t in timings), 1), "by_phase": by_phase, "by_step": by_step}


def _write_report(ws: Workspace, run: RunRow, state: dict[str, Any]) -> str:
    """``report.json`` + ``report.html`` in the run directory; returns the JSON's path (the HTML lies beside it)."""
    import json
    import logging

    from kaizen.workflows.report.build import write_report

    run_dir = Path(state.get("artifacts") or ws.artifact_dir("runs", run.id))
    report = {
        "run": {"id": run.id, "task": run.task, "status": run.status, "config": run.config},
        "summary": summarize(state),
        "verdict": state.get("verdict"),
        "best": state.get("best"),
        "diagnosis_path": state.get("diagnosis_path"),
        "splits": state.get("splits"),
        "events": state.get("events", []),
        "incumbent": state.get("incumbent"),
        "started_at": state.get("started_at"),
        "suspect_traces": _suspect_traces(ws, run.task, state.get("excluded_suspect") or []),
    }
    try:
        json_path, _ = write_report(run_dir, report)
        return str(json_path)
    except Exception:  # noqa: BLE001 - the report must never cost the run its outcome
        logging.getLogger(__name__).exception("report: falling back to the plain summary")
        path = run_dir / "report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        report.pop("suspect_traces", None)
        path.write_text(json.dumps(report, indent=2, default=str))
        return str(path)


def _suspect_traces(ws: Workspace, task: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """What the report shows next to each excluded feedback: the input, the model's output, the correction."""
    if not ids:
        return {}
    from kaizen.tools.schema import last_user_text

    try:
        return {
            t.id: {
                "input": last_user_text(t.messages),
                "output": t.output,
                "correction": t.correction,
                "verdict": t.verdict,
            }
            for t in ws.store.traces(task, ids=ids)
        }
    except Exception:  # noqa: BLE001 - evidence without the text is still evidence
        return {}
