"""diagnose: failure taxonomy + suspect feedback, written to the run directory."""

from __future__ import annotations

from typing import Any

from kaizen.agent.context import brain, event, progress, run_dir, workspace, write_json
from langchain_core.runnables import RunnableConfig


def diagnose(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    ws = workspace(config)
    task = ws.store.get_task(state["task"])
    diag = brain(config).diagnose(task, ws.store.traces(task.name))
    if any(c.probes for c in diag.clusters):
        from kaizen.agent.probes import run_probes
        from kaizen.tools.versions import make_backend

        n = run_probes(task, diag, make_backend(ws, ws.store.get_model_version(state["incumbent"])))
        confirmed = [c.key for c in diag.clusters if c.confirmed]
        progress(config, f"diagnose: {n} probes run on the incumbent; hypotheses confirmed for {len(confirmed)} clusters")
    path = write_json(run_dir(state) / "diagnosis.json", diag.model_dump())
    fixable = [c for c in diag.clusters if c.fixable]
    progress(config, f"diagnose: {diag.n_failures} failures in {len(fixable)} fixable clusters, "
                     f"{len(diag.suspects)} suspect feedback, {diag.n_unlabeled} unlabeled")
    return {
        "diagnosis_path": path,
        "excluded_suspect": sorted(diag.suspect_ids),
        "has_fixable": any(c.fixable and c.count for c in diag.clusters),
        "events": [event("diagnose", failures=diag.n_failures, clusters=len(diag.clusters), suspects=len(diag.suspects),
                         unlabeled=diag.n_unlabeled)],
    }
