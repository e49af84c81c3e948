"""The support-intents demo: init → ingest → repair → before/after on the gold held-out set, next to the
naive baseline and the oracle.

Run: ``python examples/support-intents/demo.py`` (``make demo``). Three arms on the same logs, each in its
own fresh workspace, each with the real ``kaizen`` CLI (every command is printed, so you can replay it):

* **agent** — ``kaizen repair``: triage, held-out suites, iterations, gate, refit (what kaizen is);
* **naive** — ``kaizen repair --strategy naive``: every correction as given, no gate (what teams do by hand);
* **oracle** — ``kaizen repair --strategy oracle --answer-key data/answer_key.jsonl``: the agent with the
  true labels (perfect triage and corrections), the ceiling the logs allow.

``captured = (agent − v1) / (oracle − v1)`` on the gold set says how much of the reachable gain the agent
got (n/a when the oracle gains < 0.02). ``--strategy agent|naive|oracle`` runs one arm. Workspaces go to
``$KAIZEN_DEMO_DIR`` or a temp dir. Builds the deployed v1 and its logs first if ``data/`` is missing.

``--data DIR`` runs the same three arms on another scenario: a folder holding ``scenario.json`` (task name,
labels, system prompt, repair preset), ``v1/`` (the deployed adapter), ``logs.jsonl``, ``answer_key.jsonl``
and ``gold_heldout.jsonl`` — e.g. ``examples/weak-v1/build_data.py`` writes one.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ARMS = ("agent", "naive", "oracle")


@dataclass(frozen=True)
class Scenario:
    """What the arms run on: a data folder (see the module docstring) and its ``scenario.json``."""

    data: Path
    task: str
    labels: list[str]
    system_prompt: str
    preset: str | None
    title: str

    @classmethod
    def load(cls, data: Path) -> Scenario:
        meta = data / "scenario.json"
        if not meta.exists():
            sys.exit(f"demo: {meta} not found: --data must be a scenario folder (see the module docstring)")
        m = json.loads(meta.read_text())
        return cls(
            data, m["task"], m["labels"], m["system_prompt"], m.get("preset"), m.get("title", m["task"])
        )


def kaizen(ws: Path, *args: str, json_out: bool = True, ok_codes: tuple[int, ...] = (0,)) -> dict:
    cmd = [str(BIN / "kaizen"), "-w", str(ws), *args] + (["--json"] if json_out else [])
    print(f"\n$ kaizen {' '.join(shlex.quote(a) for a in args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if json_out else None, text=True)
    if proc.returncode not in ok_codes:
        sys.exit(f"demo: `kaizen {' '.join(args)}` failed (exit {proc.returncode})")
    return json.loads(proc.stdout) if json_out else {}


def gold(sc: Scenario, ws: Path, version: str) -> dict:
    """A version on the gold held-out set, example by example (constrained decoding: the greedy answers)."""
    return kaizen(
        ws,
        "eval",
        "--model",
        version,
        "--task",
        sc.task,
        "--data",
        str(sc.data / "gold_heldout.jsonl"),
        "--mode",
        "prefix",
    )


def setup(sc: Scenario, root: Path, arm: str) -> Path:
    ws = root / arm
    if ws.exists() and any(ws.iterdir()):
        sys.exit(f"demo: {ws} is not empty: set KAIZEN_DEMO_DIR to a new directory")
    ws.mkdir(parents=True, exist_ok=True)
    kaizen(ws, "init", str(ws))
    kaizen(
        ws,
        "task",
        "add",
        sc.task,
        "--kind",
        "classification",
        "--labels",
        ",".join(sc.labels),
        "--system-prompt",
        sc.system_prompt,
    )
    kaizen(ws, "models", "add", "v1", "--path", str(sc.data / "v1"), "--task", sc.task, "--promote")
    kaizen(ws, "ingest", str(sc.data / "logs.jsonl"), "--task", sc.task)
    return ws


def run_arm(sc: Scenario, root: Path, arm: str) -> dict:
    """One arm: a fresh workspace, the repair, its candidate measured on gold (promoted or not)."""
    t = time.time()
    ws = setup(sc, root, arm)
    extra = {
        "agent": [],
        "naive": ["--strategy", "naive"],
        "oracle": ["--strategy", "oracle", "--answer-key", str(sc.data / "answer_key.jsonl")],
    }[arm]
    preset = ["--preset", sc.preset] if sc.preset else []
    t_repair = time.time()
    rep = kaizen(ws, "repair", "--task", sc.task, *preset, "--approve", *extra)
    repair_s = time.time() - t_repair
    # The candidate is measured on gold whether or not the gate let it through: that shows whether the
    # gate's decision (made without ever seeing gold) was the right one.
    cand = rep.get("candidate")
    return {
        "ws": str(ws),
        "repair": rep,
        "candidate": cand,
        "gold": gold(sc, ws, cand) if cand else None,
        "seconds": {"repair": round(repair_s, 1), "total": round(time.time() - t, 1)},
    }


def flips(before: dict, after: dict) -> dict:
    """Right→wrong and wrong→right on gold, example by example."""
    a, b = before["correct_by_id"], after["correct_by_id"]
    right = [i for i in a if a[i]]
    broke = [i for i in right if not b.get(i)]
    return {
        "newly_wrong": len(broke),
        "of_right": len(right),
        "newly_right": sum(1 for i in a if not a[i] and b.get(i)),
        "newly_wrong_rate": round(len(broke) / len(right), 4) if right else None,
    }


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--strategy", default="all", choices=["all", *ARMS], help="Which arm(s) to run (default: all three)."
    )
    ap.add_argument(
        "--data", type=Path, default=HERE / "data", help="Scenario folder (default: this demo's data/)."
    )
    args = ap.parse_args()
    arms = ARMS if args.strategy == "all" else (args.strategy,)
    t0 = time.time()
    data = args.data.resolve()
    if data == HERE / "data" and (not (data / "logs.jsonl").exists() or not (data / "v1").exists()):
        subprocess.run([sys.executable, str(HERE / "build_data.py")], check=True)
    sc = Scenario.load(data)
    root = Path(os.environ.get("KAIZEN_DEMO_DIR") or tempfile.mkdtemp(prefix="kaizen-demo-"))
    results = {arm: run_arm(sc, root, arm) for arm in arms}
    v1 = gold(sc, Path(results[arms[0]]["ws"]), "v1")
    summary = summarize(v1, results, time.time() - t0)
    (root / "demo-summary.json").write_text(json.dumps(summary, indent=2))
    show(summary, root, sc.title)
    return 0


def summarize(v1: dict, results: dict, seconds: float) -> dict:
    arms = {}
    for arm, r in results.items():
        g = r["gold"] or v1
        rep = r["repair"]
        arms[arm] = {
            "gold": g["score"],
            "gain": round(g["score"] - v1["score"], 4),
            "promoted": rep["promoted"],
            "version": r["candidate"],
            "status": rep["status"],
            "iterations": rep.get("iterations"),
            "excluded_suspect": len(rep.get("excluded_suspect") or []),
            "gold_flips": flips(v1, g),
            "path": rep.get("path"),
            "final": rep.get("final"),
            "run_id": rep["run_id"],
            "report": rep.get("report_path"),
            "seconds": r["seconds"] | {"phases": rep.get("seconds")},
        }
    out = {"v1": v1["score"], "n": v1["n"], "arms": arms, "seconds": round(seconds, 1)}
    if "agent" in arms and "oracle" in arms:
        reach = arms["oracle"]["gain"]
        out["captured"] = round(arms["agent"]["gain"] / reach, 3) if reach >= 0.02 else None
    return out


def show(s: dict, root: Path, title: str) -> None:
    print(f"\n================ {title} repair demo ================")
    print(f"gold held-out set ({s['n']} examples, never trained on or used to decide)")
    print(f"  {'v1 (deployed)':<28} accuracy {s['v1']:.3f}")
    for arm, a in s["arms"].items():
        f = a["gold_flips"]
        print(
            f"  {arm + ' → ' + str(a['version']):<28} accuracy {a['gold']:.3f} ({a['gain']:+.3f})  "
            f"{'promoted' if a['promoted'] else 'NOT promoted (production stays v1)'}; newly wrong {f['newly_wrong']}/{f['of_right']} "
            f"of v1's right answers, newly right {f['newly_right']}; repair {a['seconds']['repair']:.0f}s"
        )
    if "captured" in s:
        print(
            f"captured = (agent − v1) / (oracle − v1) = {s['captured'] if s['captured'] is not None else 'n/a'}"
        )
    a = s["arms"].get("agent")
    if a and a.get("path"):
        print(
            "agent path: "
            + " → ".join(
                f"{p['step']}:{'pass' if p['passed'] else 'fail'}"
                + (f" (target {p['target']:.2f})" if p.get("target") is not None else "")
                for p in a["path"]
            )
        )
    for arm, a in s["arms"].items():
        ph = a["seconds"].get("phases")
        if isinstance(ph, dict) and ph.get(
            "by_phase"
        ):  # a summary from before naive reported phases: a float
            steps = ", ".join(f"{k} {v:.0f}s" for k, v in ph["by_step"].items())
            phases = ", ".join(
                f"{k} {v:.0f}s" for k, v in sorted(ph["by_phase"].items(), key=lambda kv: -kv[1])
            )
            print(f"{arm} time by step: {steps}; by phase: {phases}")
    print(f"time {s['seconds']:.0f}s in all; summary {root / 'demo-summary.json'}")


if __name__ == "__main__":
    sys.exit(main())
