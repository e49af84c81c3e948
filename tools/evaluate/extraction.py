"""Extraction: parsing a JSON object out of an output and scoring its fields (field-level F1, exact match).

Values are compared after normalisation (numbers as the math family reads them, strings case- and
space-folded, lists as sets), so a formatting difference is not an extraction error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kaizen.tools.evaluate.common import FENCE_RE, check_expected, check_lengths
from kaizen.tools.evaluate.math_answers import NUMBER_FULL_RE, normalize_number


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``, tolerating a ```json fence and text around it.

    Args:
        text: A model output.

    Returns:
        The parsed object, or ``None`` when there is no JSON object in the text.
    """
    if not text:
        return None
    try:
        obj = json.loads(text.strip())
        if isinstance(obj, dict):
            return obj
    except (ValueError, RecursionError):
        pass
    sources = [m.group(2) for m in FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for src in sources:
        for m in re.finditer(r"\{", src):
            try:
                obj, _ = decoder.raw_decode(src, m.start())
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                return obj
    return None


def _norm_value(v: Any) -> Any:
    """Normalise a scalar (or nested value) for comparison: strings strip+casefold, 5 == 5.0 == "5"."""
    if isinstance(v, str):
        s = v.strip().casefold()
        num = normalize_number(s) if NUMBER_FULL_RE.fullmatch(s) else None
        return num if num is not None else s
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return normalize_number(repr(v)) or repr(v)
    if isinstance(v, dict):
        return json.dumps({str(k): _norm_value(x) for k, x in v.items()}, sort_keys=True)
    if isinstance(v, (list, tuple)):
        return json.dumps(sorted({json.dumps(_norm_value(x)) for x in v}))
    return json.dumps(v, default=str)


def _is_empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple)) and not v)


def _field_units(obj: dict[str, Any]) -> set[tuple[str, Any]]:
    """The (field, value) units an object asserts; a list field contributes one unit per item."""
    units: set[tuple[str, Any]] = set()
    for key, v in obj.items():
        if _is_empty(v):
            continue
        k = str(key).strip().casefold()
        if isinstance(v, (list, tuple)):
            units.update((k, _norm_value(x)) for x in v if not _is_empty(x))
        else:
            units.add((k, _norm_value(v)))
    return units


def extraction_metrics(outputs: list[str], expected: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON validity and field-level micro precision/recall/F1 for structured extraction.

    Each output is parsed with ``parse_json_object``. A field is a unit; a list-valued field
    contributes one unit per (distinct) item. A unit is a true positive when the predicted
    object has the key and an equal value after normalisation (strings stripped and case-folded,
    numbers compared by value, lists as sets). Null, empty-string and empty-list values count as
    absent on both sides. Invalid JSON predicts nothing (all gold units become false negatives).

    Args:
        outputs: Raw model outputs.
        expected: Gold objects, one per output.

    Returns:
        ``json_valid_rate``, ``field_precision``, ``field_recall``, ``field_f1`` and ``correct``
        (valid JSON with every field exactly right and no extra fields).

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    check_lengths(outputs, expected)
    check_expected(
        "extraction", expected, lambda e: isinstance(e, dict), "a JSON object (dict) of the fields to extract"
    )
    tp = fp = fn = 0
    valid: list[bool] = []
    correct: list[bool] = []
    for out, gold in zip(outputs, expected, strict=True):
        pred = parse_json_object(out or "")
        valid.append(pred is not None)
        g_units = _field_units(gold)
        p_units = _field_units(pred) if pred is not None else set()
        hit = len(g_units & p_units)
        tp += hit
        fp += len(p_units) - hit
        fn += len(g_units) - hit
        correct.append(pred is not None and g_units == p_units)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if tp + fp + fn == 0 and outputs and all(valid):
        precision = recall = f1 = 1.0  # nothing to extract and nothing extracted: perfect
    n = len(outputs)
    return {
        "json_valid_rate": sum(valid) / n if n else 0.0,
        "field_precision": precision,
        "field_recall": recall,
        "field_f1": f1,
        "correct": correct,
    }
