"""What an AdaptFT run is about: the task, v1's training data and the inference pool its stages draw from.

Data: CLINC150's banking slice (``workflows.clinc``; Larson et al., EMNLP 2019, CC BY 3.0), its travel
intents for ``clinc-travel`` (the full CLINC150 in the project's shared data folder) and, for
the GPU-only ``gsm8k`` scenario, GSM8K's training split (Cobbe et al., 2021, MIT) from the project's
shared data folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen.tools.errors import DataError
from kaizen.tools.evaluate.metrics import extract_final_answer
from kaizen.tools.schema import EvalItem, TaskSpec
from kaizen.workflows.bench import clinc
from kaizen.workflows.bench.perturb import OUT_OF_SCOPE, Item, items_from_pairs

# v1's deliberate gaps (as in the support-intents demo): one intent never shown, one barely.
CLINC_GAPS = {"card_declined": 0, "bill_balance": 2}
SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
GSM8K_PATH = SHARED_DATA / "gsm8k" / "train.jsonl"
CLINC_FULL_PATH = SHARED_DATA / "clinc150" / "data_full.json"
# A second CLINC150 domain, never used to choose anything in kaizen (thresholds, recipes, presets were all
# set on banking): the generalisation check. Ten of the travel domain's fifteen intents, with the same kind
# of gaps (a notification intent never shown, flight status barely) and near neighbours (alert vs
# notification vs suggestion, book_flight vs flight_status).
TRAVEL_LABELS = [
    "travel_notification",
    "flight_status",
    "book_flight",
    "book_hotel",
    "car_rental",
    "travel_alert",
    "travel_suggestion",
    "lost_luggage",
    "carry_on",
    "international_visa",
]
TRAVEL_GAPS = {"travel_notification": 0, "flight_status": 2}
TRAVEL_PROMPT = "Classify the travel request. Reply with the intent label only."
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


def travel_slice(path: Path = CLINC_FULL_PATH) -> dict[str, Any]:
    """The travel intents of the full CLINC150 (the shared data folder), shaped like the banking slice."""
    if not path.exists():
        raise DataError(
            f"CLINC150 not found at {path}: the clinc-travel scenario reads the shared data folder"
        )
    full = json.loads(path.read_text())
    return {
        "labels": list(TRAVEL_LABELS),
        **{s: [[t, lab] for t, lab in full[s] if lab in TRAVEL_LABELS] for s in ("train", "val", "test")},
    }


def clinc_scenario(
    *,
    v1_per_label: int,
    seed: int,
    labels: Sequence[str] | None = None,
    gaps: Mapping[str, int] = CLINC_GAPS,
    data: dict[str, Any] | None = None,
    domain: str = "banking",
    system_prompt: str = clinc.SYSTEM_PROMPT,
) -> Scenario:
    """CLINC150 (the banking slice unless ``data`` is another domain's): v1 learns ``v1_per_label``
    train-split examples per intent, except the gaps.

    The pool is every other train/val/test utterance of the intents (v1's own examples removed):
    production traffic v1 has never seen.
    """
    data = data or clinc.load_slice()
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
        system_prompt=system_prompt,
        description=f"Route {domain} support messages (CLINC150 {domain} intents).",
    )
    return Scenario(
        name="clinc" if domain == "banking" else f"clinc-{domain}",
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
