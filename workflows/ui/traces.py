"""The traces pages: filter and page through traces, one trace with its feedback, clusters and suspect flags.

Cluster membership and suspect flags are not in the store: they come from each run's ``diagnosis.json``
(newest run wins) and are cached per task until one of those files changes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kaizen.workflows.ui.base import ReaderBase
from kaizen.workflows.ui.common import (
    MAX_TRACES_PAGE,
    VERDICTS,
    as_dict,
    as_list,
    jsonable,
    parse_time,
    read_json,
    user_text,
)


class TracesView(ReaderBase):
    """The trace browser and one trace's page."""

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
            for c in as_list(diag.get("clusters")):
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
                for t in as_list(c.get("trace_ids")):
                    info["trace_ids"].add(str(t))
                    f = by_trace.setdefault(str(t), {"clusters": [], "suspect": []})
                    if k not in f["clusters"]:
                        f["clusters"].append(k)
            for sf in as_list(diag.get("suspects")):
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
        t0, t1 = parse_time(since), parse_time(until)
        if t1 and until and len(until.strip()) == 10:  # a date: the whole day
            t1 = t1 + timedelta(days=1)
        ids: set[str] = set()
        if cluster or suspect:
            for f in flags.values():
                if cluster:
                    ids |= as_dict(f["clusters"].get(cluster)).get("trace_ids", set())
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
        page = self.store.browse_traces(
            tasks,
            verdict=verdict,
            model_version=model_version,
            since=t0,
            until=t1,
            text=q,
            ids=ids if cluster or suspect else None,
            limit=limit,
            offset=offset,
        )
        items = []
        for tr, fb in page.rows:
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
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "items": items,
            "facets": {
                "tasks": self.task_names(),
                "clusters": clusters,
                "suspect_kinds": kinds,
                "model_versions": page.model_versions,
            },
        }

    def trace(self, trace_id: str) -> dict[str, Any]:
        tr, feedback = self.store.trace_with_feedback(trace_id)
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
