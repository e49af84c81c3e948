"""Kill -9 at every node of the repair graph, then ``kaizen runs resume``: the same outcome as a run never killed.

``KAIZEN_TEST_KILL_AFTER=<node>`` (agent/killpoints.py) SIGKILLs the process when that node returns —
its files, rows, trainer or alias move done, its checkpoint not written — so the resumed run must
redo the node on top of its own side effects. For each scenario one uninterrupted reference run is
made; then a second workspace is killed after each node in turn (a ``kaizen runs resume`` killed at
the next node, and so on) and finally resumed to the end. One training job per scenario instead of
one per node keeps the module within minutes on the tiny model. Compared with the reference: the
aliases, the verdict, every suite score (ids and timings normalised away), the row count of every
table, one trainer per job.

Scenarios: ``promote`` (the yes/no tiny Llama learns to stop after its label: the gate passes) and
``nothing-to-train`` (every failure is a near-duplicate of a held-out one: synthesize → rollback).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

KAIZEN = str(Path(sys.executable).parent / "kaizen")
TASK = "q"
SYSTEM = "Answer with one label: yes, no."  # the prompt yes_no_llama_dir was calibrated with
# The tiny model trains 40 steps at a high rate: enough to learn to stop after "no" (the gate passes).
START = """
import sys
from pathlib import Path
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.repair import job
ws = find_workspace(Path(sys.argv[1]))
job.start(ws, sys.argv[2], approve=True, max_iterations=1, train_overrides={"max_steps": 40},
          plan_defaults={"learning_rate": 5e-3})
"""


def clinc_lines(near_duplicates: bool) -> list[dict[str, Any]]:
    """CLINC balance → "yes", transfer → "no"; half of them failures with a correction."""
    if near_duplicates:  # all failures look alike: nothing is left to train on once the suites are held out
        pairs = [(f"what is my balance {i}", "balance") for i in range(6)] + [
            (f"send money to bob {i}", "transfer") for i in range(6)
        ]
    else:
        from kaizen.workflows.bench.clinc import rows

        pairs = rows("train", ["balance", "transfer"], per_label=10, seed=4)
    out = []
    for i, (text, gold) in enumerate(pairs):
        lab = "yes" if gold == "balance" else "no"
        fail = (i % 2 == 0) if not near_duplicates else gold == "balance"
        fb = {"verdict": "fail", "correction": lab} if fail else {"verdict": "pass"}
        out.append(
            {
                "messages": [{"role": "user", "content": text}],
                "output": ("no" if lab == "yes" else "yes") if fail else lab,
                "feedback": fb,
            }
        )
    return out


def make_workspace(root: Path, model: Path, lines: list[dict[str, Any]]) -> Path:
    kz = [KAIZEN, "-w", str(root)]
    (root / "logs.jsonl").parent.mkdir(parents=True, exist_ok=True)
    (root / "logs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for args in (
        ["init", str(root)],
        ["task", "add", TASK, "--kind", "classification", "--labels", "yes,no", "--system-prompt", SYSTEM],
        ["models", "add", "tiny", "--path", str(model), "--task", TASK, "--promote"],
        ["ingest", str(root / "logs.jsonl"), "--task", TASK],
    ):
        out = subprocess.run(kz + args, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
    return root


def run_kaizen(args: list[str], kill_after: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAIZEN_TEST_KILL_AFTER"}
    if kill_after:
        env["KAIZEN_TEST_KILL_AFTER"] = kill_after
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=900, check=False)


def start(ws: Path, kill_after: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_kaizen([sys.executable, "-c", START, str(ws), TASK], kill_after)


def resume(ws: Path, run_id: str, kill_after: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_kaizen([KAIZEN, "-w", str(ws), "runs", "resume", run_id, "--json"], kill_after)


def run_id_of(ws: Path) -> str:
    out = subprocess.run(
        [KAIZEN, "-w", str(ws), "runs", "list", "--json"], capture_output=True, text=True, check=True
    )
    (run,) = json.loads(out.stdout)
    return run["run_id"]


def history(ws: Path, run_id: str) -> list[str]:
    """The nodes the run executed, in order, from its checkpoints."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from kaizen.agent.graph import build_graph

    conn = sqlite3.connect(str(ws / ".kaizen" / "checkpoints.db"), check_same_thread=False)
    try:
        graph = build_graph(SqliteSaver(conn))
        snaps = list(graph.get_state_history({"configurable": {"thread_id": run_id}}))
    finally:
        conn.close()
    return [
        s.next[0] for s in reversed(snaps) if s.next and s.next[0] in graph.nodes and s.next[0] != "__start__"
    ]


def next_node(ws: Path, run_id: str) -> tuple[str, ...]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from kaizen.agent.graph import build_graph

    conn = sqlite3.connect(str(ws / ".kaizen" / "checkpoints.db"), check_same_thread=False)
    try:
        return tuple(build_graph(SqliteSaver(conn)).get_state({"configurable": {"thread_id": run_id}}).next)
    finally:
        conn.close()


def outcome(ws: Path, run_id: str) -> dict[str, Any]:
    """What a user sees of a finished run, with the run's id (and so its versions' names) normalised."""
    from kaizen.tools.workspace import find_workspace

    w = find_workspace(ws)
    try:
        run = w.store.get_run(run_id)
        report = json.loads(Path(run.report_path).read_text())
        aliases = {name: (a.model_version, a.skill_version) for name, a in w.store.aliases(TASK).items()}
        evals = {r.model_version + "/" + r.suite: (r.score, r.n) for r in w.store.eval_results(TASK)}
        eval_keys = [(r.model_version, r.suite, r.dataset_id) for r in w.store.eval_results(TASK)]
    finally:
        w.store.close()
    con = sqlite3.connect(ws / ".kaizen" / "kaizen.db")
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    con.close()
    jobs = sorted((ws / ".kaizen" / "artifacts" / "runs" / run_id).glob("**/job/train.log"))
    norm = json.loads(
        json.dumps(
            {
                "status": run.status,
                "aliases": aliases,
                "verdict": report["summary"]["verdict"],
                "summary": {
                    k: report["summary"][k]
                    for k in (
                        "before",
                        "after",
                        "fixed",
                        "new_regressions",
                        "iterations",
                        "promoted",
                        "candidate",
                    )
                },
                "evals": evals,
                "rows": counts,
            }
        )
        .replace(run_id[:8], "<run>")
        .replace(run_id, "<run>")
    )
    norm["duplicate_evals"] = len(eval_keys) - len(set(eval_keys))
    norm["trainers"] = [log.read_text().count("runner: done") for log in jobs]
    return norm


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats within 1e-6."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: {sorted(a)} != {sorted(b)}"
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


SCENARIOS = ("promote", "nothing-to-train")
# Nodes no scenario above reaches yet (each needs its own training runs: minutes more on a CPU).
NOT_YET = {
    "refit": "needs a final slice and a second training job per run",
    "recover": "needs a candidate that fixes the target but breaks regressions, reproducibly",
}


@pytest.fixture(scope="module")
def scenarios(yes_no_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Per scenario: the reference outcome, and per node killed there: what the kill and the resume did."""
    covered: set[str] = set()
    done: dict[str, dict[str, Any]] = {}
    for name in SCENARIOS:
        lines = clinc_lines(near_duplicates=name == "nothing-to-train")
        base = make_workspace(tmp_path_factory.mktemp(f"{name}-base"), yes_no_llama_dir, lines)
        ref_ws = Path(shutil.copytree(base, tmp_path_factory.mktemp(f"{name}-ref") / "ws"))
        out = start(ref_ws)
        assert out.returncode == 0, out.stderr[-3000:]
        ref_id = run_id_of(ref_ws)
        order = history(ref_ws, ref_id)
        todo = [n for n in dict.fromkeys(order) if n not in covered]
        covered |= set(order)
        if not todo:
            continue
        ws = Path(shutil.copytree(base, tmp_path_factory.mktemp(f"{name}-killed") / "ws"))
        kills: dict[str, dict[str, Any]] = {}
        run_id, prev = None, None
        for node in todo:
            out = start(ws, node) if run_id is None else resume(ws, run_id, node)
            run_id = run_id or run_id_of(ws)
            if prev:  # this process first resumed the run killed after `prev`
                kills[prev]["resume_stderr"] = out.stderr
            kills[node] = {"returncode": out.returncode, "stderr": out.stderr, "next": next_node(ws, run_id)}
            prev = node
        assert run_id is not None and prev is not None
        final = resume(ws, run_id)
        assert final.returncode == 0, final.stderr[-3000:]
        kills[prev]["resume_stderr"] = final.stderr
        done[name] = {
            "order": order,
            "kills": kills,
            "reference": outcome(ref_ws, ref_id),
            "killed": outcome(ws, run_id),
            "final": json.loads(final.stdout),
        }
    return done


def _graph_nodes() -> list[str]:
    from kaizen.agent.graph import build_graph

    return sorted(n for n in build_graph().nodes if n != "__start__")


@pytest.mark.parametrize("node", _graph_nodes())
def test_kill_after_node_then_resume(scenarios: dict[str, dict[str, Any]], node: str) -> None:
    where = [s for s in scenarios if node in scenarios[s]["kills"]]
    if not where and node in NOT_YET:
        pytest.skip(f"no kill -9 scenario reaches {node!r} yet: {NOT_YET[node]}")
    assert where, f"no scenario reaches node {node!r}: add one to SCENARIOS in {__file__}"
    kill = scenarios[where[0]]["kills"][node]
    # Killed by the hook, after the node's work and before its checkpoint: the run will redo it.
    assert kill["returncode"] == -signal.SIGKILL, kill["stderr"][-2000:]
    assert f"KAIZEN_TEST_KILL_AFTER={node}: SIGKILL" in kill["stderr"]
    assert kill["next"] == (node,)
    # The next `kaizen runs resume` found the dead run's lock and took it over (pid gone).
    assert "took over the stale lock" in kill["resume_stderr"] and "is gone" in kill["resume_stderr"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_run_killed_at_every_node_ends_like_one_never_killed(
    scenarios: dict[str, dict[str, Any]], scenario: str
) -> None:
    assert scenario in scenarios, f"scenario {scenario!r} reaches no node the earlier ones did not: drop it"
    got = scenarios[scenario]
    ref, killed = got["reference"], got["killed"]
    print(json.dumps({"order": got["order"], "reference": ref}, indent=1, default=str))
    same(killed, ref)
    assert ref["duplicate_evals"] == 0 and all(
        n == 1 for n in ref["trainers"]
    )  # one trainer per job, in both
    if scenario == "promote":
        assert ref["status"] == "promoted" and ref["aliases"]["production"][0] == "q-<run>-i1"
        assert (
            ref["summary"]["after"]["target"] > ref["summary"]["before"]["target"]
        )  # scores a user would notice
        assert ref["trainers"] == [1]
    else:
        assert (
            ref["status"] == "not_promoted"
            and ref["aliases"]["production"][0] == "tiny"
            and ref["trainers"] == []
        )
    assert got["final"]["status"] == ref["status"]
