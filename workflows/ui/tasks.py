"""The tasks pages: each task's aliases, verdict counts, failure rate over time, recent runs and ticks."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from kaizen.tools.store.repo import as_utc
from kaizen.tools.store.tables import TickRow
from kaizen.workflows.ui.base import ReaderBase
from kaizen.workflows.ui.common import as_dict, as_list, jsonable


class TasksView(ReaderBase):
    """Overview and per-task pages."""

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
        c = Counter({(v or "unlabeled"): n for v, n in self.store.verdict_counts(task).items()})
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
        decision = as_dict(t.decision)
        return {
            "id": t.id,
            "status": t.status,
            "run_id": t.run_id,
            "started_at": jsonable(t.started_at),
            "finished_at": jsonable(t.finished_at),
            "imported": as_dict(t.ingested).get("imported"),
            "reasons": as_list(decision.get("reasons"))[:3],
            "error": t.error,
        }

    def failure_rate_series(self, task: str, max_points: int = 24) -> dict[str, Any]:
        """Failure rate of labelled traces over time: per day, per hour, or (no timestamps) per block of traces."""
        rows = self.store.labelled_verdicts(task)
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
