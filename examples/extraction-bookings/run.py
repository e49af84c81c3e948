"""An extraction repair with the embedded default model: hotel-booking requests → {"name", "city", "day"}.

v1 is SmolLM2-135M-Instruct zero-shot (right on 1 of 120 logs: it rarely replies with the exact JSON);
production logs carry feedback from the true fields, 10 % of corrections poisoned (another city) and 10 %
unlabelled; corrections are logged as JSON objects. ``kaizen repair`` then runs on the logs and both
versions are scored (field F1) on 60 held-out requests. Synthetic, seeded, offline; about 10 min on an idle
2-core CPU. Writes to /tmp/ext-data (or the folder given as the first argument).

Run: ``.venv/bin/python examples/extraction-bookings/run.py [OUT] [POISON]`` (POISON: the share of corrections
given another city, default 0.1). It also prints how much of the poisoned feedback triage distrusted.
"""

import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from kaizen.tools.evaluate.backends import TransformersBackend
from kaizen.tools.evaluate.extraction import parse_json_object
from kaizen.tools.models import resolve_base
from kaizen.tools.schema import TaskSpec, render

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ext-data")
POISON = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1  # share of corrections given another city
OUT.mkdir(parents=True, exist_ok=True)
K = str(Path(sys.executable).parent / "kaizen")
rnd = random.Random(0)
NAMES = "anna ben chloe david emma felix grace henry iris jack kate leo mia noah olivia paul quinn rosa sam tara".split()
CITIES = "paris rome berlin madrid lisbon vienna prague oslo dublin athens".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
T = [
    "Hi, this is {n}. I need a hotel in {c} on {d}.",
    "{n} here - book me a room in {c} for {d} please",
    "Can you reserve something in {c}? Arriving {d}. Name: {n}",
    "hotel {c} {d} for {n}",
    "My name is {n} and I will be in {c} on {d}, need a place to stay",
    "Please book {c}, {d}, guest {n}.",
]
PROMPT = 'Extract the booking as JSON with keys "name", "city", "day" (lowercase). Reply with the JSON only.'


def ex():
    n, c, d = rnd.choice(NAMES), rnd.choice(CITIES), rnd.choice(DAYS)
    return rnd.choice(T).format(n=n.title() if rnd.random() < 0.5 else n, c=c.title(), d=d.title()), {
        "name": n,
        "city": c,
        "day": d,
    }


logs_in = [ex() for _ in range(120)]
gold = [ex() for _ in range(60)]
task = TaskSpec(name="bookings", kind="extraction", system_prompt=PROMPT)
base = resolve_base("smollm2-135m")
t0 = time.time()
be = TransformersBackend(base, None)
outs = be.generate(
    [render(task, None, [{"role": "user", "content": t}]) for t, _ in logs_in], max_new_tokens=40
)
print(f"v1 generated {len(outs)} in {time.time() - t0:.0f}s", file=sys.stderr)
recs = []
poisoned: set[str] = set()  # the answer key of the bad feedback: kept here, never in what kaizen ingests


def norm(o):
    return {k: str(v).strip().lower() for k, v in o.items()} if isinstance(o, dict) else None


for i, ((text, g), out) in enumerate(zip(logs_in, outs, strict=True)):
    ok = norm(parse_json_object(out)) == g
    r = {"id": f"b{i}", "messages": [{"role": "user", "content": text}], "output": out}
    if rnd.random() < 0.1:
        r["feedback"] = None  # unlabelled
    elif ok:
        r["feedback"] = {"verdict": "pass"}
    else:
        corr = dict(g)
        if rnd.random() < POISON:
            corr["city"] = rnd.choice([c for c in CITIES if c != g["city"]])  # poisoned
            poisoned.add(r["id"])
        r["feedback"] = {"verdict": "fail", "correction": corr}
    if r["feedback"] is None:
        del r["feedback"]
    recs.append(r)
(OUT / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
(OUT / "gold.jsonl").write_text(
    "".join(
        json.dumps({"id": f"g{i}", "messages": [{"role": "user", "content": t}], "expected": g}) + "\n"
        for i, (t, g) in enumerate(gold)
    )
)
print(
    "passes",
    sum(1 for r in recs if r.get("feedback", {}).get("verdict") == "pass"),
    "of",
    len(recs),
    file=sys.stderr,
)
ws = OUT / "ws"


def k(*a, ok=(0,)):
    p = subprocess.run([K, "-w", str(ws), *a], capture_output=True, text=True)
    if p.returncode not in ok:
        sys.exit(f"{a}: {p.returncode}\n{p.stderr[-3000:]}")
    return p.stdout


shutil.rmtree(ws, ignore_errors=True)  # a fresh workspace on every run
subprocess.run([K, "init", str(ws)], check=True, capture_output=True)
k("task", "add", "bookings", "--kind", "extraction", "--system-prompt", PROMPT)
k("models", "add", "v1", "--path", str(base), "--task", "bookings", "--promote")
k("ingest", str(OUT / "logs.jsonl"), "--task", "bookings")
t1 = time.time()
p = subprocess.run(
    [K, "-w", str(ws), "repair", "--task", "bookings", "--approve", "--json"],
    stdout=subprocess.PIPE,
    text=True,
)
rep = json.loads(p.stdout)
print(
    "repair", p.returncode, rep["status"], rep.get("candidate"), f"{time.time() - t1:.0f}s", file=sys.stderr
)
for v in ["v1", rep.get("candidate")]:
    if v:
        e = json.loads(
            k("eval", "--model", v, "--task", "bookings", "--data", str(OUT / "gold.jsonl"), "--json")
        )
        print(v, {x: e.get(x) for x in ("score", "metrics")}, file=sys.stderr)
diagnosis = json.loads(next((ws / ".kaizen" / "artifacts" / "runs").glob("*/diagnosis.json")).read_text())
flagged = {str(f["trace_id"]): f["kind"] for f in diagnosis.get("suspects") or []}
caught = poisoned & set(flagged)
print(
    f"triage: {len(flagged)} pieces of feedback distrusted {dict(sorted(Counter(flagged.values()).items()))}; "
    f"poisoned corrections caught {len(caught)} of {len(poisoned)} (recall {len(caught) / max(1, len(poisoned)):.2f},"
    f" precision {len(caught) / max(1, len(flagged)):.2f})",
    file=sys.stderr,
)
