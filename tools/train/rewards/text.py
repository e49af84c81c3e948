"""The rewards that read a completion as text: a label, JSON format, a final answer, word overlap.

``completion_text`` (either of TRL's completion formats → its text) is shared by every reward of
``kaizen.tools.train.rewards``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from kaizen.tools.evaluate.metrics import extract_final_answer, normalize_label

_WORD_RE = re.compile(r"[^\W_]+")
_WHOLE_FENCE_RE = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\n(.*)\n?```\Z", re.DOTALL | re.IGNORECASE)


def completion_text(completion: Any) -> str:
    """The text of one completion, in either of TRL's formats.

    Args:
        completion: A string, a message dict, or a list of messages (the last assistant
            message counts; failing that, the last message).

    Returns:
        The completion's text (``""`` when there is none).

    Examples:
        >>> completion_text("billing")
        'billing'
        >>> completion_text([{"role": "assistant", "content": "refund"}])
        'refund'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    msgs = [m for m in completion if isinstance(m, dict)]
    for m in reversed(msgs):
        if m.get("role") == "assistant":
            return str(m.get("content") or "")
    return str(msgs[-1].get("content") or "") if msgs else ""


def _labels_for(labels: Any, i: int) -> list[str] | None:
    """The label set of example ``i``: ``labels`` is one set for all or a per-row column of sets."""
    if not labels:
        return None
    if isinstance(labels[0], (list, tuple)):
        row = labels[i] if i < len(labels) else None
        return list(row) if row else None
    return list(labels)


def _gold_label(gold: str, label_set: list[str]) -> str:
    """The gold label as the label set spells it (the gold itself, stripped, when it reads as no label)."""
    return normalize_label(gold, label_set) or gold.strip()


def label_exact_match(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion is the expected label, else 0.0.

    With a ``labels`` column (or one shared label list) the completion is read with
    ``normalize_label``, so ``"Label: Card declined."`` earns the reward for ``card_declined``;
    without one, stripped case-insensitive equality is required.

    Args:
        completions: Completions, strings or conversational.
        expected: Gold labels, one per completion.
        **kwargs: Other dataset columns; ``labels`` is used when present.

    Returns:
        One reward per completion.

    Examples:
        >>> label_exact_match(["Billing", " refund ", "shipping"], ["billing", "refund", "refund"])
        [1.0, 1.0, 0.0]
        >>> label_exact_match([[{"role": "assistant", "content": "Label: card declined."}]],
        ...                   ["card_declined"], labels=[["billing", "card_declined"]])
        [1.0]
    """
    labels = kwargs.get("labels")
    rewards: list[float] = []
    for i, (comp, gold) in enumerate(zip(completions, expected, strict=True)):
        text, gold_s = completion_text(comp), str(gold)
        label_set = _labels_for(labels, i)
        if label_set:
            pred = normalize_label(text, label_set)
            ok = pred is not None and pred == _gold_label(gold_s, label_set)
        else:
            ok = text.strip().casefold() == gold_s.strip().casefold()
        rewards.append(1.0 if ok else 0.0)
    return rewards


def label_strict_match(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the whole completion, stripped of surrounding whitespace, is the expected label as spelled.

    The default classification reward for GRPO. kaizen's gate reads a classifier with constrained decoding
    (``--mode prefix``): a reply counts only when it is a label's exact tokens followed by the end of the
    turn. ``label_exact_match`` reads leniently (``"Balance."`` is ``balance``), so under it GRPO was free
    to drift to replies the gate reads as off-label — measured on the demo (64 steps, lr 2e-4): 50 of
    v1's 145 right gold answers became off-label while the reward rose. What is rewarded must be what is
    scored.

    Args:
        completions: Completions, strings or conversational.
        expected: Gold labels, one per completion.
        **kwargs: Other dataset columns; ``labels`` (when present) fixes the spelling of the gold label.

    Returns:
        One reward per completion.

    Examples:
        >>> label_strict_match(["balance", " balance\\n", "Balance.", "balance please"], ["balance"] * 4)
        [1.0, 1.0, 0.0, 0.0]
        >>> label_strict_match([[{"role": "assistant", "content": "card_declined"}]], ["Card declined"],
        ...                    labels=[["billing", "card_declined"]])
        [1.0]
    """
    labels = kwargs.get("labels")
    rewards: list[float] = []
    for i, (comp, gold) in enumerate(zip(completions, expected, strict=True)):
        label_set = _labels_for(labels, i)
        gold_s = _gold_label(str(gold), label_set) if label_set else str(gold).strip()
        rewards.append(1.0 if completion_text(comp).strip() == gold_s else 0.0)
    return rewards


def label_format(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is *some* label of the task's set (right or wrong), else 0.0.

    A format reward (as R1-style RLVR pairs one with the answer reward): next to ``label_strict_match`` a
    wrong label still outranks an invented one, so groups push away from off-label hybrids (``card_card``)
    that the gate's constrained decoding rejects. Needs a ``labels`` column; without one it is 0. Not a
    default: measured beside ``label_strict_match`` on the demo it did worse (8 of 19 fixed, 20 gold answers
    broken vs 12 and 6) — groups of wrong labels stop being all-zero, so answer guidance never reaches them.

    Examples:
        >>> label_format(["transfer", "card_card", " balance "], ["balance"] * 3, labels=[["balance", "transfer"]] * 3)
        [1.0, 0.0, 1.0]
    """
    labels = kwargs.get("labels")
    out: list[float] = []
    for i, comp in enumerate(completions):
        label_set = _labels_for(labels, i) or []
        out.append(1.0 if completion_text(comp).strip() in label_set else 0.0)
    return out


def json_format(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is one JSON object (a surrounding ```json fence is allowed).

    Text around the object earns nothing: the reward teaches the output format itself.

    Args:
        completions: Completions, strings or conversational.
        **kwargs: Dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> json_format(['{"name": "Ann"}', '```json\\n{"a": 1}\\n```', 'Sure! {"a": 1}', '[1, 2]'])
        [1.0, 1.0, 0.0, 0.0]
    """
    rewards: list[float] = []
    for comp in completions:
        text = completion_text(comp).strip()
        fenced = _WHOLE_FENCE_RE.match(text)
        if fenced:
            text = fenced.group(1).strip()
        try:
            ok = isinstance(json.loads(text), dict)
        except (ValueError, RecursionError):
            ok = False
        rewards.append(1.0 if ok else 0.0)
    return rewards


def math_final_answer(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer equals the expected one (``extract_final_answer``).

    Args:
        completions: Completions, strings or conversational.
        expected: GSM8K-style answers (``... #### 72``) or bare numbers.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> math_final_answer(["3 * 24 = 72\\n#### 72", "It costs $1,200.00", "#### 71"],
        ...                   ["#### 72", 1200, "72"])
        [1.0, 1.0, 0.0]
    """
    rewards: list[float] = []
    for comp, gold in zip(completions, expected, strict=True):
        pred, want = extract_final_answer(completion_text(comp)), extract_final_answer(str(gold))
        rewards.append(1.0 if pred is not None and pred == want else 0.0)
    return rewards


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.casefold())


def token_f1(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """Bag-of-words F1 between the completion and the expected text (case-insensitive).

    Words are runs of letters and digits; repeated words count as often as they occur in both.
    Two empty texts score 1.0.

    Args:
        completions: Completions, strings or conversational.
        expected: Reference texts.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> token_f1(["the cat sat", "", "dog"], ["The cat sat down", "", "cat"])
        [0.8571428571428571, 1.0, 0.0]
    """
    rewards: list[float] = []
    for comp, gold in zip(completions, expected, strict=True):
        pred, ref = Counter(_words(completion_text(comp))), Counter(_words(str(gold)))
        if not pred and not ref:
            rewards.append(1.0)
            continue
        overlap = sum((pred & ref).values())
        if overlap == 0:
            rewards.append(0.0)
            continue
        precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
        rewards.append(2 * precision * recall / (precision + recall))
    return rewards
