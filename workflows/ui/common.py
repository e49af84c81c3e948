"""Reading defensively, for every page of the dashboard: JSON that may be half-written, keys that may be missing.

The store's schema and the reports gain fields while kaizen grows, a live run has only some of its
artifacts, and an older run lacks newer keys: these helpers turn each of those into an empty value
that the page shows as "n/a", never into an error.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from kaizen.tools.store.repo import as_utc

FINAL_STATUSES = ("promoted", "not_promoted", "rejected", "failed", "interrupted")
VERDICTS = ("pass", "fail", "unlabeled")
MAX_TRACES_PAGE = 500
APPROVALS_FILE = "approvals.jsonl"  # the dashboard's note of each decision made through it (with the reason)


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings (UTC), paths as strings, rows as dicts."""
    if isinstance(value, datetime):
        return (as_utc(value) or value).isoformat(timespec="seconds")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump())
    return value


def read_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line cut off by a writer in progress is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def as_dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def user_text(messages: Any) -> str:
    for m in reversed(as_list(messages)):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)
    return ""


def parse_time(value: str | None) -> datetime | None:
    """``2025-01-31`` or an ISO timestamp (UTC when no zone is given); None for empty input."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a date or ISO time: {value!r} (use 2025-01-31 or 2025-01-31T12:00)") from None
    return as_utc(t)
