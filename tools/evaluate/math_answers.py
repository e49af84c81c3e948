"""Math: the final numeric answer of an output (GSM8K's ``#### n`` or the last number) and exact match.

Numbers are normalised (thousands separators, currency, trailing zeros) before comparing, so
``$1,200.00`` and ``1200`` are the same answer.
"""

from __future__ import annotations

import math
import re
from typing import Any

from kaizen.tools.evaluate.common import check_expected, check_lengths

_NUMBER_RE = re.compile(r"-?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
NUMBER_FULL_RE = re.compile(r"[-+]?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)")


def normalize_number(s: str) -> str | None:
    """``"$1,200.50."`` → ``"1200.5"``; ``"72.0"`` → ``"72"``; None when ``s`` is not a number."""
    s = s.strip().rstrip(".").replace(",", "").replace("$", "").lstrip("+")
    if s.startswith("-"):
        sign, s = "-", s[1:]
    else:
        sign = ""
    if not re.fullmatch(r"\d*\.?\d+|\d+\.?", s):
        return None
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    s = s.lstrip("0") or "0"
    if s.startswith("."):
        s = "0" + s
    return "0" if s == "0" else sign + s


def extract_final_answer(text: str) -> str | None:
    """The final answer of a worked solution, normalised.

    The answer is what follows the last ``####`` (its first number, when it has one), else the
    last number in the text. Numbers lose thousands separators, ``$``, a trailing period and
    trailing decimal zeros (``"$1,200.00."`` → ``"1200"``).

    Args:
        text: A model output or a GSM8K-style reference answer.

    Returns:
        The normalised answer, or ``None`` when there is none.

    Examples:
        >>> extract_final_answer("She pays 3 * 24 = 72.\\n#### 72")
        '72'
        >>> extract_final_answer("The total is $1,200.00.")
        '1200'
    """
    if text is None:
        return None
    text = str(text)
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        line = next((ln.strip() for ln in tail.splitlines() if ln.strip()), "")
        if line:
            m = _NUMBER_RE.search(line)
            if m:
                return normalize_number(m.group(0))
            return line.rstrip(".").strip().casefold() or None
        text = text.rsplit("####", 1)[0]
    nums = _NUMBER_RE.findall(text)
    return normalize_number(nums[-1]) if nums else None


def _same_answer(pred: str | None, gold: str | None) -> bool:
    if pred is None or gold is None:
        return False
    if pred == gold:
        return True
    try:
        return math.isclose(float(pred), float(gold), rel_tol=1e-9, abs_tol=1e-9)
    except ValueError:
        return False


def math_metrics(outputs: list[str], expected: list[str | int | float]) -> dict[str, Any]:
    """Exact match of the final answer (``extract_final_answer`` on both sides).

    Args:
        outputs: Raw model outputs (worked solutions).
        expected: GSM8K-style answers ending in ``#### 72``, or bare numbers.

    Returns:
        ``exact_match`` and ``correct``.

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    check_lengths(outputs, expected)
    check_expected("math", expected, _is_math_answer, "a number or an answer ending in '#### <number>'")
    correct = [
        _same_answer(extract_final_answer(o or ""), extract_final_answer(str(e)))
        for o, e in zip(outputs, expected, strict=True)
    ]
    return {"exact_match": sum(correct) / len(correct) if correct else 0.0, "correct": correct}


def _is_math_answer(e: Any) -> bool:
    return (
        isinstance(e, (str, int, float))
        and not isinstance(e, bool)
        and extract_final_answer(str(e)) is not None
    )
