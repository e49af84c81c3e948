"""AdaptFT-Bench's staged protocol, the pure part: scenarios, stage batches, splits, feedback, logs.

``kaizen.workflows.bench.adaptft`` drives real models and workspaces; everything that decides *what data*
each stage sees lives here, seeded and free of the ML stack, so it is unit-tested on its own and a
rerun of the benchmark with the same seed feeds both arms exactly the same inputs.

The protocol (Pioneer Agent's AdaptFT-Bench, see the project's research notes): a deployed v1 meets
three batches of fresh production inputs with rising poison rates (``STAGE_POISON_RATES``). Each
batch is perturbed, run through the arm's *own* production model, and given feedback: the agent arm
sees the feedback as the perturbations left it (fixable noise keeps the right correction, a poison
brings its wrong one); the naive arm sees AdaptFT's "realistic naive" corruption on top
(``perturb.naive_feedback``). 70 % of a batch becomes logs; 30 % joins the held-out set, which is
always scored on the *clean gold* (the source text and its true label), never on the feedback.

Data: CLINC150's banking slice (``workflows.clinc``; Larson et al., EMNLP 2019, CC BY 3.0) and, for
the GPU-only ``gsm8k`` scenario, GSM8K's training split (Cobbe et al., 2021, MIT) from the project's
shared data folder.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kaizen.tools.errors import DataError
from kaizen.tools.evaluate.metrics import extract_final_answer, normalize_label
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.workflows.bench import clinc
from kaizen.workflows.bench.perturb import (
    OUT_OF_SCOPE,
    STAGE_POISON_RATES,
    Item,
    PerturbedItem,
    items_from_pairs,
    naive_feedback,
    perturb,
    poison_count,
)

TEST_FRACTION = 0.30  # AdaptFT: each stage's logs are split 70/30 into train/test
# v1's deliberate gaps (as in the support-intents demo): one intent never shown, one barely.
CLINC_GAPS = {"card_declined": 0, "bill_balance": 2}
GSM8K_PATH = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k" / "train.jsonl"
GSM8K_CITATION = (
    "GSM8K: Cobbe et al., 'Training Verifiers to Solve Math Word Problems', 2021 "
    "(openai/grade-school-math), MIT licence"
)
GSM8K_SYSTEM_PROMPT = "Solve the math word problem step by step, then give the final answer after '####'."
# Fixable noise that would change a math problem's answer (cutting the question off, dropping a
# decimal point, "to" → "2"): off for GSM8K, where it would not be fixable any more. So is the
# free-text correction poison: a math example's expected value must hold a final answer, and
# kaizen refuses ("n/a") as one before any triage could drop it.
GSM8K_RATE_OVERRIDES = {
    "truncation": 0.0,
    "punctuation_loss": 0.0,
    "abbreviation": 0.0,
    "off_label_correction": 0.0,
}


def rank(seed: int, tag: str, key: str) -> str:
    """A seeded sort key: sorting by it is an order-independent pseudo-random permutation."""
    return hashlib.sha256(json.dumps([seed, tag, key]).encode()).hexdigest()


@dataclass
class Scenario:
    """What a benchmark run is about: the task, v1's training data and the inference pool.

    ``pool`` holds the clean production inputs the stages draw from (never v1's examples);
    ``labels`` is what perturbations pick wrong corrections from; ``reference`` maps a pool item id
    to what a *right* correction says (CLINC: the label; GSM8K: the worked solution); ``stratify``
    draws stage batches evenly over the gold labels (CLINC's intents; not GSM8K's answers).
    """

    name: str
    task: TaskSpec
    v1_items: list[EvalItem]
    pool: list[Item]
    labels: list[str]
    rates: dict[str, float] | None = None
    reference: dict[str, str] = field(default_factory=dict)
    stratify: bool = True
    abstain_label: str | None = OUT_OF_SCOPE  # naive arm: the "right" correction of an input no label fits
    max_new_tokens: int = 12
    citation: str = clinc.CITATION


# ----------------------------------------------------------------------------------- scenarios
def clinc_scenario(
    *, v1_per_label: int, seed: int, labels: Sequence[str] | None = None, gaps: Mapping[str, int] = CLINC_GAPS
) -> Scenario:
    """CLINC150 banking: v1 learns ``v1_per_label`` train-split examples per intent, except the gaps.

    The pool is every other train/val/test utterance of the intents (v1's own examples removed):
    production traffic v1 has never seen.
    """
    data = clinc.load_slice()
    labels = list(labels or data["labels"])
    v1_pairs: list[tuple[str, str]] = []
    for lab in labels:
        v1_pairs += clinc.rows("train", [lab], per_label=gaps.get(lab, v1_per_label), seed=seed, data=data)
    seen = {text for text, _ in v1_pairs}
    pool_pairs = [
        (t, lab)
        for split in ("train", "val", "test")
        for t, lab in data[split]
        if lab in labels and t not in seen
    ]
    task = TaskSpec(
        name="intents",
        kind="classification",
        labels=labels,
        system_prompt=clinc.SYSTEM_PROMPT,
        description="Route banking support messages (CLINC150 banking intents).",
    )
    return Scenario(
        name="clinc",
        task=task,
        v1_items=clinc.to_items(v1_pairs),
        pool=items_from_pairs(pool_pairs),
        labels=labels,
    )


def final_answer(solution: str) -> str:
    """GSM8K's final answer (after ``####``), normalised like the math metric does."""
    ans = extract_final_answer(solution)
    if ans is None:
        raise DataError(f"GSM8K answer without a final answer: {solution[-80:]!r}")
    return ans


def gsm8k_scenario(*, v1_size: int, seed: int, path: Path = GSM8K_PATH) -> Scenario:
    """GSM8K: v1 learns ``v1_size`` worked solutions; the rest of the training split is the pool.

    A perturbation's "label" is the final answer; a right correction is the worked solution, a
    poisoned one another problem's answer (or free text).
    """
    if not path.exists():
        raise DataError(
            f"GSM8K not found at {path}: the gsm8k scenario reads the project's shared data folder"
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: rank(seed, "gsm8k-v1", r["question"]))
    task = TaskSpec(
        name="gsm8k",
        kind="math",
        system_prompt=GSM8K_SYSTEM_PROMPT,
        description="Grade-school math word problems.",
    )
    v1 = [
        EvalItem(
            id=rank(0, "gsm8k-item", r["question"])[:16],
            messages=[{"role": "user", "content": r["question"]}],
            expected=r["answer"],
        )
        for r in rows[:v1_size]
    ]
    rest = rows[v1_size:]
    pool = items_from_pairs((r["question"], final_answer(r["answer"])) for r in rest)
    reference = {it.id: r["answer"] for it, r in zip(pool, rest, strict=True)}
    labels = sorted({it.label for it in pool})
    return Scenario(
        name="gsm8k",
        task=task,
        v1_items=v1,
        pool=pool,
        labels=labels,
        rates=dict(GSM8K_RATE_OVERRIDES),
        reference=reference,
        stratify=False,
        abstain_label=None,
        max_new_tokens=256,
        citation=GSM8K_CITATION,
    )


# ------------------------------------------------------------------------------ stage batches
def stage_batches(
    pool: Sequence[Item], n_stages: int, per_stage: int, seed: int, *, stratify: bool = True
) -> list[list[Item]]:
    """``n_stages`` disjoint batches of ``per_stage`` fresh inputs each, in a seeded order.

    Stratified: labels take turns (each label's items in seeded order; the label that starts a
    stage rotates), so every stage sees every intent, v1's gaps included. Raises when the pool is
    too small: silently shorter stages would change the poison counts the protocol promises.
    """
    if n_stages * per_stage > len(pool):
        raise DataError(
            f"the inference pool holds {len(pool)} inputs; {n_stages} stages × {per_stage} need more"
        )
    if not stratify:
        order = sorted(pool, key=lambda it: rank(seed, "stage-order", it.id))
        return [order[s * per_stage : (s + 1) * per_stage] for s in range(n_stages)]
    queues: dict[str, list[Item]] = defaultdict(list)
    for it in sorted(pool, key=lambda it: rank(seed, "stage-order", it.id)):
        queues[it.label].append(it)
    labels = sorted(queues)
    out: list[list[Item]] = []
    for s in range(n_stages):
        batch: list[Item] = []
        turn = s
        while len(batch) < per_stage:
            if not any(queues.values()):
                raise DataError("the inference pool ran out of inputs")
            q = queues[labels[turn % len(labels)]]
            if q:
                batch.append(q.pop(0))
            turn += 1
        out.append(batch)
    return out


def split_batch(
    items: Sequence[PerturbedItem], seed: int, stage: int, test_fraction: float = TEST_FRACTION
) -> tuple[list[PerturbedItem], list[PerturbedItem]]:
    """(logs, test): exactly ``round(test_fraction × n)`` (half up) items go to the stage's test split.

    Chosen by a seeded key per item id, so the split does not depend on the batch's order; both
    parts keep the input order.
    """
    k = poison_count(len(items), test_fraction)
    test_ids = {it.id for it in sorted(items, key=lambda it: rank(seed, f"test-split-{stage}", it.id))[:k]}
    return [it for it in items if it.id not in test_ids], [it for it in items if it.id in test_ids]


def gold_items(items: Iterable[PerturbedItem]) -> list[EvalItem]:
    """Held-out examples on the *clean gold*: the source text (before any perturbation) and its label.

    Poisoned inputs count too: their source was a real request, and that is what users send.
    """
    return [
        EvalItem(id=it.id, messages=[{"role": "user", "content": it.source_text}], expected=it.gold)
        for it in items
    ]


def heldout_union(test_splits: Sequence[Sequence[PerturbedItem]]) -> list[EvalItem]:
    """The held-out set after a stage: every stage's test split so far, on clean gold, in stage order."""
    seen: set[str] = set()
    out = []
    for split in test_splits:
        for it in gold_items(split):
            if it.id not in seen:
                seen.add(it.id)
                out.append(it)
    return out


@dataclass
class Stage:
    """One deployment stage's data: the perturbed batch and its 70/30 split."""

    index: int  # 1-based
    poison_rate: float
    batch: list[PerturbedItem]
    logs: list[PerturbedItem]
    test: list[PerturbedItem]

    @property
    def poisoned(self) -> int:
        return sum(it.poisoned for it in self.batch)


def build_stages(
    scenario: Scenario, per_stage: int, seed: int, rates: Sequence[float] = STAGE_POISON_RATES
) -> list[Stage]:
    """Every stage's perturbed batch and split, decided up front from the seed alone."""
    batches = stage_batches(scenario.pool, len(rates), per_stage, seed, stratify=scenario.stratify)
    out = []
    for s, (batch, rate) in enumerate(zip(batches, rates, strict=True), 1):
        perturbed = perturb(
            batch, scenario.labels, seed=seed * 1000 + s, rates=scenario.rates, poison_rate=rate
        )
        logs, test = split_batch(perturbed, seed, s)
        out.append(Stage(index=s, poison_rate=rate, batch=perturbed, logs=logs, test=test))
    return out


# ------------------------------------------------------------------------------------ feedback
def matches(kind: str, output: str, answer: str | None, labels: Sequence[str]) -> bool:
    """Does the model's output agree with what the feedback giver thinks is right?"""
    if answer is None:
        return False
    if kind == "math":
        got, want = extract_final_answer(output or ""), extract_final_answer(answer)
        return got is not None and got == want
    if answer in labels:
        return normalize_label(output or "", list(labels)) == answer
    return (output or "").strip().casefold() == answer.strip().casefold()


def _reference(scenario: Scenario, it: PerturbedItem, correction: str | None) -> str | None:
    """What a correction says in the logs: the worked solution when it names the gold answer."""
    if correction is not None and correction == it.gold and it.correct_label_known:
        return scenario.reference.get(it.id, correction)
    return correction


def arm_feedback(
    scenario: Scenario, items: Sequence[PerturbedItem], outputs: Sequence[str], arm: str, seed: int
) -> list[tuple[PerturbedItem, dict[str, Any]]]:
    """Each item (as the arm's feedback giver left it) with its feedback record.

    Agent arm: the feedback giver compares the output with ``item.correction`` (the gold label, or
    the poison's correction): pass when they agree, else fail with that correction. Naive arm:
    the same verdicts decide which items are failures, then ``naive_feedback`` corrupts the
    corrections (30 % of noisy failures lose theirs; of poisoned items 50 % get a wrong one, 20 %
    the right one, 30 % none); an item without a correction fails without one.
    """
    kind, labels = scenario.task.kind, scenario.labels
    failed = {
        it.id for it, out in zip(items, outputs, strict=True) if not matches(kind, out, it.correction, labels)
    }
    if arm == "naive":
        shown = naive_feedback(items, labels, seed, failed=failed, abstain_label=scenario.abstain_label)
    elif arm == "agent":
        shown = list(items)
    else:
        raise ValueError(f"unknown arm {arm!r}")
    out = []
    for it, output in zip(shown, outputs, strict=True):
        if it.naive == "no_correction" or it.correction is None:
            fb: dict[str, Any] = {"verdict": "fail", "source": "human", "reason": "wrong answer"}
        elif matches(kind, output, it.correction, labels):
            fb = {"verdict": "pass", "source": "human"}
        else:
            fb = {
                "verdict": "fail",
                "correction": _reference(scenario, it, it.correction),
                "source": "human",
                "reason": "wrong answer",
            }
        out.append((it, fb))
    return out


def log_records(
    scenario: Scenario,
    items: Sequence[PerturbedItem],
    outputs: Sequence[str],
    *,
    arm: str,
    stage: int,
    seed: int,
    model_version: str,
    start: datetime | None = None,
) -> list[dict[str, Any]]:
    """kaizen JSONL records for one arm's share of a stage: what ``kaizen ingest`` reads.

    ``metadata.adaptft`` keeps the ground truth (perturbations, poison, naive treatment) for
    analysis; kaizen's triage never reads trace metadata.
    """
    t0 = (start or datetime(2026, 11, 1, 9, 0, 0)) + timedelta(days=7 * (stage - 1))
    recs = []
    for i, ((it, fb), output) in enumerate(
        zip(arm_feedback(scenario, items, outputs, arm, seed), outputs, strict=True)
    ):
        recs.append(
            {
                "id": f"s{stage}-{it.id}",
                "timestamp": (t0 + timedelta(minutes=5 * i)).isoformat(),
                "task": scenario.task.name,
                "model_version": model_version,
                "messages": [{"role": "user", "content": it.text}],
                "output": output,
                "feedback": fb,
                "metadata": {
                    "adaptft": {
                        "stage": stage,
                        "arm": arm,
                        "gold": it.gold,
                        "perturbations": it.perturbations,
                        "poison": it.poison,
                        "naive": it.naive,
                    }
                },
            }
        )
    return recs


def split_truth(
    scenario: Scenario, records: Sequence[Mapping[str, Any]], items: Sequence[PerturbedItem]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(logs, answer_key)``: the records as kaizen ingests them (no ``metadata.adaptft``) and the truth.

    The answer key (``kaizen.tools.answer_key``) holds each trace's right answer (None when no answer is
    right, e.g. a jailbreak or an off-domain input that replaced the original) and its noise: the
    perturbations, ``poisoned`` and the naive arm's treatment. Only the oracle arm and triage scoring read it.
    """
    logs, key = [], []
    for r, it in zip(records, items, strict=True):
        meta = r["metadata"]["adaptft"]
        logs.append({k: v for k, v in r.items() if k != "metadata"})
        label = _reference(scenario, it, it.expected) if it.expected is not None else None
        noise = [
            *meta["perturbations"],
            *(["poisoned", f"poison:{meta['poison']}"] if meta["poison"] else []),
            *([f"naive:{meta['naive']}"] if meta["naive"] else []),
        ]
        key.append({"id": r["id"], "label": label, "noise": noise})
    return logs, key


def feedback_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Per-arm summary of a stage's logs: passes, failures with and without a correction, poisoned, naive treatments."""
    c: Counter[str] = Counter()
    for r in records:
        fb, meta = r["feedback"], r["metadata"]["adaptft"]
        c["logs"] += 1
        c[
            "pass"
            if fb["verdict"] == "pass"
            else "fail_corrected"
            if fb.get("correction")
            else "fail_uncorrected"
        ] += 1
        c["poisoned"] += meta["poison"] is not None
        if meta["naive"]:
            c[f"naive_{meta['naive']}"] += 1
    return dict(c)


# ---------------------------------------------------------------------------------- scoring
def score(correct: Mapping[str, bool], ids: Sequence[str]) -> float | None:
    """Accuracy of one version's outcomes over ``ids`` (None when there are none)."""
    if not ids:
        return None
    missing = [i for i in ids if i not in correct]
    if missing:
        raise KeyError(f"{len(missing)} held-out examples were not evaluated (e.g. {missing[0]})")
    return sum(bool(correct[i]) for i in ids) / len(ids)


def count_regressions(before: Mapping[str, bool], after: Mapping[str, bool]) -> int:
    """Right→wrong flips between two versions on the examples both were evaluated on."""
    return sum(1 for i, ok in before.items() if ok and i in after and not after[i])
