"""What the metric families share: pairing outputs with expected values, and the text patterns they all read.

Every family checks the same two things before scoring — one expected value per output, each of the
type its task kind needs — and raises ``DataError`` naming the offending example, so the message is
the same whichever kind is scored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kaizen.tools.errors import DataError

TOKEN_RE = re.compile(r"[^\W_]+")  # word tokens (letters and digits, any script)
FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)  # a markdown fence


def check_lengths(outputs: Sequence[Any], expected: Sequence[Any]) -> None:
    if len(outputs) != len(expected):
        raise DataError(
            f"{len(outputs)} outputs but {len(expected)} expected values; they must pair one to one"
        )


def check_expected(kind: str, expected: Sequence[Any], ok: Callable[[Any], bool], want: str) -> None:
    """Raise ``DataError`` naming the first expected value that ``ok`` refuses (``want``: what it must be)."""
    for i, e in enumerate(expected):
        if not ok(e):
            got = type(e).__name__ if not isinstance(e, (str, int, float)) else repr(e)[:80]
            raise DataError(f"{kind} example {i}: expected must be {want}, got {got}")
