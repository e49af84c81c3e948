"""The store on a real PostgreSQL server, beyond the store/lock/ingest/cursor tests that run on both
databases (``kaizen_db``): LangGraph checkpoints resume a killed graph from the same database (and from
SQLite, the default), and two ``kaizen tick`` processes acting as two hosts — two workspaces, one
database — never run two repairs of one task.

The server comes from ``KAIZEN_TEST_PG_URL`` or is started for the session (tests/conftest.py);
``KAIZEN_REQUIRE_POSTGRES=1`` (CI) turns a missing server into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A three-node graph whose node "b" SIGKILLs its own process the first time it runs (after its side
# effect, before its checkpoint): the worst moment. Every node appends its name to a side-effect log.
GRAPH = r"""
import operator, os, signal, sys
from pathlib import Path
from typing import Annotated, TypedDict
from langgraph.graph import END, START, StateGraph
from kaizen.tools.store.checkpoint import checkpointer

db_url, sqlite_path, log = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

class S(TypedDict):
    done: Annotated[list[str], operator.add]

def node(name):
    def run(state):
        with log.open("a") as f:
            f.write(name + "\n")
        if name == "b" and not (log.parent / "killed").exists():
            (log.parent / "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return {"done": [name]}
    return run

g = StateGraph(S)
for n in "abc":
    g.add_node(n, node(n))
g.add_edge(START, "a"); g.add_edge("a", "b"); g.add_edge("b", "c"); g.add_edge("c", END)
cfg = {"configurable": {"thread_id": "run-1"}}
with checkpointer(db_url, sqlite_path) as saver:
    graph = g.compile(checkpointer=saver)
    resume = graph.get_state(cfg).next
    for _ in graph.stream(None if resume else {"done": []}, cfg, durability="sync"):
        pass
    print(",".join(graph.get_state(cfg).values["done"]))
"""


def test_a_killed_graph_resumes_from_its_checkpoints(kaizen_db: str | None, tmp_path: Path) -> None:
    """SQLite file, or the PostgreSQL store's own database: finished nodes are not run again."""
    script = tmp_path / "graph.py"
    script.write_text(GRAPH)
    db_url = kaizen_db or f"sqlite:///{tmp_path / 'kaizen.db'}"
    args = [
        sys.executable,
        str(script),
        db_url,
        str(tmp_path / "checkpoints.db"),
        str(tmp_path / "effects.log"),
    ]
    first = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    second = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.strip() == "a,b,c"
    assert (tmp_path / "effects.log").read_text().split() == [
        "a",
        "b",
        "b",
        "c",
    ]  # "a" ran once; "b" again after the kill
    assert (tmp_path / "checkpoints.db").exists() == (kaizen_db is None)


def _lock_holder(url: str, task: str) -> dict | None:
    from kaizen.tools.store import Store
    from kaizen.tools.store.tables import LockRow

    store = Store(url)
    try:
        with store.session() as s:
            row = s.get(LockRow, task)
            return None if row is None else {"host": row.host, "pid": row.pid, "run_id": row.run_id}
    finally:
        store.close()


@pytest.mark.parametrize("kaizen_db", ["postgres"], indirect=True)
def test_two_tick_processes_as_two_hosts_never_run_two_repairs(
    kaizen_db: str, tmp_path: Path, tiny_llama_dir: Path
) -> None:
    kaizen = str(Path(sys.executable).parent / "kaizen")
    env = os.environ | {"KAIZEN_DB_URL": kaizen_db}
    ws_a, ws_b = tmp_path / "host-a", tmp_path / "host-b"

    def run(ws: Path, *args: str, host: str = "host-a") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kaizen, "-w", str(ws), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
            env=env | {"KAIZEN_HOST_ID": host},
        )

    for ws in (ws_a, ws_b):
        assert run(ws, "init", str(ws)).returncode == 0
    assert (
        run(
            ws_a, "task", "add", "intents", "--kind", "classification", "--labels", "balance,transfer"
        ).returncode
        == 0
    )
    assert (
        run(
            ws_a, "models", "add", "tiny", "--path", str(tiny_llama_dir), "--task", "intents", "--promote"
        ).returncode
        == 0
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "day1.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "messages": [{"role": "user", "content": f"send {i} dollars to bob"}],
                    "output": "balance",
                    "feedback": {"verdict": "fail", "correction": "transfer"},
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    tick = ["tick", "--task", "intents", "--source", str(logs), "--min-new-failures", "2", "--cooldown", "1s"]

    # Host A's tick takes the task's lock and starts its repair.
    a = subprocess.Popen(
        [kaizen, "-w", str(ws_a), *tick],
        env=env | {"KAIZEN_HOST_ID": "host-a"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while (holder := _lock_holder(kaizen_db, "intents")) is None:
            assert a.poll() is None, (
                f"host A's tick ended before it held the lock:\n{a.stdout.read() if a.stdout else ''}"
            )
            assert time.time() < deadline, "host A's tick never took the lock"
            time.sleep(0.1)
        assert holder["host"] == "host-a" and holder["pid"] == a.pid

        # Host B, same task, same database, while A works: refused (exit 4), recorded as busy.
        b = run(ws_b, *tick, host="host-b")
        assert b.returncode == 4, b.stdout + b.stderr
        assert "busy" in b.stderr and "host-a" in b.stderr
        # A dies without releasing its lock. A pid means nothing across hosts, so host B still may not
        # take the lock (only a heartbeat older than the stale limit, 600 s by default, would let it).
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(30)
        b2 = run(ws_b, *tick, host="host-b")
        assert b2.returncode == 4, b2.stdout + b2.stderr
        assert _lock_holder(kaizen_db, "intents")["pid"] == a.pid  # still A's row: B took nothing over
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait(30)
        for pid_file in ws_a.rglob("runner.pid"):  # a trainer A may have started (its own process group)
            pid = json.loads(pid_file.read_text())["pid"]
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    ticks = json.loads(run(ws_b, "ticks", "list", "--task", "intents", "--json", host="host-b").stdout)
    assert sorted(t["status"] for t in ticks) == ["busy", "busy", "running"]  # A's was killed mid-run
    runs = json.loads(run(ws_b, "runs", "list", "--task", "intents", "--json", host="host-b").stdout)
    assert len(runs) <= 1  # A's repair (if it got that far); B never started one


@pytest.mark.parametrize("kaizen_db", ["postgres"], indirect=True)
def test_a_plain_postgresql_url_opens_the_store_with_psycopg(
    kaizen_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``postgresql://…`` (no driver named, as most tools write it) works: psycopg 3, never a missing psycopg2."""
    from kaizen.tools.store import Store
    from kaizen.tools.workspace import init_workspace

    plain = kaizen_db.replace("postgresql+psycopg://", "postgresql://")
    monkeypatch.setenv("KAIZEN_DB_URL", plain)
    init_workspace(tmp_path / "ws")  # kaizen init against the plain URL
    store = Store(plain)
    try:
        assert store.get_model_version("base").kind == "base"
        assert store.engine.dialect.driver == "psycopg"
    finally:
        store.close()
