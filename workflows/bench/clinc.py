"""The CLINC150 banking slice shipped in ``examples/data`` (CC BY 3.0; Larson et al., EMNLP 2019).

Used by the demo, the benchmark and the tests, so they all read the same public data offline.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from kaizen.tools.data import item_id
from kaizen.tools.schema import EvalItem

SLICE = Path(__file__).resolve().parents[2] / "examples" / "data" / "clinc150_banking.json"
CITATION = (
    "CLINC150: Larson et al., 'An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction', "
    "EMNLP 2019 (clinc/oos-eval), CC BY 3.0"
)
# A short system prompt: on a CPU every prompt token is paid for at every training step.
SYSTEM_PROMPT = "Classify the banking request. Reply with the intent label only."


def load_slice(path: Path = SLICE) -> dict[str, Any]:
    return json.loads(path.read_text())


def rows(
    split: str,
    labels: list[str] | None = None,
    per_label: int | None = None,
    seed: int = 0,
    data: dict[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """(text, intent) rows of a split, optionally restricted to ``labels`` and ``per_label`` each (seeded)."""
    data = data or load_slice()
    out = [(t, lab) for t, lab in data[split] if labels is None or lab in labels]
    if per_label is not None:
        rnd = random.Random(seed)
        rnd.shuffle(out)
        seen: dict[str, int] = {}
        kept = []
        for t, lab in out:
            if seen.get(lab, 0) < per_label:
                kept.append((t, lab))
                seen[lab] = seen.get(lab, 0) + 1
        out = kept
    return out


def to_items(pairs: list[tuple[str, str]]) -> list[EvalItem]:
    items = []
    for text, label in pairs:
        msgs = [{"role": "user", "content": text}]
        items.append(EvalItem(id=item_id(msgs, label), messages=msgs, expected=label))
    return items


def typo(text: str, rnd: random.Random) -> str:
    """One realistic typo: swap, drop or double a letter inside a word."""
    idx = [i for i in range(1, len(text) - 1) if text[i].isalpha() and text[i - 1].isalpha()]
    if not idx:
        return text
    i = rnd.choice(idx)
    op = rnd.choice(("swap", "drop", "double"))
    if op == "swap":
        return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
    if op == "drop":
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def make_logs(
    run_model: Any,
    labels: list[str],
    pairs: list[tuple[str, str]],
    *,
    seed: int = 0,
    typo_rate: float = 0.15,
    poison_rate: float = 0.08,
    off_domain: list[str] = (),
    unlabeled_rate: float = 0.1,
    model_version: str = "v1",
    start: str = "2026-11-01T09:00:00",
    id_prefix: str = "t",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Production logs: run the deployed model on (noisy) inputs and attach realistic feedback.

    ``run_model(list_of_texts) -> list_of_outputs`` is the deployed model. Feedback is the gold
    label (fail + correction when the output is wrong, pass when right), except: ``poison_rate`` of
    labelled traces get a *wrong* correction (a human slip or a malicious label), off-domain inputs
    get a correction from the label set (which cannot be right), ``unlabeled_rate`` get no feedback.
    Returns ``(logs, answer_key)``: every record has an ``id``; the truth about it (its real label,
    ``None`` off-domain, and which noise hit it) goes to the answer key, never into the logs kaizen ingests.
    """
    from datetime import datetime, timedelta

    rnd = random.Random(seed)
    inputs = []
    for text, gold in pairs:
        noisy = typo(text, rnd) if rnd.random() < typo_rate else text
        inputs.append((noisy, gold, noisy != text))
    inputs += [(t, None, False) for t in off_domain]
    outputs = run_model([t for t, _, _ in inputs])
    t0 = datetime.fromisoformat(start)
    logs, key = [], []
    for i, ((text, gold, typod), out) in enumerate(zip(inputs, outputs, strict=True)):
        meta: dict[str, Any] = {"noise": []}
        if typod:
            meta["noise"].append("typo")
        rec: dict[str, Any] = {
            "id": f"{id_prefix}{i:04d}",
            "timestamp": (t0 + timedelta(minutes=7 * i)).isoformat(),
            "model_version": model_version,
            "messages": [{"role": "user", "content": text}],
            "output": out,
        }
        key.append({"id": rec["id"], "label": gold, "noise": meta["noise"]})
        if gold is None:
            meta["noise"].append("off_domain")
            rec["feedback"] = {"verdict": "fail", "correction": rnd.choice(labels), "source": "human"}
        elif rnd.random() < unlabeled_rate:
            meta["noise"].append("unlabeled")
        elif rnd.random() < poison_rate:
            meta["noise"].append("poisoned")
            wrong = rnd.choice([lab for lab in labels if lab != gold])
            rec["feedback"] = {
                "verdict": "fail",
                "correction": wrong,
                "source": "human",
                "reason": "wrong intent",
            }
        elif out.strip() == gold:
            rec["feedback"] = {"verdict": "pass", "source": "human"}
        else:
            rec["feedback"] = {
                "verdict": "fail",
                "correction": gold,
                "source": "human",
                "reason": "wrong intent",
            }
        logs.append(rec)
    return logs, key
