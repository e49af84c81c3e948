"""An extraction repair runs end to end (tiny random model: plumbing, not learning): JSON corrections become
JSON-object examples, a correction logged as an object is accepted, malformed ones are distrusted with their
reason — until this test existed every extraction repair died on its first target item."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path


def _logs(path: Path) -> set[str]:
    rnd = random.Random(0)
    names, cities = ["ann", "bob", "cem", "dia", "eli", "fay"], ["paris", "rome", "oslo", "lima"]
    lines, bad = [], set()
    for i in range(24):
        n, c = rnd.choice(names), rnd.choice(cities)
        gold = {"name": n, "city": c}
        rec: dict = {"id": f"x{i}", "messages": [{"role": "user", "content": f"hi, {n} here, off to {c}"}]}
        if i % 3 == 0:
            rec |= {"output": json.dumps(gold), "feedback": {"verdict": "pass"}}
        else:  # half the corrections as JSON text, half as the object itself
            corr = gold if i % 2 else json.dumps(gold)
            rec |= {"output": json.dumps({"name": n}), "feedback": {"verdict": "fail", "correction": corr}}
        if i in (4, 8):
            rec["feedback"] = {"verdict": "fail", "correction": "{not json"}
            bad.add(rec["id"])
        lines.append(rec)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return bad


def test_extraction_repair_runs_and_distrusts_malformed_corrections(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    kaizen = str(Path(sys.executable).parent / "kaizen")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [kaizen, "-w", str(tmp_path), *args], capture_output=True, text=True, timeout=600
        )

    assert run("init", str(tmp_path)).returncode == 0
    add = run(
        "task", "add", "trips", "--kind", "extraction", "--system-prompt", "Extract name and city as JSON."
    )
    assert add.returncode == 0, add.stderr
    assert (
        run("models", "add", "tiny", "--path", str(tiny_llama_dir), "--task", "trips", "--promote").returncode
        == 0
    )
    bad = _logs(tmp_path / "logs.jsonl")
    ing = run("ingest", str(tmp_path / "logs.jsonl"), "--task", "trips")
    assert ing.returncode == 0, ing.stderr
    out = run("repair", "--task", "trips", "--max-iterations", "1", "--json")
    assert out.returncode in (0, 2), out.stderr  # 2: nothing promoted (a random model learns nothing)
    summary = json.loads(out.stdout)
    assert summary["status"] in ("promoted", "not_promoted", "awaiting_approval"), summary
    assert bad <= set(summary["excluded_suspect"])
    roles = Path(summary["report_path"]).parent / "data"
    target = [json.loads(x) for x in (roles / "target.jsonl").read_text().splitlines()]
    assert target and all(isinstance(t["expected"], dict) and t["id"] not in bad for t in target)
