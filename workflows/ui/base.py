"""What every page of the dashboard needs: the workspace's tasks, where a run's directory is, a run in one line.

The pages (``tasks``, ``runs``, ``traces``, ``versions``) each add their own reads on top of this base;
``data.Reader`` puts them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.tools.store import Store
from kaizen.tools.store.tables import RunRow
from kaizen.workflows.ui.common import as_dict, as_list, jsonable


class ReaderBase:
    """The dashboard's read model over one workspace's store and artifacts."""

    def __init__(self, store: Store, artifacts: Path) -> None:
        self.store = store
        self.artifacts = Path(artifacts)
        self._flags_cache: dict[str, tuple[Any, dict[str, Any]]] = {}  # traces: diagnosis flags per task

    def task_names(self) -> list[str]:
        return [spec.name for spec, _ in self.store.list_tasks()]

    def run_dir(self, run: RunRow) -> Path:
        cfg = as_dict(run.config)
        if run.report_path:
            return Path(run.report_path).parent
        if cfg.get("run_dir"):
            return Path(cfg["run_dir"])
        return self.artifacts / "runs" / run.id

    def run_summary(self, run: RunRow) -> dict[str, Any]:
        s = as_dict(run.summary)
        verdict = as_dict(s.get("verdict"))
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
            "reasons": as_list(verdict.get("reasons")),
            "promoted": s.get("promoted"),
            "incumbent": s.get("incumbent") or as_dict(s.get("base")).get("version"),
            "candidate": s.get("candidate") or as_dict(s.get("best")).get("version"),
            "before": as_dict(s.get("before")),
            "after": as_dict(s.get("after")),
            "fixed": s.get("fixed"),
            "new_regressions": s.get("new_regressions"),
            "excluded": len(as_list(s.get("excluded_suspect"))) if "excluded_suspect" in s else None,
        }
