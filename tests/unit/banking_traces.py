"""Realistic CLINC150-style banking traces for the fast agent tests: no store, no model.

``TraceView`` objects are built directly. Four intents, a dozen varied phrasings each, so TF-IDF
neighbours behave as they do on real logs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import TraceView

LABELS = ["balance", "transfer", "card_declined", "freeze_account"]
TASK = TaskSpec(
    name="intents", kind="classification", labels=LABELS, system_prompt="Classify the banking request."
)

PHRASES: dict[str, list[str]] = {
    "balance": [
        "what is my checking account balance",
        "how much money do i have in savings",
        "tell me the balance of my account please",
        "can you check how much is left in my checking",
        "what's the current balance on my savings account",
        "how much cash is in my bank account right now",
        "show me my available balance",
        "i need to know the amount of money in my account",
        "how much do i have left in checking after rent",
        "what does my account balance look like today",
        "check my balance for the joint account",
        "how much is sitting in my savings right now",
    ],
    "transfer": [
        "send 200 dollars from checking to savings",
        "transfer money to my mom's account",
        "move 50 bucks into my savings account",
        "i want to wire funds to another bank",
        "please transfer $300 from savings to checking",
        "can you send money to john's account",
        "make a transfer of 1000 to my brokerage account",
        "move my paycheck into savings",
        "wire 500 euros to my landlord",
        "i need to send funds to my sister",
        "shift 75 dollars over to my checking account",
        "transfer the rest of my checking balance into savings",
    ],
    "card_declined": [
        "why was my card declined at the store",
        "my visa got rejected at the gas station",
        "the cashier said my card was denied",
        "why did my debit card not go through",
        "my credit card keeps getting declined online",
        "the payment on my card failed at the restaurant",
        "why won't my card work at the checkout",
        "my mastercard was refused when i tried to pay",
        "the terminal declined my card twice",
        "i tried buying groceries and my card got rejected",
        "why is my card being declined for purchases",
        "my card was turned down at the pharmacy",
    ],
    "freeze_account": [
        "freeze my account right away",
        "please lock my bank account",
        "i need to put a hold on my account",
        "block all activity on my checking account",
        "can you suspend my account for now",
        "someone stole my wallet, freeze everything",
        "lock down my savings account immediately",
        "i want my account frozen until further notice",
        "put a freeze on my joint account",
        "stop all transactions on my account please",
        "temporarily block my account",
        "freeze the account, i think it was hacked",
    ],
}

# Genuinely card-declined requests the model answered ``balance`` (the deliberate gap).
CARD_DECLINED_FAILURES = [
    "my card was declined when paying for dinner",
    "why does my card get rejected at the supermarket",
    "the atm card payment was denied at the mall",
    "card declined at the hotel front desk, why",
    "my bank card failed at the coffee shop this morning",
    "the shop's reader refused my debit card",
]

_T0 = datetime(2024, 5, 1, tzinfo=UTC)


def trace(
    tid: str,
    text: str,
    output: str,
    verdict: str | None = "pass",
    correction: str | None = None,
    *,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> TraceView:
    return TraceView(
        id=tid,
        task=TASK.name,
        messages=[{"role": "system", "content": TASK.system_prompt}, {"role": "user", "content": text}],
        output=output,
        verdict=verdict,
        correction=correction,
        reason=reason,
        feedback_source="test",
        metadata=metadata or {},
        timestamp=_T0,
        model_version="v1",
    )


def passing(per_label: int = 12) -> list[TraceView]:
    """Correct answers: ``per_label`` varied phrasings of each intent, ids ``p-LABEL-i``."""
    return [
        trace(f"p-{lab}-{i}", text, lab) for lab in LABELS for i, text in enumerate(PHRASES[lab][:per_label])
    ]


def card_declined_failures(n: int = 6) -> list[TraceView]:
    """Legitimate failures: card-declined requests answered ``balance``, corrected to card_declined."""
    return [
        trace(f"f-cd-{i}", text, "balance", "fail", "card_declined")
        for i, text in enumerate(CARD_DECLINED_FAILURES[:n])
    ]


def by_id(traces: list[TraceView]) -> dict[str, TraceView]:
    return {t.id: t for t in traces}
