"""Classification: mapping a free-text output onto the label set, then accuracy, F1 and the confusion matrix.

``normalize_label`` is also what the agent, the data builders and the GRPO rewards use to read a
label out of an output, so the label a metric counts is the label everything else sees.
"""

from __future__ import annotations

import re
from typing import Any

from kaizen.tools.errors import DataError
from kaizen.tools.evaluate.common import TOKEN_RE, check_expected, check_lengths

INVALID = "<invalid>"
"""Column of the confusion matrix for outputs that match no label."""


_STRIP_CHARS = " \t\r\n\"'`“”‘’*"
_TRAILING_PUNCT = ".,;:!?"
_PREFIX_RE = re.compile(
    r"^(?:label|answer|final answer|category|class|intent|classification|prediction)\s*[:=\-]\s*",
    re.IGNORECASE,
)


def _clean(text: str) -> str:
    """Strip surrounding whitespace, quotes, markdown emphasis and trailing punctuation."""
    prev = None
    while prev != text:
        prev = text
        text = text.strip(_STRIP_CHARS).rstrip(_TRAILING_PUNCT)
    return text


def _canon(text: str) -> str:
    """Case-folded, with underscores/hyphens as spaces and runs of whitespace collapsed."""
    return " ".join(re.sub(r"[_\-]+", " ", text.casefold()).split())


def _tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text.casefold())


def normalize_label(output: str, labels: list[str]) -> str | None:
    """Map a free-text classifier output onto one label of ``labels``.

    The first non-empty line is used; surrounding whitespace, quotes, ``**`` and trailing
    punctuation are stripped, and a leading ``Label:`` (or ``Answer:``, ``Category:``,
    ``Intent:`` …) is dropped. Matching is case-insensitive and treats ``_``/``-`` like spaces, so
    ``"Card declined."`` matches ``card_declined``. An exact match wins; otherwise the longest label
    whose tokens open the output (``"billing - the customer asks …"`` → ``billing``) is taken.

    Args:
        output: The model's raw output.
        labels: The task's label set.

    Returns:
        The matching label, spelled as in ``labels``, or ``None`` when the output is off-label.
    """
    if not labels or not output:
        return None
    line = next((ln for ln in output.splitlines() if _clean(ln)), "")
    candidates = [_clean(line)]
    stripped = _clean(_PREFIX_RE.sub("", candidates[0], count=1))
    if stripped != candidates[0]:
        candidates.append(stripped)

    by_fold = {lab.casefold(): lab for lab in labels}
    by_canon = {_canon(lab): lab for lab in labels}
    for cand in candidates:
        if cand.casefold() in by_fold:
            return by_fold[cand.casefold()]
        if _canon(cand) in by_canon:
            return by_canon[_canon(cand)]

    label_tokens = sorted(((_tokens(lab), lab) for lab in labels), key=lambda t: -len(t[0]))
    for cand in candidates:
        toks = _tokens(cand)
        for ltoks, lab in label_tokens:
            if ltoks and toks[: len(ltoks)] == ltoks:
                return lab
    return None


def classification_metrics(outputs: list[str], expected: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label scores and a confusion matrix for a classifier.

    Outputs go through ``normalize_label``; those that match no label count as wrong and land in
    the ``<invalid>`` column of the confusion matrix. Gold labels are matched to ``labels`` the
    same way (so ``Billing`` matches ``billing``). ``macro_f1`` averages scikit-learn's F1 over
    the labels that occur as gold or as prediction; a label absent from both has no defined F1
    and is left out (it is still listed in ``per_label`` with zeros).

    Args:
        outputs: Raw model outputs.
        expected: Gold labels, one per output.
        labels: The label set; when empty, the distinct gold labels in order of appearance.

    Returns:
        ``accuracy``, ``macro_f1``, ``per_label`` ({label: {precision, recall, f1, support}}),
        ``confusion`` ({"labels": [...labels, "<invalid>"], "matrix": rows = gold, cols = predicted}),
        ``invalid_rate``, ``correct`` (list[bool]) and ``predictions`` (normalised labels or None).

    Raises:
        DataError: When lengths differ, or a gold label is not a string or not in the label set.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    check_lengths(outputs, expected)
    check_expected("classification", expected, lambda e: isinstance(e, str), "a string (the gold label)")
    labels = list(labels) if labels else list(dict.fromkeys(str(e) for e in expected))
    gold: list[str] = []
    for i, e in enumerate(expected):
        g = normalize_label(str(e), labels)
        if g is None:
            raise DataError(
                f"example {i}: expected label {e!r} is not in the label set {labels}; "
                "fix the example or add the label to the task"
            )
        gold.append(g)
    preds = [normalize_label(o or "", labels) for o in outputs]
    pred_str = [p if p is not None else INVALID for p in preds]
    correct = [p == g for p, g in zip(preds, gold, strict=True)]
    n = len(outputs)

    cols = [*labels, INVALID]
    if n == 0:
        return {
            "accuracy": 0.0,
            "macro_f1": 0.0,
            "per_label": {lab: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for lab in labels},
            "confusion": {"labels": cols, "matrix": [[0] * len(cols) for _ in cols]},
            "invalid_rate": 0.0,
            "correct": [],
            "predictions": [],
        }

    present = [lab for lab in labels if lab in set(gold) or lab in set(pred_str)]
    macro = float(f1_score(gold, pred_str, labels=present, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(gold, pred_str, labels=labels, zero_division=0)
    per_label = {
        lab: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k, lab in enumerate(labels)
    }
    matrix = confusion_matrix(gold, pred_str, labels=cols).tolist()
    return {
        "accuracy": sum(correct) / n,
        "macro_f1": macro,
        "per_label": per_label,
        "confusion": {"labels": cols, "matrix": [[int(x) for x in row] for row in matrix]},
        "invalid_rate": sum(p is None for p in preds) / n,
        "correct": correct,
        "predictions": preds,
    }
