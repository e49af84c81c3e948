"""Feedback files: verdicts that arrive after the traces they judge (``kaizen feedback FILE``).

Feedback is often produced later and elsewhere (a review tool, a judge run, a rule), so it has its
own small JSONL format keyed by ``trace_id`` rather than being re-logged with the trace::

    {"trace_id": "t-001", "verdict": "fail", "correction": "card_declined", "source": "human"}

Reading, line numbering and error wording are shared with the trace importers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kaizen.tools.errors import LogFormatError
from kaizen.tools.logs.base import DEFAULT_MAX_LINE_BYTES, iter_records, to_log_error
from kaizen.tools.schema import FeedbackIn


@dataclass
class FeedbackResult:
    """The outcome of reading one feedback file.

    Attributes:
        items: ``(line number, feedback)`` for every line that parsed, in file order.
        invalid: One error per skipped line (only filled with ``skip_invalid=True``).
    """

    items: list[tuple[int, FeedbackIn]] = field(default_factory=list)
    invalid: list[LogFormatError] = field(default_factory=list)


def parse_feedback(
    path: str | os.PathLike[str], skip_invalid: bool = False, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> FeedbackResult:
    """Read a feedback JSONL file into validated ``FeedbackIn`` objects.

    Args:
        path: The JSONL file; one ``{"trace_id", "verdict", ...}`` object per line.
        skip_invalid: Collect bad lines in ``invalid`` and go on instead of raising.
        max_line_bytes: Longest line accepted, in bytes.

    Returns:
        The parsed items and the skipped lines.

    Raises:
        LogFormatError: The first bad line (unless ``skip_invalid``), or a missing, unreadable or
            empty file (always).
    """
    result = FeedbackResult()
    for lineno, item in iter_records(path, max_line_bytes):
        if not isinstance(item, LogFormatError):
            try:
                result.items.append((lineno, FeedbackIn.model_validate(item)))
                continue
            except ValueError as e:
                item = to_log_error(path, lineno, e)
        if not skip_invalid:
            raise item
        result.invalid.append(item)
    return result
