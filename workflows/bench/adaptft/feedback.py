"""Each arm's feedback on its own model's answers, and the log records (and, apart, the answer key) it
ingests. Pure and seeded, like the stages: the agent arm sees the feedback as the perturbations left it;
the naive arm sees AdaptFT's "realistic naive" corruption on top (``perturb.naive_feedback``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kaizen.tools.evaluate.metrics import extract_final_answer, normalize_label
from kaizen.workflows.bench.adaptft.scenarios import Scenario
from kaizen.workflows.bench.perturb import PerturbedItem, naive_feedback


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
