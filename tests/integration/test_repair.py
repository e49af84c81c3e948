"""End to end: a deployed v1 with a gap, production logs with poisoned feedback, one repair run.

Real everything: the default model, the v1 LoRA adapter (shared fixture), TRL training in a
subprocess, the SQLite store, LangGraph's SQLite checkpointer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaizen.tools import registry
from kaizen.tools.evaluate.backends import TransformersBackend
from kaizen.tools.logs import parse_traces
from kaizen.tools.schema import render
from kaizen.tools.workspace import find_workspace, init_workspace
from kaizen.workflows.bench.clinc import load_slice, make_logs, rows, to_items
from kaizen.workflows.repair import job as repair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prod_logs(smollm_dir: Path, clinc_v1: dict, clinc_task, tmp_path_factory) -> Path:
    """Logs produced by actually running v1 on CLINC inputs it was not trained on."""
    backend = TransformersBackend(smollm_dir, clinc_v1["adapter"])
    pairs = rows("train", clinc_task.labels, per_label=24, seed=5)
    trained = clinc_v1["train_ids"]
    pairs = [p for p, it in zip(pairs, to_items(pairs), strict=True) if it.id not in trained][:48]

    def run_model(texts: list[str]) -> list[str]:
        return backend.generate(
            [render(clinc_task, None, [{"role": "user", "content": t}]) for t in texts], max_new_tokens=12
        )

    logs, key = make_logs(
        run_model,
        clinc_task.labels,
        pairs,
        seed=3,
        poison_rate=0.08,
        unlabeled_rate=0.1,
        off_domain=[t for t, _ in load_slice()["oos"][:3]],
    )
    path = tmp_path_factory.mktemp("logs") / "prod.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in logs))
    path.with_name("answer_key.jsonl").write_text("".join(json.dumps(k) + "\n" for k in key))
    return path


def _workspace(tmp_path: Path, clinc_task, clinc_v1: dict, logs: Path):
    ws, _ = init_workspace(tmp_path)
    ws.store.add_task(clinc_task)
    registry.add_external(ws.store, "v1", clinc_v1["adapter"], base="base", task=clinc_task.name)
    registry.promote(ws.store, clinc_task.name, "v1", actor="test")
    res = parse_traces(logs)
    ws.store.import_traces(res.traces, path=str(logs), default_task=clinc_task.name)
    return find_workspace(tmp_path)


def test_repair_fixes_the_gap_and_excludes_poison(
    tmp_path: Path, clinc_task, clinc_v1: dict, prod_logs: Path
) -> None:
    ws = _workspace(tmp_path, clinc_task, clinc_v1, prod_logs)
    stats = ws.store.trace_stats(clinc_task.name)
    print(f"\nlogs: {stats}")
    assert stats["failures"] > 0 and stats["passes"] > 0
    run = repair.start(ws, clinc_task.name, approve=True, max_iterations=2, progress=print)
    s = run.summary
    print(json.dumps(s, indent=1))
    assert run.status == "promoted", s["verdict"]
    assert s["after"]["target"] > s["before"]["target"]
    assert s["new_regressions"] <= 2
    assert registry.resolve(ws.store, "production", clinc_task.name).name == s["candidate"]
    assert registry.resolve(ws.store, "previous", clinc_task.name).name == "v1"
    # Off-domain inputs with made-up corrections: most are caught ("how much is an overdraft fee"
    # is CLINC out-of-scope yet close to banking, so we don't demand all).
    key = [json.loads(line) for line in prod_logs.with_name("answer_key.jsonl").read_text().splitlines()]
    off = {k["id"] for k in key if "off_domain" in k["noise"]}
    caught = off & set(s["excluded_suspect"])
    assert len(caught) >= len(off) - 1
    train = [
        json.loads(line)
        for line in Path(run.report_path).with_name("iter-1").joinpath("train.jsonl").read_text().splitlines()
    ]
    assert not caught & {it["id"] for it in train}
    _assert_no_step_trained_on_what_judged_it(Path(run.report_path).parent, s)
    # where the minutes went: every phase timed, the steps add up to no more than the whole
    t = s["seconds"]
    assert {"diagnose", "synthesize", "train", "evaluate", "gate"} <= set(t["by_phase"])
    assert t["by_phase"]["train"] > 0 and "1" in t["by_step"]
    assert sum(t["by_step"].values()) <= t["total"] + 0.5


def _ids(path: Path) -> set[str]:
    """Trace ids of a JSONL data file (weighted copies and replay repeats map back to their trace)."""
    if not path.exists():
        return set()
    return {
        (r.get("metadata") or {}).get("trace_id") or r["id"].split("~")[0]
        for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())
    }


def _assert_no_step_trained_on_what_judged_it(run_dir: Path, summary: dict) -> None:
    """Asserted on ids: loop steps never train on the target, regression or final traces; the refit trains on
    the target but never on the regression suite or the final slice it is verified on."""
    from kaizen.tools.rundir import RunDir

    rd = RunDir(run_dir)
    roles = {
        name: _ids(rd.suite(name))
        for name in ("target", "regression", "final", "train_failures", "replay_pool")
    }
    # (a final slice exists from ~135 trusted traces on: min 20 at 15 %; these ~50-trace logs have none)
    for a in roles:
        for b in roles:
            if a < b:
                assert not roles[a] & roles[b], (a, b)  # every trace has one role
    for step in rd.steps():
        trained = _ids(rd.train_set(step))
        assert not trained & roles["final"], step
        assert not trained & roles["regression"], step
        if step != "refit":
            assert not trained & roles["target"], step
    if "refit" in rd.steps():
        assert _ids(rd.train_set("refit")) & roles["target"]
    assert summary["path"] and summary["path"][0]["step"] == "1"


def test_candidate_that_breaks_passing_examples_is_not_promoted(
    tmp_path: Path, clinc_task, clinc_v1: dict, prod_logs: Path
) -> None:
    """Construct a bad candidate — the raw base model, which answers no label — and run the real
    evaluate and gate nodes on it: the gate fails on regressions and routing rolls back."""
    from kaizen.agent.routing import after_gate
    from kaizen.agent.state import Diagnosis
    from kaizen.tools.data import write_items
    from kaizen.tools.datasets.splits import build_splits

    ws = _workspace(tmp_path, clinc_task, clinc_v1, prod_logs)
    from kaizen.agent.rule_brain import RuleBrain

    traces = ws.store.traces(clinc_task.name)
    diag: Diagnosis = RuleBrain().diagnose(clinc_task, traces)
    splits = build_splits(
        clinc_task,
        traces,
        excluded=diag.suspect_ids,
        clusters={c.key: c.trace_ids for c in diag.clusters if c.fixable},
    )
    run_dir = tmp_path / "run"
    paths = {}
    for name in ("target", "regression"):
        paths[name] = str(run_dir / f"{name}.jsonl")
        write_items(Path(paths[name]), getattr(splits, name))
    state = {
        "run_id": "constructed01",
        "task": clinc_task.name,
        "incumbent": "v1",
        "candidate": "base",
        "iteration": 1,
        "max_iterations": 1,
        "splits": paths,
        "artifacts": str(run_dir),
        "evals": {},
        "preset": "repair",
    }
    from langgraph.runtime import Runtime

    from kaizen.agent.context import RunContext
    from kaizen.agent.nodes.evaluate import evaluate
    from kaizen.agent.nodes.gate import gate

    rt = Runtime(context=RunContext(workspace=ws, brain=RuleBrain()))
    state |= evaluate(state, rt)
    update = gate(state, rt)
    verdict = update["verdict"]
    print(verdict["reasons"])
    assert not verdict["passed"]
    assert verdict["new_regressions"] > 2
    assert any("regression" in r and "more than allowed" in r for r in verdict["reasons"])
    assert after_gate(state | update) == "rollback"
    assert registry.resolve(ws.store, "production", clinc_task.name).name == "v1"


def test_killed_repair_resumes_without_redoing_nodes_or_training_twice(
    tmp_path: Path, clinc_task, clinc_v1: dict, prod_logs: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    ws = _workspace(tmp_path, clinc_task, clinc_v1, prod_logs)
    kaizen = str(Path(sys.executable).parent / "kaizen")
    proc = subprocess.Popen(
        [
            kaizen,
            "-w",
            str(tmp_path),
            "repair",
            "--task",
            clinc_task.name,
            "--approve",
            "--max-iterations",
            "1",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 600
    ckpt = []
    while time.time() < deadline and not ckpt:
        ckpt = list(
            (tmp_path / ".kaizen" / "artifacts" / "runs").glob(
                "*/iter-1/job/checkpoints/checkpoint-*/trainer_state.json"
            )
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.5)
    assert ckpt, "training never wrote a checkpoint"
    os.kill(proc.pid, signal.SIGKILL)  # the agent dies; its trainer (own process group) is orphaned
    proc.wait()
    job_dir = ckpt[0].parents[2]
    runner_pid = json.loads((job_dir / "runner.pid").read_text())["pid"]
    run_id = job_dir.parents[1].name
    assert ws.store.get_run(run_id).status == "running"  # what a kill -9 leaves behind

    out = subprocess.run(
        [kaizen, "-w", str(tmp_path), "runs", "resume", run_id, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] in ("promoted", "not_promoted")
    assert (
        "adopting training runner" in out.stderr
        or json.loads((job_dir / "runner.pid").read_text())["pid"] == runner_pid
    )
    # No second trainer: the runner that finished the job is the one started before the kill.
    assert json.loads((job_dir / "runner.pid").read_text())["pid"] == runner_pid
    assert (job_dir / "train.log").read_text().count("runner: done") == 1
    # Finished nodes were not redone.
    phases = [e["phase"] for e in ws.store.get_run(run_id).events]
    assert phases.count("observe") == 1 and phases.count("diagnose") == 1 and phases.count("train") == 1
    # A finished run cannot be resumed into running again.
    again = subprocess.run(
        [kaizen, "-w", str(tmp_path), "runs", "resume", run_id, "--json"], capture_output=True, text=True
    )
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == summary["status"]


def test_second_repair_on_the_same_task_is_refused(
    tmp_path: Path, clinc_task, clinc_v1: dict, prod_logs: Path
) -> None:
    import subprocess
    import sys

    from kaizen.tools import lock
    from kaizen.tools.proc import process_start

    ws = _workspace(tmp_path, clinc_task, clinc_v1, prod_logs)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.acquire(ws.store, clinc_task.name, "other-run")
        from kaizen.tools.store.tables import LockRow

        with ws.store.session() as s:
            row = s.get(LockRow, clinc_task.name)
            row.pid, row.proc_start = holder.pid, process_start(holder.pid)  # a live process holds it
            s.add(row)
        kaizen = str(Path(sys.executable).parent / "kaizen")
        out = subprocess.run(
            [kaizen, "-w", str(tmp_path), "repair", "--task", clinc_task.name], capture_output=True, text=True
        )
        assert out.returncode == 4
        assert "busy" in out.stderr and "other-run" in out.stderr
        assert not ws.store.list_runs(clinc_task.name)  # refused before any record was written
    finally:
        holder.kill()
