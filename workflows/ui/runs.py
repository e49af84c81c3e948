"""The runs pages: a run's summary, report and training curves, its live progress, and approvals.

A live run is polled every second or so, so ``progress`` only makes cheap checks of the run directory
(which files exist, the last lines of ``metrics.jsonl``) and of the task's lock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaizen.tools.store.repo import as_utc
from kaizen.tools.store.tables import RunRow
from kaizen.workflows.ui.base import ReaderBase
from kaizen.workflows.ui.common import (
    APPROVALS_FILE,
    FINAL_STATUSES,
    as_dict,
    as_list,
    jsonable,
    read_json,
    read_jsonl,
)


class RunsView(ReaderBase):
    """Runs, one run in full, its progress, and the decisions on it."""

    def runs(self, task: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        rows = self.store.list_runs(task)
        return [self.run_summary(r) for r in rows if status is None or r.status == status]

    def _lock(self, task: str) -> dict[str, Any] | None:
        row = self.store.get_lock(task)
        if row is None:
            return None
        beat = as_utc(row.heartbeat)
        return {
            "run_id": row.run_id,
            "pid": row.pid,
            "host": row.host,
            "heartbeat": jsonable(beat),
            "age_s": round((datetime.now(UTC) - beat).total_seconds(), 1) if beat else None,
        }

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        d = self.run_dir(run)
        report = read_json(d / "report.json") if (d / "report.json").is_file() else None
        if not isinstance(report, dict):
            report = None
        training = self.training_curves(d)
        return {
            "run": self.run_summary(run)
            | {
                "config": jsonable(run.config),
                "report_path": run.report_path,
                "has_html": (d / "report.html").is_file(),
            },
            "summary": jsonable(run.summary),
            "events": jsonable(run.events),
            "live": self.progress(run_id, run=run),
            "report": report,
            "training": training,
            "approvals": self.approval_records(run, d),
            "attempts": as_list(as_dict(run.summary).get("attempts")),
        }

    def training_curves(self, d: Path) -> list[dict[str, Any]]:
        """Per training job: step, loss and entropy from ``metrics.jsonl`` (written as training goes)."""
        jobs: list[tuple[int, Path]] = []
        for p in d.glob("iter-*"):
            try:
                jobs.append((int(p.name.split("-", 1)[1]), p / "job"))
            except ValueError:
                continue
        if not jobs and (d / "job").is_dir():
            jobs.append((1, d / "job"))
        for p in sorted(d.glob("attempt-*")):  # cold-start attempts
            if (p / "job").is_dir() or (p / "metrics.jsonl").is_file():
                jobs.append((100 + len(jobs), p / "job" if (p / "job").is_dir() else p))
        out = []
        for i, job in sorted(jobs):
            recs = read_jsonl(job / "metrics.jsonl")
            steps = [r for r in recs if r.get("step") is not None and ("loss" in r or "entropy" in r)]
            result = read_json(job / "result.json")
            last = steps[-1] if steps else {}
            out.append(
                {
                    "iteration": i,
                    "job": job.parent.name if job.name == "job" else job.name,
                    "step": [r["step"] for r in steps],
                    "loss": [r.get("loss") for r in steps],
                    "entropy": [r.get("entropy") for r in steps],
                    "reward": [r.get("reward") for r in steps] if any("reward" in r for r in steps) else None,
                    "last_step": last.get("step"),
                    "max_steps": last.get("max_steps"),
                    "done": isinstance(result, dict),
                    "train_loss": as_dict(result).get("train_loss"),
                    "seconds": as_dict(result).get("train_runtime_s", last.get("elapsed_s")),
                }
            )
        return out

    def progress(self, run_id: str, run: RunRow | None = None) -> dict[str, Any]:
        """Where a run is, from cheap checks of its directory (polled every second or so while it runs)."""
        run = run or self.store.get_run(run_id)
        d = self.run_dir(run)
        lock = self._lock(run.task)
        holds_lock = bool(lock and lock["run_id"] == run.id)
        live = run.status == "running"
        iters = sorted((p for p in d.glob("iter-*") if p.is_dir()), key=lambda p: (len(p.name), p.name))
        evals = []
        for p in sorted((d / "evals").glob("*.json")):
            rec = read_json(p)
            if isinstance(rec, dict):
                version, _, suite = p.stem.rpartition("--")
                evals.append(
                    {"version": version, "suite": suite, "score": rec.get("score"), "n": rec.get("n")}
                )
        training = None
        if iters:
            recs = [r for r in read_jsonl(iters[-1] / "job" / "metrics.jsonl") if r.get("step") is not None]
            if recs:
                last = recs[-1]
                training = {
                    "iteration": iters[-1].name,
                    "step": last.get("step"),
                    "max_steps": last.get("max_steps"),
                    "loss": next((r["loss"] for r in reversed(recs) if "loss" in r), None),
                    "entropy": next((r["entropy"] for r in reversed(recs) if "entropy" in r), None),
                }
        steps = [
            ("diagnose", (d / "diagnosis.json").is_file(), None),
            ("synthesize", (d / "data" / "target.jsonl").is_file(), None),
            ("train", bool(iters), f"{len(iters)} iteration(s)" if iters else None),
            ("evaluate", bool(evals), f"{len(evals)} suite score(s)" if evals else None),
            ("report", (d / "report.json").is_file() and not live, None),
        ]
        phases, current = [], None
        for k, (name, done, detail) in enumerate(steps):
            later = any(x[1] for x in steps[k + 1 :])
            state = "done" if done and (later or not live) else ("active" if done else "pending")
            if live and state == "pending" and current is None and not any(x[1] for x in steps[k:]):
                state, current = "active", name
            if state == "active":
                current = name
            phases.append({"phase": name, "state": state, "detail": detail})
        if current == "train" and training:
            detail = f"step {training['step']}/{training['max_steps'] or '?'}"
            if training.get("loss") is not None:
                detail += f", loss {training['loss']:.3f}"
            phases[2]["detail"] = f"{training['iteration']}: {detail}"
        note = None
        if live and not holds_lock:
            note = (
                "no process holds the task's lock: the run may have died (`kaizen runs resume "
                + run.id
                + "`)"
            )
        return {
            "run_id": run.id,
            "status": run.status,
            "live": live,
            "final": run.status in FINAL_STATUSES,
            "updated_at": jsonable(run.updated_at),
            "phase": current,
            "phases": phases,
            "training": training,
            "evals": evals,
            "lock": lock if holds_lock else None,
            "note": note,
            "checked_at": round(time.time(), 3),
        }

    def approval_records(self, run: RunRow, d: Path | None = None) -> list[dict[str, Any]]:
        """Decisions on a run, with who and why, as the run record keeps them (its promote event and
        ``summary.approval``: one decision appears in both, shown once). Runs decided in the dashboard before the
        reason was part of the record also have its notes in ``approvals.jsonl``."""
        found = [
            e["approval"]
            for e in as_list(run.events)
            if isinstance(e, dict) and isinstance(e.get("approval"), dict)
        ]
        if isinstance(as_dict(run.summary).get("approval"), dict):
            found.append(run.summary["approval"])
        out: list[dict[str, Any]] = []
        for a in found:
            if not any(a.get("at") == o.get("at") and a.get("by") == o.get("by") for o in out):
                out.append({"source": "run", **a})
        out += [{"source": "kaizen ui", **r} for r in read_jsonl((d or self.run_dir(run)) / APPROVALS_FILE)]
        return jsonable(out)

    def approvals(self) -> list[dict[str, Any]]:
        out = []
        for r in self.store.list_runs():
            if r.status != "awaiting_approval":
                continue
            d = self.run_dir(r)
            report = read_json(d / "report.json")
            report = report if isinstance(report, dict) else {}
            out.append(
                self.run_summary(r)
                | {
                    "headline": as_dict(report.get("headline")).get("text"),
                    "gate": as_list(report.get("gate")),
                    "suites": as_list(report.get("suites")),
                }
            )
        return out
