"""The synthetic production traces ``kaizen bench growth`` measures a repair on.

CLINC150 banking inputs as a deployed classifier sees them: the model right ~82 % of the time with
systematic confusions (``CONFUSIONS``), typos and reference numbers so no two inputs are identical,
feedback on ~85 % of them with ~6 % of the corrections poisoned. Deterministic for a seed.
"""

from __future__ import annotations

import random
import time
from typing import Any

from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice, typo

TASK = "intents"
# The model's systematic mistakes (gold → what it says), as a deployed classifier makes them.
CONFUSIONS = {
    "card_declined": "damaged_card",
    "bill_balance": "balance",
    "report_lost_card": "new_card",
    "freeze_account": "account_blocked",
    "pay_bill": "transfer",
}
NAMES = ["Ann", "Bob", "Chen", "Dana", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo"]


def synthetic_traces(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` kaizen-JSONL trace records and the label set. Deterministic for a seed."""
    data = load_slice()
    labels = list(data["labels"])
    pool = data["train"] + data["val"]
    rnd = random.Random(seed)
    out = []
    t0 = 1_767_225_600  # 2026-01-01T00:00:00Z
    for i in range(n):
        text, gold = pool[rnd.randrange(len(pool))]
        r = rnd.random()
        if r < 0.25:
            text = typo(text, rnd)
        if rnd.random() < 0.6:  # production inputs carry amounts, names, references: no two are identical
            text = f"{text} {rnd.choice(['ref', 'acct', 'ticket', 'order'])} {rnd.randrange(10**6):06d}"
        if rnd.random() < 0.2:
            text = f"{rnd.choice(NAMES)} here, {text}"
        wrong = gold in CONFUSIONS and rnd.random() < 0.45 or rnd.random() < 0.05
        output = (
            (CONFUSIONS.get(gold) or rnd.choice([lab for lab in labels if lab != gold])) if wrong else gold
        )
        rec: dict[str, Any] = {
            "id": f"g{n}-{i}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i * 7)),
            "task": TASK,
            "model_version": "v1",
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
            "output": output,
        }
        f = rnd.random()
        if f < 0.85:  # feedback on most traces; the rest stay unlabeled
            if output == gold:
                rec["feedback"] = {"verdict": "pass", "source": "human"}
            else:
                correction = (
                    gold if rnd.random() > 0.06 else rnd.choice([lab for lab in labels if lab != gold])
                )
                rec["feedback"] = {"verdict": "fail", "correction": correction, "source": "human"}
        out.append(rec)
    return out, labels
