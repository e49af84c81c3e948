"""The support-intents demo: init → ingest → repair → before/after on the gold held-out set.

Runs the real ``kaizen`` CLI (each command is printed, so you can replay it by hand) in a fresh
workspace (``$KAIZEN_DEMO_DIR`` or a temp dir). Builds the deployed v1 and its logs first if
``data/`` is missing (``build_data.py``).
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
DATA = HERE / "data"
TASK = "support-intents"
BIN = Path(sys.executable).parent


def kaizen(ws: Path, *args: str, json_out: bool = True, ok_codes: tuple[int, ...] = (0,)) -> dict:
    cmd = [str(BIN / "kaizen"), "-w", str(ws), *args] + (["--json"] if json_out else [])
    print(f"\n$ kaizen {' '.join(shlex.quote(a) for a in args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if json_out else None, text=True)
    if proc.returncode not in ok_codes:
        sys.exit(f"demo: `kaizen {' '.join(args)}` failed (exit {proc.returncode})")
    return json.loads(proc.stdout) if json_out else {}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strategy", default="agent", choices=["agent", "naive"],
                    help="naive: the baseline — retrain on every correction, no triage/replay/gate.")
    strategy = ap.parse_args().strategy
    t0 = time.time()
    phases: dict[str, float] = {}
    if not (DATA / "logs.jsonl").exists() or not (DATA / "v1").exists():
        subprocess.run([sys.executable, str(HERE / "build_data.py")], check=True)
        phases["build v1 + logs"] = time.time() - t0
    ws = Path(os.environ.get("KAIZEN_DEMO_DIR") or tempfile.mkdtemp(prefix="kaizen-demo-")) / "support"
    if ws.exists() and any(ws.iterdir()):
        sys.exit(f"demo: {ws} is not empty: set KAIZEN_DEMO_DIR to a new directory")
    ws.mkdir(parents=True, exist_ok=True)
    labels = json.loads((HERE.parent / "data" / "clinc150_banking.json").read_text())["labels"]
    t = time.time()
    kaizen(ws, "init", str(ws))
    kaizen(ws, "task", "add", TASK, "--kind", "classification", "--labels", ",".join(labels),
           "--system-prompt", "Classify the banking request. Reply with the intent label only.")
    kaizen(ws, "models", "add", "v1", "--path", str(DATA / "v1"), "--task", TASK, "--promote")
    ingest = kaizen(ws, "ingest", str(DATA / "logs.jsonl"), "--task", TASK)
    kaizen(ws, "traces", "stats", "--task", TASK, json_out=False)
    phases["init + ingest"] = time.time() - t
    t = time.time()
    before = kaizen(ws, "eval", "--model", "v1", "--task", TASK, "--data", str(DATA / "gold_heldout.jsonl"))
    phases["eval v1 on gold"] = time.time() - t
    t = time.time()
    rep = kaizen(ws, "repair", "--task", TASK, "--preset", "demo", "--approve", "--strategy", strategy)
    phases["repair"] = time.time() - t
    t = time.time()
    # The candidate is measured on gold whether or not the gate let it through: that shows whether
    # the gate's decision (made without ever seeing gold) was the right one.
    cand = rep.get("candidate")
    after = kaizen(ws, "eval", "--model", cand, "--task", TASK, "--data", str(DATA / "gold_heldout.jsonl")) if cand else before
    phases["eval candidate on gold"] = time.time() - t
    summary = {
        "gold_heldout": {"n": before["n"], "v1": before["score"], "repaired": after["score"], "repaired_version": after["model"],
                         "promoted": rep["promoted"]},
        "repair": {k: rep[k] for k in ("run_id", "status", "promoted", "iterations", "before", "after", "fixed", "new_regressions")}
        | {"excluded_suspect": len(rep["excluded_suspect"]), "report": rep.get("report_path")},
        "ingest": ingest, "seconds": {k: round(v, 1) for k, v in phases.items()} | {"total": round(time.time() - t0, 1)},
        "workspace": str(ws),
    }
    (ws / "demo-summary.json").write_text(json.dumps(summary, indent=2))
    g = summary["gold_heldout"]
    print(f"\n================ support-intents repair demo ({strategy}) ================")
    print(f"gold held-out set (CLINC150 test split, {g['n']} examples, never trained on):")
    print(f"  v1 (deployed)        accuracy {g['v1']:.3f}")
    print(f"  {g['repaired_version']:<20} accuracy {g['repaired']:.3f}   ({g['repaired'] - g['v1']:+.3f})  "
          f"{'PROMOTED' if g['promoted'] else 'refused by the gate; production stays on v1'}")
    r = summary["repair"]
    print(f"repair run {r['run_id']}: {r['status']} after {r['iterations']} iteration(s); "
          f"target failures fixed {r['fixed']}, new regressions {r['new_regressions']}, "
          f"suspect feedback excluded {r['excluded_suspect']}")
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in summary["seconds"].items()))
    html = Path(r["report"]).with_suffix(".html") if r.get("report") else None
    print(f"report: {html if html and html.exists() else r['report']}\nsummary: {ws / 'demo-summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
