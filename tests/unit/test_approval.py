"""Answering an approval: who decided and *why* end up in the run record, whichever way the answer came.

A repair run is brought to its approval interrupt through the real graph and checkpointer: its checkpoint
is written as if the gate had just passed a candidate (``update_state(as_node="gate")``), and
``kaizen runs resume`` runs the real promote node up to ``interrupt()`` — no model, no training. Then
``kaizen runs approve|reject RUN --reason TEXT`` (and the dashboard, through the ``decide`` that ``kaizen ui``
injects) answer it. A cold start waiting for approval is a run row with its best attempt.

The three ways in (``runs approve|reject``, the dashboard, a cold start's own decision) share one dispatch,
``kaizen.workflows.cli.approval.decide_run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kaizen.tools.schema import TaskSpec
from kaizen.tools.store.tables import ModelVersionRow, RunRow
from kaizen.tools.workspace import Workspace, find_workspace, init_workspace
from kaizen.workflows.cli.main import main

TASK = TaskSpec(name="intents", kind="classification", labels=["balance", "transfer"])
WHY = "fixes the held-out transfer failures; nothing broken"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    init_workspace(tmp_path / "ws")
    ws = find_workspace(tmp_path / "ws")
    ws.store.add_task(TASK)
    adapter = tmp_path / "adapters" / "cand1"
    adapter.mkdir(parents=True)
    ws.store.add_model_version(
        ModelVersionRow(
            name="cand1",
            kind="adapter",
            base_ref="base",
            parent="base",
            task=TASK.name,
            adapter_path=str(adapter),
        )
    )
    return ws


def repair_waiting(ws: Workspace, run_id: str = "rep000000001") -> str:
    """A repair run stopped at the promote node's approval interrupt (real graph, real checkpoint)."""
    from kaizen.workflows.repair import job

    now = time.time()
    run_dir = ws.artifact_dir("runs", run_id)
    splits = {}
    for name in ("target", "regression"):
        splits[name] = str(run_dir / f"{name}.jsonl")
        Path(splits[name]).parent.mkdir(parents=True, exist_ok=True)
        Path(splits[name]).write_text("")
    passed = {
        "passed": True,
        "reasons": ["target 0.000 → 1.000 (+1.000; 2 fixed, 0 broken)"],
        "candidate": "cand1",
        "candidate_version": "cand1",
        "candidate_skill": None,
        "target_after": 1.0,
        "step": "1",
    }
    state: dict[str, Any] = {
        "run_id": run_id,
        "task": TASK.name,
        "preset": "repair",
        "auto_approve": False,
        "incumbent": "base",
        "incumbent_skill": None,
        "iteration": 1,
        "max_iterations": 1,
        "started_at": now,
        "deadline": now + 3600,
        "train_tokens_budget": 1000,
        "train_tokens_used": 0,
        "artifacts": str(run_dir),
        "evals": {},
        "promoted": False,
        "target_score": 0.95,
        "plateau": 0.02,
        "refit_enabled": False,
        "recoveries": [],
        "recovery": [],
        "final_n": 0,
        "splits": splits,
        "candidate": "cand1",
        "verdict": passed,
        "best": passed,
    }
    ws.store.save_run(
        RunRow(
            id=run_id,
            task=TASK.name,
            workflow="repair",
            status="running",
            thread_id=run_id,
            config={"preset": "repair", "approve": False},
        )
    )
    with job._graph(ws) as graph:
        cfg = {"configurable": {"thread_id": run_id}}
        graph.update_state(cfg, state, as_node="gate")
        assert graph.get_state(cfg).next == ("promote",)
    run = job.resume(ws, run_id)  # runs the promote node until it asks
    assert run.status == "awaiting_approval", run.status
    return run_id


def cold_start_waiting(ws: Workspace, tmp_path: Path, run_id: str = "cs0000000001") -> str:
    attempt = {
        "index": 0,
        "name": "sft",
        "strategy": "sft",
        "why": "first",
        "version": "cand1",
        "status": "done",
        "score": 0.8,
        "train_tokens": 10,
        "seconds": 1.0,
        "params": {},
        "oversample": {},
        "error": None,
    }
    (tmp_path / "cs-run").mkdir(exist_ok=True)
    ws.store.save_run(
        RunRow(
            id=run_id,
            task=TASK.name,
            workflow="cold-start",
            status="awaiting_approval",
            thread_id=run_id,
            config={"run_dir": str(tmp_path / "cs-run")},
            summary={
                "n_train": 8,
                "n_eval": 4,
                "base": {"version": "base", "score": 0.5},
                "attempts": [attempt],
                "best": {"attempt": 0, "name": "sft", "version": "cand1", "score": 0.8},
                "verdict": {"passed": True, "reasons": ["held-out 0.500 → 0.800"]},
                "promoted": False,
            },
        )
    )
    return run_id


def kaizen(ws: Workspace, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["-w", str(ws.root), *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def promote_event(run: RunRow) -> dict[str, Any]:
    (e,) = [e for e in run.events if e.get("phase") == "promote"]
    return e


def test_runs_approve_keeps_the_reason_in_the_run_record_and_report(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = repair_waiting(ws)
    code, out = kaizen(ws, capsys, "runs", "approve", run_id, "--reason", WHY)
    assert code == 0 and out["status"] == "promoted"
    run = ws.store.get_run(run_id)
    assert run.status == "promoted" and ws.store.get_alias(TASK.name, "production").model_version == "cand1"
    # In the run record: the summary and the promote event, through the Store.
    assert run.summary["approval"]["reason"] == WHY and run.summary["approval"]["approved"] is True
    assert promote_event(run)["approval"]["reason"] == WHY
    assert out["approval"]["reason"] == WHY  # `--json` shows it
    # In the report: report.json's summary and the page.
    report = json.loads(Path(run.report_path or "").read_text())
    assert report["summary"]["approval"]["reason"] == WHY
    assert WHY in Path(run.report_path or "").with_name("report.html").read_text()
    # `runs show` prints who decided and why.
    assert main(["-w", str(ws.root), "runs", "show", run_id]) == 0
    assert f"approved by {run.summary['approval']['by']}: {WHY}" in capsys.readouterr().out


def test_runs_reject_keeps_the_reason_and_production(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = repair_waiting(ws)
    code, out = kaizen(ws, capsys, "runs", "reject", run_id, "--reason", "wait for the holiday traffic")
    assert code == 0 and out["status"] == "rejected"
    run = ws.store.get_run(run_id)
    assert run.status == "rejected" and ws.store.get_alias(TASK.name, "production").model_version == "base"
    assert run.summary["approval"] == promote_event(run)["approval"]
    assert run.summary["approval"]["reason"] == "wait for the holiday traffic"
    assert run.summary["approval"]["approved"] is False


def test_a_reason_is_optional_on_the_command_line(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = repair_waiting(ws)
    code, _ = kaizen(ws, capsys, "runs", "reject", run_id)
    assert code == 0 and ws.store.get_run(run_id).summary["approval"]["reason"] is None


def test_a_cold_start_keeps_the_reason_in_its_record_and_report(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = cold_start_waiting(ws, tmp_path)
    code, out = kaizen(ws, capsys, "runs", "approve", run_id, "--reason", WHY)
    assert code == 0 and out["status"] == "promoted" and out["approval"]["reason"] == WHY
    run = ws.store.get_run(run_id)
    assert run.summary["approval"]["reason"] == WHY
    assert ws.store.get_alias(TASK.name, "production").model_version == "cand1"
    report = json.loads(Path(run.report_path or "").read_text())
    assert report["approval"]["reason"] == WHY and report["run"]["status"] == "promoted"
    assert WHY in Path(run.report_path or "").with_suffix(".html").read_text()


def test_the_dashboard_passes_the_reason_to_the_same_decision(ws: Workspace, tmp_path: Path) -> None:
    """``kaizen ui`` injects ``decide_run``: the reason typed in the page lands in the run record, and the
    dashboard keeps no file of its own."""
    from kaizen.workflows.cli.cmd_ui import approval_decider
    from kaizen.workflows.ui.app import create_app

    repair_id, cold_id = repair_waiting(ws), cold_start_waiting(ws, tmp_path)
    client = TestClient(create_app(ws, token="tok", decide=approval_decider(ws), poll_ms=200))
    headers = {"X-Kaizen-Token": "tok"}
    r = client.post(
        f"/api/runs/{repair_id}/reject", json={"reason": "not before Monday", "by": "ana"}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["decision"]["reason"] == "not before Monday" and r.json()["decision"]["status"] == "rejected"
    )
    run = ws.store.get_run(repair_id)
    assert promote_event(run)["approval"] | {"at": None} == {
        "approved": False,
        "by": "ana (kaizen ui)",
        "reason": "not before Monday",
        "at": None,
    }
    shown = client.get(f"/api/runs/{repair_id}").json()["approvals"]
    assert [(a["source"], a["reason"]) for a in shown] == [("run", "not before Monday")]  # once, not twice
    r = client.post(f"/api/runs/{cold_id}/approve", json={"reason": WHY, "by": "bo"}, headers=headers)
    assert r.status_code == 200 and ws.store.get_run(cold_id).summary["approval"]["reason"] == WHY
    assert not list(ws.artifacts.rglob("approvals.jsonl"))
    assert not list((tmp_path / "cs-run").rglob("approvals.jsonl"))
