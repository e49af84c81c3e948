"""Example files: the one JSONL line format shared by ``kaizen eval`` and ``kaizen train``.

A line is ``{"id"?, "messages": [...], "expected": ..., "metadata"?}``. ``id`` defaults to a content
hash of messages and expected, so the same example keeps the same id in every file — that is what
lets two versions be compared example by example, and eval sets be decontaminated from training.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kaizen.tools.errors import DataError, LogFormatError
from kaizen.tools.schema import EvalItem, TaskSpec, content_hash, render

MAX_LINE_BYTES = 16 * 1024 * 1024


def item_id(messages: list[dict[str, Any]], expected: Any) -> str:
    return content_hash({"messages": messages, "expected": expected})


# What each task kind scores as ``expected``: a check and how to name it in an error.
EXPECTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "classification": (lambda e: isinstance(e, str), "a label string"),
    "extraction": (lambda e: isinstance(e, dict), "a JSON object of fields"),
    "math": (
        lambda e: isinstance(e, (str, int, float)) and not isinstance(e, bool),
        "a final answer (string or number)",
    ),
    "generation": (lambda e: isinstance(e, str), "a reference text"),
    "code": (
        lambda e: isinstance(e, dict) and isinstance(e.get("tests"), str),
        'an object {"tests": "<python asserts>"}',
    ),
}


def check_expected(task: TaskSpec, expected: Any, where: str) -> None:
    """Refuse an ``expected`` value that cannot be scored for this task kind."""
    ok, want = EXPECTED[task.kind]
    if not ok(expected):
        raise DataError(
            f"{where}: expected: must be {want} for a {task.kind} task, got {type(expected).__name__}"
        )


def expected_from_feedback(task: TaskSpec, text: str | None) -> tuple[Any, str | None]:
    """``(expected, problem)``: the answer a piece of feedback gives (a failure's correction, a pass's output)
    as this task kind scores it, or ``(None, why not)``.

    Feedback is text; an extraction task scores a JSON object of fields, so ``'{"city": "oslo"}'`` becomes a
    dict and ``'{not json'`` is no answer at all (triage distrusts it rather than a repair crashing on it).
    A code task is scored by unit tests, which a correction can carry as ``{"tests": "..."}``. A
    classification correction off the label set is kept as given: triage flags it, the naive baseline trains
    on it.

    Examples:
        >>> from kaizen.tools.schema import TaskSpec
        >>> t = TaskSpec(name="x", kind="extraction")
        >>> expected_from_feedback(t, '{"city": "oslo"}'), expected_from_feedback(t, "[1]")[1]
        (({'city': 'oslo'}, None), 'not a JSON object of fields')
        >>> expected_from_feedback(TaskSpec(name="c", kind="classification", labels=["new_card"]), "New card")
        ('new_card', None)
    """
    if text is None or not text.strip():
        return None, "empty"
    if task.kind == "classification":
        from kaizen.tools.evaluate.metrics import normalize_label

        return (normalize_label(text, task.labels) or text) if task.labels else text.strip(), None
    if task.kind in ("extraction", "code"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            return None, f"not JSON ({err.msg} at character {err.pos})"
        ok, want = EXPECTED[task.kind]
        return (value, None) if ok(value) else (None, f"not {want}")
    return text.strip(), None


def load_items(path: Path, task: TaskSpec) -> list[EvalItem]:
    """Read and validate an example file; the first bad line raises with ``file:line: field: problem``."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    items: list[EvalItem] = []
    seen: set[str] = set()
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if len(raw) > MAX_LINE_BYTES:
                raise LogFormatError(str(path), lineno, "<line>", "line is longer than 16 MiB")
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise LogFormatError(str(path), lineno, "<json>", f"invalid JSON: {e}") from None
            if not isinstance(obj, dict):
                raise LogFormatError(str(path), lineno, "<json>", "each line must be a JSON object")
            if "expected" not in obj:
                raise LogFormatError(
                    str(path), lineno, "expected", "missing: every example needs the expected output"
                )
            obj.setdefault("id", item_id(obj.get("messages", []), obj["expected"]))
            try:
                item = EvalItem.model_validate(obj)
            except ValidationError as e:
                err = e.errors()[0]
                raise LogFormatError(
                    str(path), lineno, ".".join(map(str, err["loc"])) or "<line>", err["msg"]
                ) from None
            check_expected(task, item.expected, f"{path}:{lineno}")
            if item.id in seen:
                continue  # exact duplicates add nothing to a score or a training set
            seen.add(item.id)
            items.append(item)
    if not items:
        raise DataError(f"{path}: no examples found")
    return items


def write_text(path: Path, text: str) -> str:
    """``text`` (UTF-8) at ``path`` through a temporary file (a kill leaves the old file or the new one, never
    half of one); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return str(path)


def write_json(path: Path, data: Any) -> str:
    """``data`` as indented JSON at ``path``, atomically (``write_text``); returns the path."""
    return write_text(path, json.dumps(data, indent=2, default=str))


def write_items(path: Path, items: Iterable[EvalItem | dict[str, Any]]) -> int:
    """Write examples as JSONL (atomically); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w") as f:
        for it in items:
            d = it.model_dump() if isinstance(it, EvalItem) else it
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def target_text(task: TaskSpec, expected: Any) -> str:
    """The assistant reply a training example teaches."""
    if task.kind == "extraction":
        return json.dumps(expected, ensure_ascii=False)
    return str(expected)


def sft_rows(task: TaskSpec, items: Iterable[EvalItem], skill: Any = None) -> list[dict[str, Any]]:
    """Prompt/completion chats for TRL's SFTTrainer, built with the one prompt contract."""
    return [
        {
            "id": it.id,
            "prompt": render(task, skill, it.messages),
            "completion": [{"role": "assistant", "content": target_text(task, it.expected)}],
        }
        for it in items
    ]


def grpo_rows(task: TaskSpec, items: Iterable[EvalItem], skill: Any = None) -> list[dict[str, Any]]:
    """Prompts plus what the reward functions need (``expected``, and ``labels`` for classification)."""
    rows = []
    for it in items:
        row: dict[str, Any] = {
            "id": it.id,
            "prompt": render(task, skill, it.messages),
            "expected": it.expected,
        }
        if task.labels:
            row["labels"] = task.labels
        rows.append(row)
    return rows
