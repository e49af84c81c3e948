"""The report sections that tell how the run went: suspects excluded, gate verdicts, time, training.

These answer "what did the run do and why": which traces the triage distrusted (with a one-line
reading of the evidence), every gated step with its reasons, the seconds spent per phase, and each
training job's data counts, throughput and loss curve.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from kaizen.tools.rundir import RunDir
from kaizen.workflows.report.artifacts import RunView, read_json, read_jsonl


def _evidence_summary(kind: str, ev: dict[str, Any]) -> str:
    def nb(n: int = 3) -> str:
        return ", ".join(
            f"{x.get('label')} ({x.get('similarity')})" for x in (ev.get("neighbours") or [])[:n]
        )

    if kind == "disagrees_with_similar_inputs":
        return (
            f"corrected to {ev.get('correction')!r}, but {ev.get('share', 0):.0%} of the similarity weight of "
            f"{len(ev.get('neighbours') or [])} similar inputs says {ev.get('majority')!r}; nearest: {nb()}"
        )
    if kind == "contradicts_near_duplicates":
        return f"corrected to {ev.get('correction')!r}, but near-duplicate inputs are labelled: {nb(5)}"
    if kind == "off_domain_input":
        if ev.get("linked_inputs"):  # a small cluster of stray requests that only resemble each other
            return (
                f"input resembles only {ev['linked_inputs']} other stray input(s), not the task's traffic "
                f"(best similarity {ev.get('best_similarity')})"
            )
        return f"input unlike any other trace (best similarity {ev.get('best_similarity')})"
    if kind == "correction_off_label":
        return f"correction {ev.get('correction')!r} is not one of the task's labels"
    if kind in ("correction_malformed", "passing_output_malformed"):
        what = "correction" if kind == "correction_malformed" else "output marked as a pass"
        return f"the {what} {ev.get('answer')!r} cannot be scored for this task: {ev.get('problem')}"
    if kind == "field_not_in_input":
        what = "; ".join(
            f"{k}={f.get('value')!r}"
            + (f" where the input names {', '.join(map(repr, f['rivals']))}" if f.get("rivals") else "")
            + f" (this field's value is in the input for {f.get('share', 0):.0%} of the feedback)"
            for k, f in (ev.get("fields") or {}).items()
            if isinstance(f, dict)
        )
        given = "correction" if ev.get("verdict") == "fail" else "passing output"
        return f"the {given} gives {what}, but the input never mentions it"
    if kind == "correction_equals_output":
        return f"correction equals the model's output {ev.get('output')!r}"
    if kind == "empty_or_garbage_input":
        return "input is empty or not text"
    return "; ".join(f"{k}: {v}" for k, v in ev.items() if not isinstance(v, (list, dict)))


def suspects_section(r: RunView) -> dict[str, Any]:
    traces = r.report.get("suspect_traces") or {}
    rows = []
    flagged = (r.diagnosis or {}).get("suspects") or []
    for s in flagged:
        if not isinstance(s, dict):
            continue
        tid = str(s.get("trace_id"))
        ev = s.get("evidence") or {}
        t = traces.get(tid) or {}
        rows.append(
            {
                "trace_id": tid,
                "kind": s.get("kind"),
                "input": t.get("input", ev.get("input")),
                "output": t.get("output"),
                "correction": t.get("correction", ev.get("correction")),
                "evidence_summary": _evidence_summary(str(s.get("kind")), ev),
                "evidence": ev,
            }
        )
    known = {x["trace_id"] for x in rows}
    for tid in r.summary.get("excluded_suspect") or r.report.get("excluded_suspect") or []:
        if str(tid) not in known:  # excluded without a diagnosis on disk: still listed
            t = traces.get(str(tid)) or {}
            rows.append(
                {
                    "trace_id": str(tid),
                    "kind": None,
                    "input": t.get("input"),
                    "output": t.get("output"),
                    "correction": t.get("correction"),
                    "evidence_summary": "",
                    "evidence": {},
                }
            )
    return {"count": len(rows), "by_kind": dict(Counter(str(x["kind"]) for x in rows)), "items": rows}


def gate_section(r: RunView) -> list[dict[str, Any]]:
    """Every gated step of the run — iterations, recoveries, the refit — with its recipe and reasons."""
    path = r.summary.get("path") or []
    if path:
        return [
            {
                "iteration": s.get("step"),
                "candidate": s.get("candidate"),
                "recipe": s.get("recipe"),
                "target": s.get("target"),
                "passed": bool(s.get("passed")),
                "reasons": list(s.get("reasons") or []),
            }
            for s in path
        ]
    rows: list[dict[str, Any]] = []
    step = None
    for e in r.events:
        if e.get("step") is not None or e.get("iteration") is not None:
            step = str(e.get("step") or e["iteration"])
        if e.get("phase") == "gate":
            cand = (r.train_events.get(step) or {}).get("version") if step is not None else None
            rows.append(
                {
                    "iteration": step,
                    "candidate": cand,
                    "passed": bool(e.get("passed")),
                    "reasons": list(e.get("reasons") or []),
                }
            )
    verdict = r.report.get("verdict") or {}
    if not rows and verdict:
        rows.append(
            {
                "iteration": verdict.get("iteration"),
                "candidate": verdict.get("candidate"),
                "passed": bool(verdict.get("passed")),
                "reasons": list(verdict.get("reasons") or []),
            }
        )
    if not rows and (r.summary.get("verdict") or {}).get("reasons"):
        v = r.summary["verdict"]
        rows.append(
            {
                "iteration": r.summary.get("iterations"),
                "candidate": r.summary.get("candidate"),
                "passed": bool(v.get("passed")),
                "reasons": list(v.get("reasons") or []),
            }
        )
    return rows


def phases_section(r: RunView) -> dict[str, Any]:
    """Seconds per phase: the gap between consecutive events goes to the later event's phase."""
    evs = [e for e in r.events if isinstance(e.get("t"), (int, float))]
    start = r.report.get("started_at")
    totals: dict[str, float] = {}
    counts: Counter[str] = Counter()
    timeline = []
    prev = start if isinstance(start, (int, float)) else None
    for e in evs:
        phase = str(e.get("phase"))
        dt = max(0.0, float(e["t"]) - float(prev)) if prev is not None else 0.0
        totals[phase] = totals.get(phase, 0.0) + dt
        counts[phase] += 1
        timeline.append(
            {"phase": phase, "iteration": e.get("iteration"), "t": e["t"], "seconds": round(dt, 3)}
        )
        prev = e["t"]
    phases = [{"phase": p, "seconds": round(s, 3), "count": counts[p]} for p, s in totals.items()]
    total = round(sum(totals.values()), 3)
    return {
        "phases": phases,
        "total_s": total,
        "timeline": timeline,
        "note": "seconds between an event and the one before it (the run's start for the first)",
    }


def _iter_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    rd = RunDir(run_dir)
    out = [(s, rd.step(s)) for s in rd.steps() if rd.step(s).is_dir()]
    if not out and (run_dir / "job").is_dir():  # a single-job run (the naive strategy)
        out.append(("1", run_dir))
    return out


def training_section(r: RunView) -> list[dict[str, Any]]:
    rows = []
    for i, d in _iter_dirs(r.dir):
        job = d / "job"
        stats = read_json(d / "train_stats.json") or {}
        result = read_json(job / "result.json") or {}
        ev = r.train_events.get(i) or {}
        steps, loss, elapsed = [], [], []
        rl: dict[str, list[Any]] = {"step": [], "reward": [], "entropy": []}  # GRPO jobs: per-step curves
        final = {}
        for rec in read_jsonl(job / "metrics.jsonl"):
            if "loss" in rec and rec.get("step") is not None:
                steps.append(rec["step"])
                loss.append(rec["loss"])
                elapsed.append(rec.get("elapsed_s"))
                if "reward" in rec:
                    rl["step"].append(rec["step"])
                    rl["reward"].append(rec["reward"])
                    rl["entropy"].append(rec.get("entropy"))
            if "train_loss" in rec:
                final = rec
        rows.append(
            {
                "iteration": i,
                "version": ev.get("version"),
                "examples": stats.get("n"),
                "failures": stats.get("failures"),
                "replay": stats.get("replay"),
                "prior": stats.get("prior"),
                "dropped_contaminated": stats.get("dropped_contaminated"),
                "labels": stats.get("labels"),
                "steps": result.get("steps", ev.get("steps")),
                "train_tokens": result.get("train_tokens", ev.get("train_tokens")),
                "tokens_per_s": result.get("tokens_per_s", ev.get("tokens_per_s")),
                "train_runtime_s": result.get("train_runtime_s", ev.get("seconds")),
                "train_loss": result.get("train_loss", final.get("train_loss")),
                "device": result.get("device"),
                "curve": {"step": steps, "loss": loss, "elapsed_s": elapsed},
                "kind": ev.get("kind") or result.get("kind"),
                "rl": rl,
            }
        )
    return rows
