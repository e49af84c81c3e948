"""The installed ``kaizen`` console script, run in subprocesses the way a user runs it.

Each call costs about a second (interpreter start + imports), so the happy path is one test that
walks the README's first steps, and the error cases share a workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def kaizen_exe() -> str:
    local = Path(sys.executable).parent / "kaizen"
    if local.exists():
        return str(local)
    found = shutil.which("kaizen")
    if not found:
        pytest.fail("the `kaizen` console script is not installed (pip install -e .)")
    return found


def kaizen(
    *args: str, cwd: Path, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("KAIZEN_HOME", "KAIZEN_DB_URL")}
    base["COLUMNS"] = "40"  # errors must stay one line even on a narrow terminal
    proc = subprocess.run(
        [kaizen_exe(), *args], cwd=cwd, env=base | (env or {}), capture_output=True, text=True, timeout=120
    )
    if ok:
        assert proc.returncode == 0, (
            f"kaizen {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the task `intents`, shared by the error-case tests."""
    d = tmp_path_factory.mktemp("cli-ws")
    kaizen("init", cwd=d)
    kaizen(
        "task",
        "add",
        "intents",
        "--kind",
        "classification",
        "--labels",
        "balance,transfer,card_declined",
        cwd=d,
    )
    return d


def test_readme_first_steps(tmp_path: Path) -> None:
    init = json.loads(kaizen("init", "--json", cwd=tmp_path).stdout)
    assert init["created"] is True
    assert (tmp_path / "kaizen.yaml").is_file() and (tmp_path / ".kaizen" / "kaizen.db").is_file()

    added = json.loads(
        kaizen(
            "task",
            "add",
            "intents",
            "--kind",
            "classification",
            "--labels",
            "balance,transfer,card_declined",
            "--description",
            "Route banking messages.",
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert added["labels"] == ["balance", "transfer", "card_declined"]

    first = json.loads(kaizen("ingest", str(FIX / "kaizen_small.jsonl"), "--json", cwd=tmp_path).stdout)
    assert {"imported", "duplicates", "invalid", "failures", "passes", "unlabeled"} <= set(first)
    assert {
        k: first[k] for k in ("imported", "duplicates", "invalid", "failures", "passes", "unlabeled")
    } == {
        "imported": 6,
        "duplicates": 0,
        "invalid": 0,
        "failures": 2,
        "passes": 3,
        "unlabeled": 1,
    }

    again = json.loads(kaizen("ingest", str(FIX / "kaizen_small.jsonl"), "--json", cwd=tmp_path).stdout)
    assert (again["imported"], again["duplicates"]) == (0, 6)

    stats = json.loads(kaizen("traces", "stats", "--task", "intents", "--json", cwd=tmp_path).stdout)
    assert (stats["traces"], stats["passes"], stats["failures"], stats["unlabeled"]) == (6, 3, 2, 1)
    assert stats["failure_rate"] == pytest.approx(0.4)
    assert stats["gold_labels"] == {"balance": 2, "card_declined": 2, "transfer": 1}

    models = json.loads(kaizen("models", "list", "--task", "intents", "--json", cwd=tmp_path).stdout)
    assert [(m["name"], m["kind"], m["aliases"]) for m in models] == [("base", "base", ["production"])]


def test_bad_file_is_one_error_line_and_debug_shows_traceback(ws: Path) -> None:
    bad = FIX / "bad_json.jsonl"
    line = one_error_line(kaizen("ingest", str(bad), cwd=ws, ok=False))
    assert f"{bad}:2:" in line and "invalid JSON" in line

    debug = kaizen("--debug", "ingest", str(bad), cwd=ws, ok=False)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "LogFormatError" in debug.stderr

    stats = json.loads(kaizen("traces", "stats", "--task", "intents", "--json", cwd=ws).stdout)
    assert stats["traces"] == 0, "a failed import writes nothing"


def test_trace_for_unknown_task_names_it(ws: Path, tmp_path: Path) -> None:
    f = tmp_path / "refunds.jsonl"
    f.write_text(
        json.dumps(
            {"task": "refunds", "messages": [{"role": "user", "content": "money back"}], "output": "x"}
        )
        + "\n"
    )
    line = one_error_line(kaizen("ingest", str(f), cwd=ws, ok=False))
    assert f"{f}:1:" in line
    assert "unknown task 'refunds'" in line and "kaizen task add refunds" in line


def test_classification_task_without_labels(ws: Path) -> None:
    line = one_error_line(kaizen("task", "add", "x", "--kind", "classification", cwd=ws, ok=False))
    assert "--labels" in line


def test_outside_a_workspace_says_run_init(tmp_path: Path) -> None:
    line = one_error_line(kaizen("traces", "stats", "--task", "intents", cwd=tmp_path, ok=False))
    assert "kaizen init" in line


def test_kaizen_home_override(tmp_path: Path) -> None:
    home = tmp_path / "somewhere" / "state"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {"KAIZEN_HOME": str(home)}
    init = json.loads(kaizen("init", "--json", cwd=elsewhere, env=env).stdout)
    assert Path(init["state"]) == home.resolve()
    assert (home / "kaizen.db").is_file()
    assert not (elsewhere / ".kaizen").exists()
    # later commands find the workspace through the same variable, from any directory
    models = json.loads(kaizen("models", "list", "--json", cwd=elsewhere, env=env).stdout)
    assert [m["name"] for m in models] == ["base"]
