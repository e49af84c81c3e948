"""Cold start on CLINC150 banking intents: task description + a small data set → a promoted model.

init → cold-start (held-out set carved from the data set, up to 3 pipelines, gate vs the base) →
eval base and result on CLINC150 test examples kaizen never saw. Every command is printed, so you
can replay it by hand. Workspace: ``$KAIZEN_DEMO_DIR`` or a temporary directory.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def kaizen(ws: Path, *args: str) -> dict:
    print(f"\n$ kaizen {' '.join(shlex.quote(a) for a in args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [str(BIN / "kaizen"), "-w", str(ws), *args, "--json"], stdout=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"example: `kaizen {' '.join(args)}` failed (exit {proc.returncode})")
    return json.loads(proc.stdout)


def main() -> int:
    t0 = time.time()
    if not (HERE / "data" / "dataset.jsonl").exists():
        subprocess.run([sys.executable, str(HERE / "build_data.py")], check=True)
    ws = Path(os.environ.get("KAIZEN_DEMO_DIR") or tempfile.mkdtemp(prefix="kaizen-cold-")) / "cold-start"
    if ws.exists() and any(ws.iterdir()):
        sys.exit(f"example: {ws} is not empty: set KAIZEN_DEMO_DIR to a new directory")
    ws.mkdir(parents=True, exist_ok=True)
    kaizen(ws, "init", str(ws))
    res = kaizen(
        ws,
        "cold-start",
        "--task-file",
        str(HERE / "task.yaml"),
        "--dataset",
        str(HERE / "data" / "dataset.jsonl"),
        "--approve",
    )
    gold = str(HERE / "data" / "gold_test.jsonl")
    base = kaizen(ws, "eval", "--model", "base", "--task", "bank-intents", "--data", gold)
    prod = kaizen(ws, "eval", "--model", "production", "--task", "bank-intents", "--data", gold)
    print(
        f"\ncold start {res['run_id']}: {res['status']} ({res['n_train']} trained, {res['n_eval']} held out)"
    )
    print(f"{'pipeline':<18}{'version':<20}{'held-out acc':>13}")
    print(f"{'base model':<18}{'base':<20}{res['base']['score']:>13.3f}")
    for a in res["attempts"]:
        print(
            f"{a['name']:<18}{a['version'] or '-':<20}{(a['score'] if a['score'] is not None else float('nan')):>13.3f}"
        )
    print(
        f"\nCLINC150 test ({base['n']} examples kaizen never saw): base {base['score']:.3f} → "
        f"{prod['model']} {prod['score']:.3f}"
    )
    print(f"report: {Path(res['report_path']).with_suffix('.html')}   ({time.time() - t0:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
