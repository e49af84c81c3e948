"""PII redaction: what leaves the machine for an LLM endpoint carries placeholders, not customers' data.

Production traces hold emails, phone numbers, card and bank-account numbers. The brain only needs the
*shape* of a request to reason about it ("my card 4111… was declined" → card_declined), so each match
becomes a typed placeholder (``[EMAIL]``, ``[CARD]`` …) before any request is built, and the count of
what was replaced is recorded with every call. Card numbers must pass the Luhn check and IBANs their
mod-97 check, so order ids and amounts are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total, alt = total + d, not alt
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


def _card(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 7 <= len(digits) <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", m.group())  # not a date


# (name, pattern, accept): applied in order, so a card number is never half-eaten as a phone number.
_RULES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]]] = [
    ("EMAIL", _EMAIL, lambda m: True),
    ("IBAN", _IBAN, lambda m: iban_ok(m.group())),
    ("CARD", _CARD, _card),
    ("IP", _IPV4, lambda m: all(int(p) < 256 for p in m.group().split("."))),
    ("PHONE", _PHONE, _phone),
]


def redact(text: str) -> tuple[str, Counter[str]]:
    """``text`` with PII replaced by ``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[IP]``, ``[PHONE]``; and the counts."""
    counts: Counter[str] = Counter()
    for name, pattern, accept in _RULES:

        def sub(m: re.Match[str], name: str = name, accept: Callable[[re.Match[str]], bool] = accept) -> str:
            if not accept(m):
                return m.group()
            counts[name] += 1
            return f"[{name}]"

        text = pattern.sub(sub, text)
    return text, counts
