"""diagnose: failure taxonomy + suspect feedback, written to the run directory."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, event, run_dir
from kaizen.agent.policy import load_traces
from kaizen.agent.state import RepairState
from kaizen.tools.data import write_json


def diagnose(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    diag = c.brain.diagnose(task, load_traces(c, task))
    if c.answer_key:  # the oracle: perfect triage, nothing to distrust
        diag = diag.model_copy(
            update={"suspects": [], "clusters": [k for k in diag.clusters if k.kind != "suspect"]}
        )
    if any(k.probes for k in diag.clusters):
        from kaizen.agent.probes import run_probes
        from kaizen.tools.versions import make_backend

        n = run_probes(task, diag, make_backend(ws, ws.store.get_model_version(state["incumbent"])))
        confirmed = [k.key for k in diag.clusters if k.confirmed]
        c.say(
            f"diagnose: {n} probes run on the incumbent; hypotheses confirmed for {len(confirmed)} clusters"
        )
    path = write_json(run_dir(state).diagnosis, diag.model_dump())
    fixable = [k for k in diag.clusters if k.fixable]
    c.say(
        f"diagnose: {diag.n_failures} failures in {len(fixable)} fixable clusters, "
        f"{len(diag.suspects)} suspect feedback, {diag.n_unlabeled} unlabeled"
    )
    return {
        "diagnosis_path": path,
        "excluded_suspect": sorted(diag.suspect_ids),
        "has_fixable": any(k.fixable and k.count for k in diag.clusters),
        "events": [
            event(
                "diagnose",
                failures=diag.n_failures,
                clusters=len(diag.clusters),
                suspects=len(diag.suspects),
                unlabeled=diag.n_unlabeled,
            )
        ],
    }
