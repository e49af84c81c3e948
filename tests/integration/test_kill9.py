"""Kill -9 at every node of the repair graph, then ``kaizen runs resume``: the same outcome as a run never killed.

``KAIZEN_TEST_KILL_AFTER=<node>`` (agent/killpoints.py) SIGKILLs the process when that node returns —
its files, rows, trainer or alias move done, its checkpoint not written — so the resumed run must
redo the node on top of its own side effects. For each scenario one uninterrupted reference run is
made; then a second workspace is killed after each node in turn (a ``kaizen runs resume`` killed at
the next node, and so on) and finally resumed to the end. One training job per scenario instead of
one per node keeps the module within minutes on the tiny model. Compared with the reference: the
aliases, the verdict, every suite score (ids and timings normalised away), the row count of every
table, one trainer per job.

Scenarios, each killed at the nodes it is the first to reach (``KILLED_AT``):

* ``promote`` — the yes/no tiny Llama learns to stop after its label: the gate passes (every node of that path).
* ``nothing-to-train`` — every failure is a near-duplicate of a held-out one: synthesize → rollback.
* ``recover-refit`` — the loop candidate fixes every failure but breaks the passes (gate fails on regressions
  only) → **recover** (a refresh: a real training job) → evaluate → gate passes → **refit** (a real training job
  on all the evidence, verified on a final slice) → promote the refit. Training is real (the tiny model, a few
  steps); what each version *answers* is scripted (``ScriptedBackend``, installed in every process of the run):
  the yes/no tiny Llama cannot break a passing example. Its two label tokens share one embedding (input and
  output are tied), so every version trained from it answers the same label and training only decides whether
  it stops after it — right→wrong never happens, and the gate never routes to recover. The script keeps the
  route the same on every machine; the kill -9 property under test — recover's and refit's trainers, versions,
  files and rows redone on top of themselves without duplicates — does not depend on the answers.

Each scenario is run when a test first needs it, so ``-k recover`` runs only the one that reaches recover.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
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
HERE = Path(__file__).resolve().parent
# The scripted scenario's processes: the same start and resume, with the scripted answers installed first.
# Training stays real and short (its result does not decide anything there).
SCRIPTED = """
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
import test_kill9
test_kill9.script_answers(Path(sys.argv[1]))
"""
START_SCRIPTED = (
    SCRIPTED.format(here=str(HERE))
    + """
from kaizen.tools.workspace import find_workspace
from kaizen.workflows.repair import job
ws = find_workspace(Path(sys.argv[1]))
job.start(ws, sys.argv[2], approve=True, max_iterations=1, train_overrides={"max_steps": 3})
"""
)
RESUME_SCRIPTED = (
    SCRIPTED.format(here=str(HERE))
    + """
from kaizen.workflows.cli.main import main
sys.exit(main(["-w", sys.argv[1], "runs", "resume", sys.argv[2], "--json"]))
"""
)


def clinc_lines(near_duplicates: bool, per_label: int = 10) -> list[dict[str, Any]]:
    """CLINC balance → "yes", transfer → "no"; half of them failures with a correction."""
    if near_duplicates:  # all failures look alike: nothing is left to train on once the suites are held out
        pairs = [(f"what is my balance {i}", "balance") for i in range(6)] + [
            (f"send money to bob {i}", "transfer") for i in range(6)
        ]
    else:
        from kaizen.workflows.bench.clinc import rows

        pairs = rows("train", ["balance", "transfer"], per_label=per_label, seed=4)
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


def make_workspace(
    root: Path, model: Path, lines: list[dict[str, Any]], settings: dict[str, dict[str, Any]] | None = None
) -> Path:
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
    if settings:  # kaizen.yaml sections to change (the generated file has every key)
        import yaml

        conf = yaml.safe_load((root / "kaizen.yaml").read_text())
        for section, values in settings.items():
            conf[section] = (conf.get(section) or {}) | values
        (root / "kaizen.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    return root


class ScriptedBackend:
    """What each version of the ``recover-refit`` scenario answers, by its role in the run (its name):

    * the incumbent (``tiny``) answers what the logs say it answered: right on the passes, wrong on the failures;
    * the first loop candidate (``…-i1``) fixes every failure and breaks every pass (right→wrong) — the gate
      fails on regressions only, which is what recover is for;
    * the recovery (``…-i1r1``) and the refit (``…-irefit``, its shrink ``…-irefit-a50``) answer right: the
      gate passes, the refit holds.
    """

    name = "scripted"

    def __init__(self, version: str, logged: dict[str, str], gold: dict[str, str]) -> None:
        self.version, self.logged, self.gold = version, logged, gold

    def decoding(self) -> dict[str, Any]:
        return {"backend": self.name, "greedy": True}

    def _answer(self, chat: Sequence[dict[str, Any]]) -> str:
        text = [m["content"] for m in chat if m["role"] == "user"][-1]
        step = self.version.rsplit("-i", 1)[1] if self.version.startswith(f"{TASK}-") else None
        gold = self.gold[text]
        if step is None:
            return self.logged[text]
        if step == "1":
            return gold if self.logged[text] != gold else {"yes": "no", "no": "yes"}[gold]
        return gold

    def classify_prefix(self, chats: Sequence[Any], labels: Sequence[str], **_: Any) -> list[str]:
        return [self._answer(c) for c in chats]

    def generate(self, chats: Sequence[Any], **_: Any) -> list[str]:
        return [self._answer(c) for c in chats]


def script_answers(ws: Path) -> None:
    """In this process, measure every version of the run with :class:`ScriptedBackend` (logs.jsonl says
    what the incumbent answered and what was right). Called by the scenario's start and resume scripts."""
    from kaizen.agent import measure

    logged, gold = {}, {}
    for line in (ws / "logs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        text = rec["messages"][-1]["content"]
        logged[text] = rec["output"]
        gold[text] = rec["feedback"].get("correction") or rec["output"]
    measure.make_backend = lambda _ws, version, *a, **k: ScriptedBackend(version.name, logged, gold)  # type: ignore[assignment]


def run_kaizen(args: list[str], kill_after: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAIZEN_TEST_KILL_AFTER"}
    if kill_after:
        env["KAIZEN_TEST_KILL_AFTER"] = kill_after
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=900, check=False)


def start(
    ws: Path, kill_after: str | None = None, *, scripted: bool = False
) -> subprocess.CompletedProcess[str]:
    script = START_SCRIPTED if scripted else START
    return run_kaizen([sys.executable, "-c", script, str(ws), TASK], kill_after)


def resume(
    ws: Path, run_id: str, kill_after: str | None = None, *, scripted: bool = False
) -> subprocess.CompletedProcess[str]:
    if scripted:
        return run_kaizen([sys.executable, "-c", RESUME_SCRIPTED, str(ws), run_id], kill_after)
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


SCENARIOS = ("promote", "nothing-to-train", "recover-refit")
# The nodes each scenario is killed at (None: every node its run passes). A node no scenario names here
# belongs to ``promote``. Each scenario kills only where it is the first to go, so adding one costs one
# reference run plus one resume per new node.
KILLED_AT: dict[str, tuple[str, ...] | None] = {
    "promote": None,
    "nothing-to-train": ("rollback",),
    "recover-refit": ("recover", "refit"),
}
SETUP: dict[str, dict[str, Any]] = {
    "promote": {"lines": {"near_duplicates": False}},
    "nothing-to-train": {"lines": {"near_duplicates": True}},
    # 60 traces, half of them the final slice (the slice needs ≥ 20): the refit has something to be verified on.
    "recover-refit": {
        "lines": {"near_duplicates": False, "per_label": 30},
        "settings": {"repair": {"final_fraction": 0.5}},
        "scripted": True,
    },
}


def owner(node: str) -> str:
    """The scenario whose killed run stops after ``node``."""
    return next((s for s, nodes in KILLED_AT.items() if nodes and node in nodes), "promote")


def run_scenario(name: str, model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference outcome, and per node killed there: what the kill and the next resume did."""
    setup = SETUP[name]
    scripted = bool(setup.get("scripted"))
    base = make_workspace(
        tmp_path_factory.mktemp(f"{name}-base"), model, clinc_lines(**setup["lines"]), setup.get("settings")
    )
    ref_ws = Path(shutil.copytree(base, tmp_path_factory.mktemp(f"{name}-ref") / "ws"))
    out = start(ref_ws, scripted=scripted)
    assert out.returncode == 0, out.stderr[-3000:]
    ref_id = run_id_of(ref_ws)
    order = history(ref_ws, ref_id)
    wanted = KILLED_AT[name]
    todo = [n for n in dict.fromkeys(order) if wanted is None or n in wanted]
    assert todo, f"scenario {name!r} reaches none of {wanted} (its path: {order})"
    ws = Path(shutil.copytree(base, tmp_path_factory.mktemp(f"{name}-killed") / "ws"))
    kills: dict[str, dict[str, Any]] = {}
    run_id, prev = None, None
    for node in todo:
        out = (
            start(ws, node, scripted=scripted)
            if run_id is None
            else resume(ws, run_id, node, scripted=scripted)
        )
        run_id = run_id or run_id_of(ws)
        if prev:  # this process first resumed the run killed after `prev`
            kills[prev]["resume_stderr"] = out.stderr
        kills[node] = {"returncode": out.returncode, "stderr": out.stderr, "next": next_node(ws, run_id)}
        prev = node
    assert run_id is not None and prev is not None
    final = resume(ws, run_id, scripted=scripted)
    assert final.returncode == 0, final.stderr[-3000:]
    kills[prev]["resume_stderr"] = final.stderr
    return {
        "order": order,
        "kills": kills,
        "reference": outcome(ref_ws, ref_id),
        "killed": outcome(ws, run_id),
        "final": json.loads(final.stdout),
    }


@pytest.fixture(scope="module")
def scenarios(
    yes_no_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """``scenarios(name)``: that scenario's runs, made the first time a test asks for them."""
    done: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in done:
            done[name] = run_scenario(name, yes_no_llama_dir, tmp_path_factory)
        return done[name]

    return get


def _graph_nodes() -> list[str]:
    from kaizen.agent.graph import build_graph

    return sorted(n for n in build_graph().nodes if n != "__start__")


@pytest.mark.parametrize("node", _graph_nodes())
def test_kill_after_node_then_resume(scenarios: Callable[[str], dict[str, Any]], node: str) -> None:
    got = scenarios(owner(node))
    assert node in got["kills"], (
        f"scenario {owner(node)!r} does not reach node {node!r} (its path: {got['order']}): "
        f"add a scenario that does to KILLED_AT in {__file__}"
    )
    kill = got["kills"][node]
    # Killed by the hook, after the node's work and before its checkpoint: the run will redo it.
    assert kill["returncode"] == -signal.SIGKILL, kill["stderr"][-2000:]
    assert f"KAIZEN_TEST_KILL_AFTER={node}: SIGKILL" in kill["stderr"]
    assert kill["next"] == (node,)
    # The next `kaizen runs resume` found the dead run's lock and took it over (pid gone).
    assert "took over the stale lock" in kill["resume_stderr"] and "is gone" in kill["resume_stderr"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_run_killed_at_every_node_ends_like_one_never_killed(
    scenarios: Callable[[str], dict[str, Any]], scenario: str
) -> None:
    got = scenarios(scenario)
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
    elif scenario == "recover-refit":
        order = got["order"]
        assert order[order.index("recover") - 1] == "gate" and order[-2:] == ["refit", "promote"], order
        # The loop candidate broke the passes; its refresh passed; the refit (verified on the final slice) won,
        # shrunk halfway toward production (every refit version answers right here, so α = 0.5 keeps it all).
        assert ref["status"] == "promoted" and ref["aliases"]["production"][0] == "q-<run>-irefit-a50"
        assert ref["summary"]["new_regressions"] == 0 and ref["evals"]["q-<run>-i1/regression"][0] == 0.0
        assert ref["trainers"] == [1, 1, 1]  # the loop candidate, the refresh, the refit: one trainer each
    else:
        assert (
            ref["status"] == "not_promoted"
            and ref["aliases"]["production"][0] == "tiny"
            and ref["trainers"] == []
        )
    assert got["final"]["status"] == ref["status"]
