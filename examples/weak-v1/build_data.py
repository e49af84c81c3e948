"""Build the weak-v1 scenario: a barely trained deployed model on a domain nothing in kaizen was tuned on.

The shape of the repair that once promoted nothing while naive retraining gained 51 points: v1 is right on
about a quarter of its traffic, so almost every log is a failure, the passes are few and the feedback is
noisy. Deterministic (seeded), offline. Data: the fifteen *kitchen & dining* intents of CLINC150 (Larson et
al., EMNLP 2019; CC BY 3.0) from the project's shared data folder.

1. v1 = the embedded SmolLM2-135M-Instruct after a LoRA SFT of 3 epochs on 3 examples of 9 of the 15
   intents (six never shown).
2. Production logs = v1 run on 16 unseen CLINC train inputs per intent (240; 15 % with typos) plus 6
   out-of-scope queries with made-up corrections; feedback from the true label, except 12 % poisoned
   (a wrong intent) and 10 % unlabeled.
3. Gold held-out set = CLINC's test split, 20 per intent (300).
4. Answer key apart from the logs (only the oracle arm reads it).

Run: ``python examples/weak-v1/build_data.py [--out DIR]`` (default ``examples/weak-v1/data``), then
``python examples/support-intents/demo.py --data DIR`` runs agent, naive and oracle on it.

Other shapes from the same recipe: ``--domain auto`` (CLINC150 auto & commute), v1's strength (``--seen``
intents, ``--per-seen`` examples each, ``--epochs``), the traffic (``--logs-per-label``) and ``--poison``
(the README's probes: a half-right v1 with 20 % poison, a strong v1 with 30 %).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from kaizen.tools.answer_key import write_answer_key
from kaizen.tools.data import sft_rows, write_items
from kaizen.tools.evaluate.backends import TransformersBackend
from kaizen.tools.models import resolve_base
from kaizen.tools.schema import TaskSpec, render
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import TrainJob
from kaizen.workflows.bench.adaptft.scenarios import CLINC_FULL_PATH
from kaizen.workflows.bench.clinc import make_logs, rows, to_items
from kaizen.workflows.cli.output import configure_logging

HERE = Path(__file__).resolve().parent
LABELS = [
    "accept_reservations",
    "calories",
    "cancel_reservation",
    "confirm_reservation",
    "cook_time",
    "food_last",
    "how_busy",
    "ingredient_substitution",
    "ingredients_list",
    "meal_suggestion",
    "nutrition_info",
    "recipe",
    "restaurant_reservation",
    "restaurant_reviews",
    "restaurant_suggestion",
]
PROMPT = "Classify the restaurant or cooking request. Reply with the intent label only."
# A second CLINC150 domain for probing other shapes (``--domain auto``); nothing in kaizen was chosen on it.
AUTO_LABELS = sorted(
    "traffic directions gas gas_type distance current_location mpg oil_change_when oil_change_how "
    "jump_start uber schedule_maintenance last_maintenance tire_pressure tire_change".split()
)
AUTO_PROMPT = "Classify the driving or car request. Reply with the intent label only."
DOMAINS = {
    "kitchen": ("kitchen-intents", "weak-v1 (kitchen & dining)", LABELS, PROMPT),
    "auto": ("auto-intents", "auto & commute", AUTO_LABELS, AUTO_PROMPT),
}
SEEN, PER_SEEN, EPOCHS, LOGS_PER_LABEL, GOLD_PER_LABEL, POISON = 9, 3, 3, 16, 20, 0.12


def domain_slice(labels: list[str]) -> dict:
    """One domain's intents of the full CLINC150 (and its out-of-scope inputs)."""
    if not CLINC_FULL_PATH.exists():
        sys.exit(f"weak-v1: CLINC150 not found at {CLINC_FULL_PATH} (the project's shared data folder)")
    full = json.loads(CLINC_FULL_PATH.read_text())
    data = {s: [[t, lab] for t, lab in full[s] if lab in labels] for s in ("train", "val", "test")}
    return data | {"labels": labels, "oos": full["oos_test"]}


def train_v1(task: TaskSpec, pairs: list[tuple[str, str]], out: Path, epochs: int) -> None:
    """The deployed v1: `kaizen train sft --epochs 3` from the embedded base, on very few examples."""
    job_dir = out / "v1-job"
    write_items(job_dir / "data.jsonl", sft_rows(task, to_items(pairs)))
    job = TrainJob(
        kind="sft",
        base_dir=resolve_base("smollm2-135m"),
        data_path=job_dir / "data.jsonl",
        output_dir=job_dir,
        epochs=epochs,  # everything else is the training spec's default, as `kaizen train sft` uses it
        save_steps=1000,
    )
    res = run_job(
        job, lambda r: print(f"  v1 step {r.get('step')}", file=sys.stderr) if "loss" in r else None
    )
    shutil.rmtree(out / "v1", ignore_errors=True)
    Path(res["output_path"]).rename(out / "v1")
    shutil.rmtree(job_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "data", help="Scenario folder to write.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain", choices=sorted(DOMAINS), default="kitchen", help="CLINC150 domain.")
    ap.add_argument("--seen", type=int, default=SEEN, help="Intents v1 is trained on (of the domain's 15).")
    ap.add_argument("--per-seen", type=int, default=PER_SEEN, help="v1's training examples per seen intent.")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="v1's training epochs.")
    ap.add_argument(
        "--logs-per-label", type=int, default=LOGS_PER_LABEL, help="Production inputs per intent."
    )
    ap.add_argument(
        "--poison", type=float, default=POISON, help="Share of corrections naming a wrong intent."
    )
    args = ap.parse_args()
    configure_logging()
    name, title, labels, prompt = DOMAINS[args.domain]
    t0, out, data = time.time(), args.out.resolve(), domain_slice(labels)
    out.mkdir(parents=True, exist_ok=True)
    task = TaskSpec(name=name, kind="classification", labels=labels, system_prompt=prompt)
    seen = sorted(random.Random(args.seed).sample(labels, args.seen))
    v1_pairs = rows("train", seen, per_label=args.per_seen, seed=args.seed, data=data)
    print(f"1/3 training v1 on {len(v1_pairs)} examples of {args.seen} intents …", file=sys.stderr)
    train_v1(task, v1_pairs, out, args.epochs)
    taught = {t for t, _ in v1_pairs}
    pool = [(t, lab) for t, lab in rows("train", labels, seed=args.seed + 1, data=data) if t not in taught]
    pairs = []
    for text, lab in pool:
        if sum(1 for _, seen_lab in pairs if seen_lab == lab) < args.logs_per_label:
            pairs.append((text, lab))
    print(f"2/3 running v1 on {len(pairs)} production inputs …", file=sys.stderr)
    backend = TransformersBackend(resolve_base("smollm2-135m"), out / "v1")

    def run_model(texts: list[str]) -> list[str]:
        return backend.generate(
            [render(task, None, [{"role": "user", "content": t}]) for t in texts], max_new_tokens=12
        )

    oos = [t for t, _ in data["oos"][:6]]
    logs, key = make_logs(
        run_model,
        labels,
        pairs,
        seed=args.seed,
        poison_rate=args.poison,
        off_domain=oos,
        id_prefix=f"{args.domain}-",
    )
    (out / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    write_answer_key(out / "answer_key.jsonl", key)
    print("3/3 writing the gold held-out set (CLINC test split) …", file=sys.stderr)
    write_items(
        out / "gold_heldout.jsonl",
        to_items(rows("test", labels, per_label=GOLD_PER_LABEL, seed=0, data=data)),
    )
    meta = {"title": title, "task": name, "labels": labels, "system_prompt": prompt}
    (out / "scenario.json").write_text(json.dumps(meta | {"preset": None}, indent=2) + "\n")
    fb = [r["feedback"] for r in logs if "feedback" in r]
    passes = sum(f["verdict"] == "pass" for f in fb)
    print(
        f"done in {time.time() - t0:.0f}s: {len(logs)} traces, v1 passes {passes} of {len(fb)} labelled; "
        f"next: python examples/support-intents/demo.py --data {out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
