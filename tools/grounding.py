"""Field grounding: does a structured answer's field value appear in the input it was extracted from?

Extraction fields are mostly *spans* of the input (a name, a city, a day), and a span is something feedback
can be checked against without a model: a correction that moves ``city`` to a city the request never
mentions is wrong however confidently it was given. Not every field is extractive (a normalised date, a
category), so kaizen learns from the labelled traffic itself when an absent value is evidence:

- the field is *extractive* — nearly all of the values feedback gives it occur in their inputs; or
- the input names a *rival*: another value this field takes elsewhere, where it does occur in its input
  ("book me a room in Paris" corrected to ``city: oslo``, while ``paris`` is a city other feedback gives).
  This one still works when so much feedback is poisoned that no field reads as extractive.

Matching is on words: accents dropped, lower case, every run of other characters a single space, the value
found between word boundaries (``"rome"`` is in ``"Rome, Tuesday"``, not in ``"Romeo"``; ``"Zürich"`` is in
``"zurich"``). A value with no Latin letters or digits left (``"東京"``) is never checked: scripts written
without spaces have no word boundaries to match on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A field is extractive when at least this share of the values given for it occur in their inputs, over at
# least MIN_VALUES values. 0.8 leaves room for a fifth of poisoned feedback (a field whose values are all
# spans but for the poisoned ones reads 0.8 at 20 % poison) and keeps fields normalised more than a fifth of
# the time (dates, codes) unchecked.
GROUNDED_SHARE = 0.8
MIN_VALUES = 8
# A rival must be a word-like value: one- and two-character values ("2", "no") occur in too many inputs.
MIN_RIVAL_CHARS = 3

_NON_WORD = re.compile(r"[^0-9a-z]+")


def words(text: str) -> str:
    """Accents dropped, lower case, runs of anything but a–z and digits as one space, padded so that ``in``
    matches whole words.

    >>> words("Hi, I'm in  ROME on Tue."), words("Zürich")
    (' hi i m in rome on tue ', ' zurich ')
    >>> words("Rome") in words("a room in rome, tuesday"), words("rome") in words("Romeo and Juliet")
    (True, False)
    """
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return f" {_NON_WORD.sub(' ', plain.lower()).strip()} "


def span_values(answer: Mapping[str, Any]) -> dict[str, str]:
    """The fields of an answer that can be spans: non-empty strings and numbers (not booleans, nulls or nests).

    >>> span_values({"city": "Rome", "n": 2, "ok": True, "tags": ["a"], "note": " "})
    {'city': 'Rome', 'n': '2'}
    """
    out: dict[str, str] = {}
    for key, value in answer.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        if words(str(value)).strip():
            out[str(key)] = str(value)
    return out


@dataclass(frozen=True)
class FieldGrounding:
    """How often the values given for one field occur in their inputs, and the values that did (rivals)."""

    field: str
    grounded: int
    total: int
    spans: frozenset[str] = frozenset()

    @property
    def share(self) -> float:
        return self.grounded / self.total if self.total else 0.0

    @property
    def extractive(self) -> bool:
        return self.total >= MIN_VALUES and self.share >= GROUNDED_SHARE


def field_grounding(pairs: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, FieldGrounding]:
    """Per field, over ``(input text, answer)`` pairs: how many of its values occur in their input.

    >>> g = field_grounding([(f"{c} trip", {"city": c, "kind": "leisure"}) for c in "ab cd ef gh ij kl mn op".split()])
    >>> g["city"].extractive, g["kind"].extractive, g["city"].share
    (True, False, 1.0)
    """
    counts: dict[str, list[int]] = {}
    spans: dict[str, set[str]] = {}
    for text, answer in pairs:
        said = words(text)  # normalised once per input, not once per field
        for key, value in span_values(answer).items():
            v = words(value)
            c = counts.setdefault(key, [0, 0])
            c[0] += v in said
            c[1] += 1
            if v in said and len(v.strip()) >= MIN_RIVAL_CHARS:
                spans.setdefault(key, set()).add(v.strip())
    return {k: FieldGrounding(k, g, n, frozenset(spans.get(k, ()))) for k, (g, n) in counts.items()}


def rivals(said: str, field: FieldGrounding, value: str) -> list[str]:
    """Other values of ``field`` (seen as spans of their own inputs) that the input names; ``said`` is the
    input as ``words`` normalises it.

    >>> f = FieldGrounding("city", 3, 9, frozenset({"paris", "oslo"}))
    >>> rivals(words("a room in Paris please"), f, "oslo"), rivals(words("a room please"), f, "oslo")
    (['paris'], [])
    """
    own = words(value).strip()
    return sorted(v for v in field.spans if v != own and f" {v} " in said)


def ungrounded_fields(
    text: str, answer: Mapping[str, Any], grounding: Mapping[str, FieldGrounding]
) -> dict[str, dict[str, Any]]:
    """The fields of ``answer`` whose values do not occur in ``text`` where that is evidence (see the module):
    field → ``{"value", "share", "rivals"}``.

    >>> g = {"city": FieldGrounding("city", 9, 10), "kind": FieldGrounding("kind", 2, 10)}
    >>> ungrounded_fields("ann to rome", {"city": "oslo", "kind": "work"}, g)
    {'city': {'value': 'oslo', 'share': 0.9, 'rivals': []}}
    >>> g = {"city": FieldGrounding("city", 5, 10, frozenset({"rome"}))}  # heavy poison: not extractive
    >>> ungrounded_fields("ann to rome", {"city": "oslo"}, g)
    {'city': {'value': 'oslo', 'share': 0.5, 'rivals': ['rome']}}
    """
    said = words(text)
    out: dict[str, dict[str, Any]] = {}
    for key, value in span_values(answer).items():
        field = grounding.get(key)
        if field is None or words(value) in said:
            continue
        named = rivals(said, field, value)
        if field.extractive or named:
            out[key] = {"value": value, "share": round(field.share, 3), "rivals": named}
    return out


def ungrounded_answers(
    pairs: Mapping[int, tuple[str, Mapping[str, Any]]],
) -> dict[int, dict[str, dict[str, Any]]]:
    """For keyed ``(input text, answer)`` pairs — one task's feedback, which also teaches which fields are
    extractive — the answers with fields whose values their input never mentions (key → fields).

    >>> pairs = {i: (f"to {c}", {"city": c}) for i, c in enumerate("rome oslo lima paris rome oslo lima".split())}
    >>> ungrounded_answers(pairs | {9: ("to rome", {"city": "oslo"})})
    {9: {'city': {'value': 'oslo', 'share': 0.875, 'rivals': ['rome']}}}
    """
    grounding = field_grounding(pairs.values())
    out = {key: ungrounded_fields(text, answer, grounding) for key, (text, answer) in pairs.items()}
    return {key: fields for key, fields in out.items() if fields}
