"""The CLINC150 banking slice shipped in ``examples/data`` (CC BY 3.0; Larson et al., EMNLP 2019).

Used by the demo, the benchmark and the tests, so they all read the same public data offline.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tools.data import item_id
from tools.schema import EvalItem

SLICE = Path(__file__).resolve().parents[1] / "examples" / "data" / "clinc150_banking.json"
CITATION = ("CLINC150: Larson et al., 'An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction', "
            "EMNLP 2019 (clinc/oos-eval), CC BY 3.0")
# A short system prompt: on a CPU every prompt token is paid for at every training step.
SYSTEM_PROMPT = "Classify the banking request. Reply with the intent label only."


def load_slice(path: Path = SLICE) -> dict[str, Any]:
    return json.loads(path.read_text())


def rows(split: str, labels: list[str] | None = None, per_label: int | None = None, seed: int = 0,
         data: dict[str, Any] | None = None) -> list[tuple[str, str]]:
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
