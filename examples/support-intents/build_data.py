"""Build the support-intents demo: a deployed v1 with deliberate gaps, its production logs, a gold set.

Deterministic (seeded) and offline. Data: CLINC150 (Larson et al., EMNLP 2019; CC BY 3.0), the
10-intent banking slice in ../data. Run: ``python examples/support-intents/build_data.py``.

1. v1 = the embedded SmolLM2-135M-Instruct after a brief LoRA SFT on 8 of the 10 intents, with two
   gaps: ``card_declined`` never shown, ``bill_balance`` shown twice (so it is confused with
   ``balance``). This is the model "in production".
2. Production logs = v1 actually run on 200 CLINC inputs it never saw (15 % with typos) plus 6
   out-of-scope queries, with feedback: the gold label, except 8 % poisoned (wrong) corrections,
   made-up corrections on the off-domain inputs, and 10 % unlabeled.
3. Gold held-out set = CLINC's *test* split for the 10 intents (20 each): the demo's before/after
   numbers are measured there, never on feedback that may be poisoned.
4. Answer key (``data/answer_key.jsonl``): each trace's true label and the noise that hit it. kaizen never
   ingests it; only the oracle arm (``demo.py --strategy oracle``) and the triage score read it.

``--logs-only`` rebuilds the logs and the answer key from the recorded v1 outputs in ``data/logs.jsonl``
(no training, no generation): the same seeded noise, so the same logs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from kaizen.tools.answer_key import write_answer_key
from kaizen.tools.data import sft_rows, write_items
from kaizen.tools.evaluate.backends import TransformersBackend
from kaizen.tools.models import resolve_base
from kaizen.tools.schema import TaskSpec, render
from kaizen.tools.train.launch import run_job
from kaizen.tools.train.spec import LoraSpec, TrainJob
from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice, make_logs, rows, to_items
from kaizen.workflows.cli.output import configure_logging

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
TASK = "support-intents"
GAPS = {"card_declined": 0, "bill_balance": 2}  # intent → examples v1 is trained on (others: 12)


def task_spec() -> TaskSpec:
    return TaskSpec(
        name=TASK,
        kind="classification",
        labels=load_slice()["labels"],
        system_prompt=SYSTEM_PROMPT,
        description="Route banking support messages to one of 10 intents.",
    )


def build_v1(task: TaskSpec, out: Path) -> set[str]:
    """Train the deployed v1 adapter; returns the ids of its training examples."""
    pairs = []
    for lab in task.labels:
        pairs += rows("train", [lab], per_label=GAPS.get(lab, 12), seed=11)
    items = to_items(pairs)
    job_dir = out / "v1-job"
    write_items(job_dir / "data.jsonl", sft_rows(task, items))
    job = TrainJob(
        kind="sft",
        base_dir=resolve_base("smollm2-135m"),
        data_path=job_dir / "data.jsonl",
        output_dir=job_dir,
        epochs=3,
        learning_rate=1e-3,
        batch_size=8,
        save_steps=1000,
        lora=LoraSpec(r=8, alpha=16, top_layers=12),
    )
    res = run_job(
        job,
        lambda r: (
            print(f"  v1 step {r.get('step')}/{r.get('max_steps')} loss {r.get('loss', '')}", file=sys.stderr)
            if "loss" in r
            else None
        ),
    )
    adapter = out / "v1"
    if adapter.exists():
        import shutil

        shutil.rmtree(adapter)
    Path(res["output_path"]).rename(adapter)
    for extra in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md"):
        (adapter / extra).unlink(missing_ok=True)  # the base provides the tokenizer; keep the commit small
    return {it.id for it in items}


def v1_train_ids(task: TaskSpec) -> set[str]:
    """The ids of v1's training examples (seeded: the same without training again)."""
    return {
        it.id
        for lab in task.labels
        for it in to_items(rows("train", [lab], per_label=GAPS.get(lab, 12), seed=11))
    }


def main() -> int:
    configure_logging()  # kaizen's own notes (the embedded model's one-time conversion) on stderr, as the CLI shows them
    t0 = time.time()
    task = task_spec()
    DATA.mkdir(parents=True, exist_ok=True)
    logs_only = "--logs-only" in sys.argv
    if logs_only:  # replay v1's recorded answers, in input order
        recorded = [
            json.loads(x)["output"] for x in (DATA / "logs.jsonl").read_text().splitlines() if x.strip()
        ]
        trained = v1_train_ids(task)
    else:
        print(
            "1/3 training the deployed v1 (with gaps: card_declined unseen, bill_balance ×2) …",
            file=sys.stderr,
        )
        trained = build_v1(task, DATA)
    print("2/3 running v1 on 206 production inputs …", file=sys.stderr)
    backend = None if logs_only else TransformersBackend(resolve_base("smollm2-135m"), DATA / "v1")
    pool = [
        p
        for p, it in zip(
            rows("train", task.labels, per_label=40, seed=23),
            to_items(rows("train", task.labels, per_label=40, seed=23)),
            strict=True,
        )
        if it.id not in trained
    ]
    per: dict[str, int] = {}
    pairs = []
    for text, lab in pool:
        if per.get(lab, 0) < 20:
            pairs.append((text, lab))
            per[lab] = per.get(lab, 0) + 1

    def run_model(texts: list[str]) -> list[str]:
        if backend is None:
            assert len(recorded) == len(texts), (
                "data/logs.jsonl does not match the inputs: rebuild without --logs-only"
            )
            return recorded
        return backend.generate(
            [render(task, None, [{"role": "user", "content": t}]) for t in texts], max_new_tokens=12
        )

    oos = [t for t, _ in load_slice()["oos"][10:16]]
    logs, key = make_logs(
        run_model, task.labels, pairs, seed=29, off_domain=oos, model_version="v1", id_prefix="support-"
    )
    (DATA / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    write_answer_key(DATA / "answer_key.jsonl", key)
    meta = {
        "title": TASK,
        "task": TASK,
        "labels": task.labels,
        "system_prompt": SYSTEM_PROMPT,
        "preset": "demo",
    }
    (DATA / "scenario.json").write_text(json.dumps(meta, indent=2) + "\n")  # what demo.py --data reads
    print("3/3 writing the gold held-out set (CLINC test split) …", file=sys.stderr)
    gold = to_items(rows("test", task.labels, per_label=20, seed=0))
    write_items(DATA / "gold_heldout.jsonl", gold)
    passes = sum(1 for r in logs if r.get("feedback", {}).get("verdict") == "pass")
    labelled = sum(1 for r in logs if "feedback" in r)
    print(
        f"done in {time.time() - t0:.0f}s: {len(logs)} traces, {passes}/{labelled} labelled ones pass "
        f"({passes / labelled:.0%}), gold set {len(gold)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
