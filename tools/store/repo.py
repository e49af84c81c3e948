"""The repository API: every read and write the CLI and the agent make goes through ``Store``.

No raw SQL outside this package. Each public write is one transaction: it commits fully or not at
all, which is what lets a bad import or a killed process leave the database consistent.

The queries live in one module per concept and meet here in one class:

* ``base`` — the engine, the transaction (``session``) and how an unusable database is reported;
* ``catalog`` — tasks, model versions, aliases, evaluation results, skills;
* ``traces`` — importing traces and feedback, and reading each trace with its latest feedback;
* ``jobs`` — runs, ticks, servers, task locks, the scheduled loop's cursors and waiting records;
* ``browse`` — the dashboard's filtered, paged reads of traces and their feedback.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kaizen.tools.store.base import StoreBase, as_utc
from kaizen.tools.store.browse import BrowseStore, TracePage
from kaizen.tools.store.catalog import CatalogStore, task_row_to_spec
from kaizen.tools.store.jobs import JobStore
from kaizen.tools.store.traces import ImportStats, TraceStore, TraceView

__all__ = ["ImportStats", "Store", "StoreBase", "TracePage", "TraceView", "as_utc", "task_row_to_spec"]


class Store(CatalogStore, TraceStore, JobStore, BrowseStore):
    """Repository over one database URL (SQLite file by default, any SQLAlchemy URL)."""

    def trace_stats(self, task: str) -> dict[str, Any]:
        """Counts, failure rate and label distribution (gold per feedback) for a task."""
        spec = self.get_task(task)
        views = self.traces(task)
        verdicts = Counter(v.verdict or "unlabeled" for v in views)
        labeled = verdicts["pass"] + verdicts["fail"]
        stats: dict[str, Any] = {
            "task": task,
            "traces": len(views),
            "passes": verdicts["pass"],
            "failures": verdicts["fail"],
            "unlabeled": verdicts["unlabeled"],
            "failure_rate": round(verdicts["fail"] / labeled, 4) if labeled else None,
            "failures_without_correction": sum(1 for v in views if v.verdict == "fail" and not v.correction),
        }
        if spec.kind == "classification":
            stats["gold_labels"] = dict(Counter(v.gold for v in views if v.gold is not None).most_common())
            stats["outputs"] = dict(Counter(v.output.strip() for v in views).most_common())
        return stats
