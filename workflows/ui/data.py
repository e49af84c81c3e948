"""What the dashboard shows, as JSON-able dicts: every page renders one of these, and ``/api/…`` returns it as is.

Reads go through :class:`kaizen.tools.store.Store` (short transactions) and the run directories
(``report.json``, ``diagnosis.json``, ``iter-N/job/metrics.jsonl``, ``evals/*.json``). Everything is read
defensively: the store's schema and the reports gain fields while kaizen grows, a live run has only some
of its artifacts, and an older run lacks newer keys — a missing key shows as "n/a", never as an error.

The UI's store connections are read-only (:func:`open_readonly_store`): SQLite in WAL mode lets a running
repair or tick write while the dashboard reads, and ``PRAGMA query_only`` guarantees the dashboard itself
never takes the write lock.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, event, func, or_
from sqlmodel import col, select

from kaizen.tools.errors import NotFoundError
from kaizen.tools.skills import diff_skills, get_skill, list_skills
from kaizen.tools.store import Store
from kaizen.tools.store.repo import as_utc
from kaizen.tools.store.tables import (
    AliasEvent,
    EvalResultRow,
    FeedbackRow,
    LockRow,
    RunRow,
    SkillRow,
    TickRow,
    TraceRow,
)

log = logging.getLogger(__name__)

FINAL_STATUSES = ("promoted", "not_promoted", "rejected", "failed", "interrupted")
VERDICTS = ("pass", "fail", "unlabeled")
MAX_TRACES_PAGE = 500
APPROVALS_FILE = "approvals.jsonl"  # the dashboard's note of each decision made through it (with the reason)


# ---------------------------------------------------------------------------------------------- helpers
def open_readonly_store(url: str) -> Store:
    """A :class:`Store` whose connections cannot write (SQLite ``query_only``; PostgreSQL read-only transactions)."""
    store = Store(url)

    def _readonly(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if url.startswith("sqlite"):
            cur.execute("PRAGMA query_only=ON")
        elif url.startswith("postgres"):
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cur.close()

    event.listen(store.engine, "connect", _readonly)
    store.engine.dispose()  # connections opened by the schema check were not read-only: drop them
    return store


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings (UTC), paths as strings, rows as dicts."""
    if isinstance(value, datetime):
        return (as_utc(value) or value).isoformat(timespec="seconds")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump())
    return value


def read_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line cut off by a writer in progress is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _d(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def user_text(messages: Any) -> str:
    for m in reversed(_l(messages)):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)
    return ""


def parse_time(value: str | None) -> datetime | None:
    """``2025-01-31`` or an ISO timestamp (UTC when no zone is given); None for empty input."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a date or ISO time: {value!r} (use 2025-01-31 or 2025-01-31T12:00)") from None
    return as_utc(t)


# ---------------------------------------------------------------------------------------------- reader
class Reader:
    """The dashboard's read model over one workspace's store and artifacts."""

    def __init__(self, store: Store, artifacts: Path) -> None:
        self.store = store
        self.artifacts = Path(artifacts)
        self._flags_cache: dict[str, tuple[Any, dict[str, Any]]] = {}

    # ------------------------------------------------------------------------------------ tasks
    def task_names(self) -> list[str]:
        return [spec.name for spec, _ in self.store.list_tasks()]

    def _aliases(self, task: str) -> dict[str, Any]:
        out = {}
        for name, a in sorted(self.store.aliases(task).items()):
            out[name] = {
                "model_version": a.model_version,
                "skill_version": a.skill_version,
                "updated_at": jsonable(a.updated_at),
            }
        return out

    def _verdict_counts(self, task: str) -> dict[str, Any]:
        with self.store.session() as s:
            rows = s.exec(
                self._traces_query()
                .where(TraceRow.task == task)
                .with_only_columns(FeedbackRow.verdict, func.count())
                .group_by(FeedbackRow.verdict)
            ).all()
        c = Counter({(v or "unlabeled"): n for v, n in rows})
        labelled = c["pass"] + c["fail"]
        return {
            "traces": sum(c.values()),
            "passes": c["pass"],
            "failures": c["fail"],
            "unlabeled": c["unlabeled"],
            "failure_rate": round(c["fail"] / labelled, 4) if labelled else None,
        }

    def tasks(self) -> list[dict[str, Any]]:
        runs = self.store.list_runs()
        out = []
        for spec, declared_in in self.store.list_tasks():
            mine = [r for r in runs if r.task == spec.name]
            out.append(
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "labels": spec.labels,
                    "declared_in": declared_in,
                    "aliases": self._aliases(spec.name),
                    "counts": self._verdict_counts(spec.name),
                    "awaiting_approval": [r.id for r in mine if r.status == "awaiting_approval"],
                    "running": [r.id for r in mine if r.status == "running"],
                    "last_run": self.run_summary(mine[0]) if mine else None,
                }
            )
        return out

    def task(self, name: str) -> dict[str, Any]:
        spec = self.store.get_task(name)
        runs = self.store.list_runs(name)
        history = self.store.alias_history(name)[-15:][::-1]
        ticks = self.store.list_ticks(name, limit=10)
        return {
            "task": jsonable(spec.model_dump()),
            "aliases": self._aliases(name),
            "alias_history": [
                {
                    "alias": e.alias,
                    "model_version": e.model_version,
                    "skill_version": e.skill_version,
                    "action": e.action,
                    "actor": e.actor,
                    "note": e.note,
                    "at": jsonable(e.created_at),
                }
                for e in history
            ],
            "counts": self._verdict_counts(name),
            "failure_rate": self.failure_rate_series(name),
            "runs": [self.run_summary(r) for r in runs[:10]],
            "n_runs": len(runs),
            "ticks": [self._tick(t) for t in ticks],
            "awaiting_approval": [self.run_summary(r) for r in runs if r.status == "awaiting_approval"],
            "running": [self.run_summary(r) for r in runs if r.status == "running"],
        }

    @staticmethod
    def _tick(t: TickRow) -> dict[str, Any]:
        decision = _d(t.decision)
        return {
            "id": t.id,
            "status": t.status,
            "run_id": t.run_id,
            "started_at": jsonable(t.started_at),
            "finished_at": jsonable(t.finished_at),
            "imported": _d(t.ingested).get("imported"),
            "reasons": _l(decision.get("reasons"))[:3],
            "error": t.error,
        }

    def failure_rate_series(self, task: str, max_points: int = 24) -> dict[str, Any]:
        """Failure rate of labelled traces over time: per day, per hour, or (no timestamps) per block of traces."""
        with self.store.session() as s:
            rows = s.exec(
                self._traces_query()
                .where(TraceRow.task == task, col(FeedbackRow.verdict).is_not(None))
                .with_only_columns(TraceRow.timestamp, TraceRow.imported_at, FeedbackRow.verdict)
            ).all()
        if not rows:
            return {"by": None, "points": []}
        timed = sorted(((as_utc(ts), v) for ts, _, v in rows if ts is not None), key=lambda x: x[0])  # type: ignore[arg-type, return-value]
        points: list[dict[str, Any]] = []
        if len(timed) >= max(4, len(rows) // 2):
            span = timed[-1][0] - timed[0][0]
            step = (
                timedelta(days=1)
                if span >= timedelta(days=2)
                else timedelta(hours=1)
                if span >= timedelta(hours=2)
                else None
            )
            if step is not None:
                by = "day" if step == timedelta(days=1) else "hour"
                buckets: dict[datetime, list[str]] = {}
                for t, v in timed:
                    key = t.replace(minute=0, second=0, microsecond=0)
                    if by == "day":
                        key = key.replace(hour=0)
                    buckets.setdefault(key, []).append(v)
                keys = sorted(buckets)
                if len(keys) > max_points * 3:  # a long history: merge neighbouring buckets
                    merged: dict[datetime, list[str]] = {}
                    per = -(-len(keys) // max_points)
                    for i, k in enumerate(keys):
                        merged.setdefault(keys[i - i % per], []).extend(buckets[k])
                    buckets, keys = merged, sorted(merged)
                for k in keys:
                    vs = buckets[k]
                    points.append(
                        {
                            "label": k.strftime("%m-%d" if by == "day" else "%m-%d %H:00"),
                            "t": k.isoformat(),
                            "n": len(vs),
                            "failures": vs.count("fail"),
                            "rate": vs.count("fail") / len(vs),
                        }
                    )
                return {"by": by, "points": points}
        ordered = sorted(rows, key=lambda r: as_utc(r[0]) or as_utc(r[1]) or datetime.min.replace(tzinfo=UTC))
        size = max(5, -(-len(ordered) // max_points))
        for i in range(0, len(ordered), size):
            vs = [v for _, _, v in ordered[i : i + size]]
            points.append(
                {
                    "label": f"{i + 1}–{i + len(vs)}",
                    "t": None,
                    "n": len(vs),
                    "failures": vs.count("fail"),
                    "rate": vs.count("fail") / len(vs),
                }
            )
        return {"by": "traces", "points": points}

    # ------------------------------------------------------------------------------------- runs
    def run_dir(self, run: RunRow) -> Path:
        cfg = _d(run.config)
        if run.report_path:
            return Path(run.report_path).parent
        if cfg.get("run_dir"):
            return Path(cfg["run_dir"])
        return self.artifacts / "runs" / run.id

    def run_summary(self, run: RunRow) -> dict[str, Any]:
        s = _d(run.summary)
        verdict = _d(s.get("verdict"))
        iterations = s.get("iterations")
        if iterations is None and isinstance(s.get("attempts"), list):
            iterations = len(s["attempts"])
        return {
            "id": run.id,
            "task": run.task,
            "workflow": run.workflow,
            "status": run.status,
            "created_at": jsonable(run.created_at),
            "updated_at": jsonable(run.updated_at),
            "iterations": iterations,
            "passed": verdict.get("passed") if verdict else None,
            "reasons": _l(verdict.get("reasons")),
            "promoted": s.get("promoted"),
            "incumbent": s.get("incumbent") or _d(s.get("base")).get("version"),
            "candidate": s.get("candidate") or _d(s.get("best")).get("version"),
            "before": _d(s.get("before")),
            "after": _d(s.get("after")),
            "fixed": s.get("fixed"),
            "new_regressions": s.get("new_regressions"),
            "excluded": len(_l(s.get("excluded_suspect"))) if "excluded_suspect" in s else None,
        }

    def runs(self, task: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        rows = self.store.list_runs(task)
        return [self.run_summary(r) for r in rows if status is None or r.status == status]

    def _lock(self, task: str) -> dict[str, Any] | None:
        with self.store.session() as s:
            row = s.get(LockRow, task)
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
            "attempts": _l(_d(run.summary).get("attempts")),
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
                    "train_loss": _d(result).get("train_loss"),
                    "seconds": _d(result).get("train_runtime_s", last.get("elapsed_s")),
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
        """Decisions on a run: from its events / summary (what `kaizen runs approve` records) and the dashboard's notes."""
        out: list[dict[str, Any]] = []
        for e in _l(run.events):
            if isinstance(e, dict) and isinstance(e.get("approval"), dict):
                out.append({"source": "run", **e["approval"]})
        if isinstance(_d(run.summary).get("approval"), dict):
            out.append({"source": "run", **run.summary["approval"]})
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
                    "headline": _d(report.get("headline")).get("text"),
                    "gate": _l(report.get("gate")),
                    "suites": _l(report.get("suites")),
                }
            )
        return out

    # ----------------------------------------------------------------------------------- models
    def models(self, task: str | None = None) -> dict[str, Any]:
        versions = self.store.list_model_versions(task)
        tasks = [task] if task else self.task_names()
        aliases: dict[str, list[str]] = {}
        for t in tasks:
            for name, a in self.store.aliases(t).items():
                label = name if task else f"{t}:{name}"
                aliases.setdefault(a.model_version, []).append(
                    label + (f"+skill{a.skill_version}" if a.skill_version else "")
                )
        with self.store.session() as s:
            q = select(EvalResultRow).order_by(col(EvalResultRow.id))
            if task:
                q = q.where(EvalResultRow.task == task)
            evals = list(s.exec(q))
        latest: dict[str, dict[str, Any]] = {}
        for e in evals:
            latest.setdefault(e.model_version, {})[e.suite] = {"score": e.score, "n": e.n, "metric": e.metric}
        names = {v.name for v in versions}
        rows, edges = [], []
        for v in versions:
            parent = v.parent or (v.base_ref if v.kind == "adapter" else None)
            if parent and parent in names:
                edges.append({"from": parent, "to": v.name})
            recipe = _d(v.recipe)
            rows.append(
                {
                    "name": v.name,
                    "kind": v.kind,
                    "base_ref": v.base_ref,
                    "parent": parent,
                    "task": v.task,
                    "adapter_path": v.adapter_path,
                    "data_hash": v.data_hash,
                    "created_at": jsonable(v.created_at),
                    "recipe": jsonable(recipe),
                    "recipe_short": _recipe_short(recipe),
                    "metrics": jsonable({k: val for k, val in _d(v.metrics).items() if k != "suites"}),
                    "aliases": sorted(aliases.get(v.name, [])),
                    "scores": latest.get(v.name, {}),
                }
            )
        return {"task": task, "versions": rows, "edges": edges}

    def model_diff(self, a: str, b: str, task: str | None = None) -> dict[str, Any]:
        """Two versions' scores on the suites both were evaluated on (same data set), with example flips."""
        for v in (a, b):
            self.store.get_model_version(v)
        with self.store.session() as s:
            q = (
                select(EvalResultRow)
                .where(col(EvalResultRow.model_version).in_([a, b]))
                .order_by(col(EvalResultRow.id))
            )
            if task:
                q = q.where(EvalResultRow.task == task)
            rows = list(s.exec(q))
        by: dict[tuple[str, str], EvalResultRow] = {}
        for r in rows:  # the latest result per (version, data set)
            by[(r.model_version, r.dataset_id)] = r
        shared = sorted({ds for (v, ds) in by if v == a} & {ds for (v, ds) in by if v == b})
        out = []
        for ds in shared:
            ra, rb = by[(a, ds)], by[(b, ds)]
            ca, cb = _correct(ra.outputs_path), _correct(rb.outputs_path)
            flips = None
            if ca and cb:
                ids = set(ca) & set(cb)
                flips = {
                    "newly_right": sorted(i for i in ids if not ca[i] and cb[i]),
                    "newly_wrong": sorted(i for i in ids if ca[i] and not cb[i]),
                }
            out.append(
                {
                    "dataset_id": ds,
                    "suite": rb.suite if rb.suite == ra.suite else f"{ra.suite} / {rb.suite}",
                    "run_id": rb.run_id or ra.run_id,
                    "metric": rb.metric,
                    "n": rb.n,
                    "a": ra.score,
                    "b": rb.score,
                    "delta": rb.score - ra.score,
                    "flips": flips,
                }
            )
        only = sorted({f"{r.suite}" for (v, ds), r in by.items() if ds not in shared})
        return {"a": a, "b": b, "task": task, "shared": out, "not_shared": only}

    # ----------------------------------------------------------------------------------- traces
    @staticmethod
    def _traces_query() -> Any:
        latest = (
            select(FeedbackRow.trace_id.label("tid"), func.max(FeedbackRow.id).label("fid"))  # type: ignore[attr-defined]
            .group_by(FeedbackRow.trace_id)
            .subquery()
        )
        return (
            select(TraceRow, FeedbackRow)
            .join(latest, latest.c.tid == TraceRow.id, isouter=True)
            .join(FeedbackRow, col(FeedbackRow.id) == latest.c.fid, isouter=True)
        )

    def trace_flags(self, task: str) -> dict[str, Any]:
        """Cluster membership and suspect flags of the task's traces, from every run's ``diagnosis.json`` (newest wins)."""
        runs = [r for r in self.store.list_runs(task)]
        files = []
        for r in runs:
            p = self.run_dir(r) / "diagnosis.json"
            try:
                files.append((r.id, p, p.stat().st_mtime))
            except OSError:
                continue
        key = tuple((rid, m) for rid, _, m in files)
        cached = self._flags_cache.get(task)
        if cached and cached[0] == key:
            return cached[1]
        clusters: dict[str, dict[str, Any]] = {}
        by_trace: dict[str, dict[str, Any]] = {}
        for rid, p, _ in files:  # newest run first
            diag = read_json(p)
            if not isinstance(diag, dict):
                continue
            for c in _l(diag.get("clusters")):
                if not isinstance(c, dict) or not c.get("key"):
                    continue
                k = str(c["key"])
                info = clusters.setdefault(
                    k,
                    {
                        "key": k,
                        "kind": c.get("kind"),
                        "fixable": c.get("fixable"),
                        "hypothesis": c.get("hypothesis"),
                        "run_id": rid,
                        "trace_ids": set(),
                    },
                )
                for t in _l(c.get("trace_ids")):
                    info["trace_ids"].add(str(t))
                    f = by_trace.setdefault(str(t), {"clusters": [], "suspect": []})
                    if k not in f["clusters"]:
                        f["clusters"].append(k)
            for sf in _l(diag.get("suspects")):
                if not isinstance(sf, dict) or not sf.get("trace_id"):
                    continue
                f = by_trace.setdefault(str(sf["trace_id"]), {"clusters": [], "suspect": []})
                if not any(x["run_id"] == rid for x in f["suspect"]):
                    f["suspect"].append(
                        {"kind": sf.get("kind"), "run_id": rid, "evidence": sf.get("evidence") or {}}
                    )
        result = {"clusters": clusters, "by_trace": by_trace}
        self._flags_cache[task] = (key, result)
        return result

    def traces(
        self,
        *,
        task: str | None = None,
        verdict: str | None = None,
        cluster: str | None = None,
        suspect: str | None = None,
        model_version: str | None = None,
        since: str | None = None,
        until: str | None = None,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Traces matching every filter given, newest first, with their latest feedback and flags."""
        if verdict and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        limit = max(1, min(int(limit), MAX_TRACES_PAGE))
        offset = max(0, int(offset))
        tasks = [task] if task else self.task_names()
        if task:
            self.store.get_task(task)
        flags = {t: self.trace_flags(t) for t in tasks}
        query = self._traces_query().where(col(TraceRow.task).in_(tasks))
        if verdict == "unlabeled":
            query = query.where(col(FeedbackRow.id).is_(None))
        elif verdict:
            query = query.where(FeedbackRow.verdict == verdict)
        if model_version:
            query = query.where(TraceRow.model_version == model_version)
        t0, t1 = parse_time(since), parse_time(until)
        if t0:
            query = query.where(col(TraceRow.timestamp) >= t0)
        if t1:
            if until and len(until.strip()) == 10:  # a date: the whole day
                t1 = t1 + timedelta(days=1)
            query = query.where(col(TraceRow.timestamp) < t1)
        if q:
            like = f"%{q.strip()}%"
            query = query.where(
                or_(
                    col(TraceRow.output).ilike(like),
                    cast(TraceRow.messages, String).ilike(like),
                    col(TraceRow.id) == q.strip(),
                )
            )
        if cluster or suspect:
            ids: set[str] = set()
            for f in flags.values():
                if cluster:
                    ids |= _d(f["clusters"].get(cluster)).get("trace_ids", set())
                else:
                    ids |= {
                        t
                        for t, x in f["by_trace"].items()
                        if x["suspect"]
                        and (
                            suspect in ("1", "true", "yes", "any")
                            or any(s.get("kind") == suspect for s in x["suspect"])
                        )
                    }
            if cluster and suspect:
                ids &= {t for f in flags.values() for t, x in f["by_trace"].items() if x["suspect"]}
            query = query.where(col(TraceRow.id).in_(sorted(ids)))
        with self.store.session() as s:
            total = s.exec(query.with_only_columns(func.count()).order_by(None)).one()
            total = int(total[0] if isinstance(total, tuple) or hasattr(total, "_fields") else total)
            rows = s.exec(
                query.order_by(
                    col(TraceRow.timestamp).desc(), col(TraceRow.imported_at).desc(), col(TraceRow.id)
                )
                .limit(limit)
                .offset(offset)
            ).all()
            versions = sorted(
                v
                for v in s.exec(
                    select(TraceRow.model_version).where(col(TraceRow.task).in_(tasks)).distinct()
                ).all()
                if v
            )
        items = []
        for tr, fb in rows:
            f = flags.get(tr.task, {}).get("by_trace", {}).get(tr.id) or {"clusters": [], "suspect": []}
            items.append(
                {
                    "id": tr.id,
                    "task": tr.task,
                    "timestamp": jsonable(tr.timestamp),
                    "model_version": tr.model_version,
                    "input": user_text(tr.messages),
                    "output": tr.output,
                    "verdict": fb.verdict if fb else None,
                    "correction": fb.correction if fb else None,
                    "reason": fb.reason if fb else None,
                    "feedback_source": fb.source if fb else None,
                    "clusters": f["clusters"],
                    "suspect": [x.get("kind") for x in f["suspect"]],
                }
            )
        clusters = sorted({k for f in flags.values() for k in f["clusters"]})
        kinds = sorted(
            {str(x.get("kind")) for f in flags.values() for t in f["by_trace"].values() for x in t["suspect"]}
        )
        return {
            "filters": {
                "task": task,
                "verdict": verdict,
                "cluster": cluster,
                "suspect": suspect,
                "model_version": model_version,
                "since": since,
                "until": until,
                "q": q,
            },
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": items,
            "facets": {
                "tasks": self.task_names(),
                "clusters": clusters,
                "suspect_kinds": kinds,
                "model_versions": versions,
            },
        }

    def trace(self, trace_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            tr = s.get(TraceRow, trace_id)
            if tr is None:
                raise NotFoundError(f"trace {trace_id!r} not found")
            feedback = list(
                s.exec(
                    select(FeedbackRow).where(FeedbackRow.trace_id == trace_id).order_by(col(FeedbackRow.id))
                )
            )
        flags = self.trace_flags(tr.task)
        f = flags["by_trace"].get(tr.id) or {"clusters": [], "suspect": []}
        return {
            "id": tr.id,
            "task": tr.task,
            "timestamp": jsonable(tr.timestamp),
            "imported_at": jsonable(tr.imported_at),
            "model_version": tr.model_version,
            "messages": jsonable(tr.messages),
            "output": tr.output,
            "metadata": jsonable(tr.trace_metadata),
            "latency_ms": tr.latency_ms,
            "prompt_tokens": tr.prompt_tokens,
            "completion_tokens": tr.completion_tokens,
            "source": tr.source,
            "feedback": [
                {
                    "verdict": x.verdict,
                    "correction": x.correction,
                    "reason": x.reason,
                    "source": x.source,
                    "confidence": x.confidence,
                    "at": jsonable(x.created_at),
                }
                for x in feedback
            ],
            "clusters": [
                {"key": k, **{kk: vv for kk, vv in flags["clusters"].get(k, {}).items() if kk != "trace_ids"}}
                for k in f["clusters"]
            ],
            "suspect": jsonable(f["suspect"]),
        }

    # ----------------------------------------------------------------------------------- skills
    def skills(self, task: str) -> dict[str, Any]:
        self.store.get_task(task)
        listed = {x["version"]: x for x in list_skills(self.store, task)}
        with self.store.session() as s:
            rows = list(s.exec(select(SkillRow).where(SkillRow.task == task).order_by(col(SkillRow.version))))
        versions = [
            {
                "version": r.version,
                "parent": r.parent,
                "created_at": jsonable(r.created_at),
                "body": jsonable(r.body),
                "aliases": _l(_d(listed.get(r.version)).get("aliases")),
            }
            for r in rows
        ]
        return {"task": task, "versions": versions}

    def skill_diff(self, task: str, a: int, b: int) -> dict[str, Any]:
        """Unified diff of two skill versions (0: no skill, the task's system prompt alone)."""
        sa = get_skill(self.store, task, a) if a else None
        sb = get_skill(self.store, task, b) if b else None
        text = diff_skills(sa, sb, (f"skill {a}", f"skill {b}"))
        return {"task": task, "a": a, "b": b, "diff": text.splitlines()}

    # ---------------------------------------------------------------------------------- history
    def alias_events(self, task: str) -> list[AliasEvent]:
        return self.store.alias_history(task)


def _recipe_short(recipe: dict[str, Any]) -> str:
    """One line of a version's recipe: what a person scans in a lineage graph."""
    parts = []
    for k in ("source", "kind", "strategy", "epochs", "learning_rate", "max_steps", "n_examples", "examples"):
        if recipe.get(k) not in (None, "", [], {}):
            parts.append(f"{k} {recipe[k]}")
    lora = recipe.get("lora")
    if isinstance(lora, dict) and lora.get("r"):
        parts.append(f"LoRA r{lora['r']}")
    return ", ".join(parts[:5])


def _correct(path: str | None) -> dict[str, bool] | None:
    if not path:
        return None
    rows = read_jsonl(Path(path))
    return {str(r.get("id")): bool(r.get("correct")) for r in rows if "id" in r} or None
