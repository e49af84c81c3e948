"""Issue 14, item 6, with real processes on a real SQLite file: a large ingest does not lock out other writers.

While ``kaizen ingest`` imports a 100k-line file, ``kaizen feedback`` and ``kaizen task add`` run one
after another in other processes. Each must succeed within seconds — not wait for the whole import
(and not die with ``database is locked``) — and the import must still be all-or-nothing to readers:
a reader polling the store sees the traces of the file either not at all or all of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

N_LINES = (
    100_000  # the size: long enough that a single-transaction import held the lock for many seconds
)
KAIZEN = [sys.executable, "-m", "kaizen.workflows.cli"]


def kaizen(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KAIZEN, "--workspace", str(ws), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"KAIZEN_HOME": "", "KAIZEN_DB_URL": ""},
    )


def count(db: Path, sql: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def test_writers_are_not_locked_out_by_a_large_ingest(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert kaizen(ws.parent, "init", str(ws)).returncode == 0
    t0 = time.monotonic()
    assert (
        kaizen(
            ws, "task", "add", "intents", "--kind", "classification", "--labels", "balance,transfer"
        ).returncode
        == 0
    )
    baseline = time.monotonic() - t0  # one short command on an idle store, as loaded as this machine is now
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        json.dumps(
            {
                "id": "seed",
                "task": "intents",
                "messages": [{"role": "user", "content": "hi"}],
                "output": "balance",
            }
        )
        + "\n"
    )
    assert kaizen(ws, "ingest", str(seed)).returncode == 0
    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(N_LINES):
            f.write(
                json.dumps(
                    {
                        "id": f"t{i}",
                        "messages": [{"role": "user", "content": f"what is my balance, #{i}"}],
                        "output": "balance",
                        "feedback": {"verdict": "pass"},
                    }
                )
                + "\n"
            )
    db = ws / ".kaizen" / "kaizen.db"

    ingest = subprocess.Popen(
        [*KAIZEN, "--workspace", str(ws), "ingest", str(big), "--task", "intents", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"KAIZEN_HOME": "", "KAIZEN_DB_URL": ""},
    )
    bound = max(15.0, 3 * baseline)
    runs: list[
        tuple[str, int, float, bool, int, str]
    ] = []  # (command, rc, seconds, ingest still running, traces seen, stderr)
    seen_counts: set[int] = set()
    i = 0
    try:
        while ingest.poll() is None and i < 40:
            i += 1
            fb = tmp_path / f"fb{i}.jsonl"
            fb.write_text(
                json.dumps(
                    {"trace_id": "seed", "verdict": "fail" if i % 2 else "pass", "correction": "transfer"}
                )
                + "\n"
            )
            cmd = ("feedback", str(fb)) if i % 2 else ("task", "add", f"task{i}", "--kind", "generation")
            t = time.monotonic()
            r = kaizen(ws, *cmd)
            elapsed = time.monotonic() - t
            running = ingest.poll() is None
            traces = count(db, "SELECT count(*) FROM trace")
            seen_counts.add(traces)
            runs.append((cmd[0], r.returncode, elapsed, running, traces, r.stderr[-300:]))
        out, err = ingest.communicate(timeout=600)
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert ingest.returncode == 0, err[-2000:]
    assert json.loads(out)["imported"] == N_LINES
    assert all(rc == 0 for _, rc, *_ in runs), runs  # no "database is locked"
    assert all(s < bound for _, _, s, *_ in runs), (bound, runs)  # seconds, not the length of the import
    during = [r for r in runs if r[3]]
    assert {c for c, *_ in during} == {"feedback", "task"}, (
        runs
    )  # both kinds of writer ran while the ingest did
    assert seen_counts <= {1, N_LINES + 1}, seen_counts  # all-or-nothing to readers
    # everything the other writers did is there, and so is the whole import
    assert count(db, "SELECT count(*) FROM trace") == N_LINES + 1
    assert count(db, "SELECT count(*) FROM feedback WHERE trace_id LIKE 't%'") == N_LINES
    assert count(db, "SELECT count(*) FROM task") == 1 + sum(c == "task" for c, *_ in runs)
    assert count(db, "SELECT count(*) FROM ingest_stage") == 0  # the stage is cleaned up
