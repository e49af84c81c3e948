"""Answer keys: the true labels of a scenario's logs, kept apart from what kaizen ingests.

A benchmark or demo knows which feedback it poisoned and what every input really means; kaizen must
not. So the truth lives in a separate JSONL file (one ``{"id", "label", "noise"}`` line per trace:
``label`` is the right answer, ``null`` for an input outside the task; ``noise`` names what was done to
the trace), read only by the **oracle** arm (perfect triage, perfect corrections) and by the scoring
of triage. Nothing the agent arm reads passes through here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from kaizen.tools.errors import DataError
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import TraceView

# Noise kinds that make a trace's feedback wrong (what triage should catch).
BAD_FEEDBACK = frozenset({"poisoned", "off_domain"})


class KeyEntry(BaseModel):
    """The truth about one trace."""

    id: str
    label: str | None = Field(description="The right answer; null when the input is outside the task.")
    noise: list[str] = Field(
        default_factory=list, description="What was done to the trace (typo, poisoned, …)."
    )

    @property
    def bad_feedback(self) -> bool:
        return bool(BAD_FEEDBACK & set(self.noise))


def write_answer_key(path: Path, entries: Iterable[KeyEntry | dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [e if isinstance(e, KeyEntry) else KeyEntry.model_validate(e) for e in entries]
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    return len(rows)


def load_answer_key(path: Path) -> dict[str, KeyEntry]:
    """``id → KeyEntry``; a malformed line is a DataError naming it."""
    out: dict[str, KeyEntry] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"answer key {path}: cannot read it ({err})") from err
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            e = KeyEntry.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as err:
            raise DataError(f"answer key {path}:{n}: {str(err).splitlines()[0]}") from err
        if e.id in out:
            raise DataError(f"answer key {path}:{n}: id {e.id!r} appears twice")
        out[e.id] = e
    return out


def _same(task: TaskSpec, output: str, label: str) -> bool:
    if task.kind == "classification" and task.labels:
        return normalize_label(output, task.labels) == label
    return output.strip() == label.strip()


def oracle_traces(task: TaskSpec, traces: Sequence[TraceView], key: dict[str, KeyEntry]) -> list[TraceView]:
    """The traces as a perfect annotator would label them: every keyed trace gets its true verdict and
    correction (unlabelled ones too); inputs outside the task are dropped; unkeyed traces keep their feedback."""
    out = []
    for t in traces:
        e = key.get(t.id)
        if e is None:
            out.append(t)
            continue
        if e.label is None:
            continue
        ok = _same(task, t.output, e.label)
        out.append(
            dataclasses.replace(
                t,
                verdict="pass" if ok else "fail",
                correction=None if ok else e.label,
                reason=None if ok else "oracle",
                feedback_source="oracle",
            )
        )
    return out


def triage_quality(
    flagged: Iterable[str], key: dict[str, KeyEntry], traces: Sequence[TraceView]
) -> dict[str, Any]:
    """Precision and recall of the feedback flagged as untrustworthy, against the key.

    Counted over labelled traces only (triage judges feedback; an unlabelled trace has none).
    """
    labelled = {t.id for t in traces if t.verdict in ("pass", "fail")}
    bad = {i for i, e in key.items() if e.bad_feedback and i in labelled}
    flagged = set(flagged) & labelled
    tp = len(flagged & bad)
    return {
        "flagged": len(flagged),
        "bad_feedback": len(bad),
        "caught": tp,
        "precision": round(tp / len(flagged), 4) if flagged else None,
        "recall": round(tp / len(bad), 4) if bad else None,
    }


def inferred_quality(inferred: Iterable[Any], key: dict[str, KeyEntry]) -> dict[str, Any]:
    """How many labels the triage inferred (relabelled corrections, pseudo-labelled traces) and how many are
    right by the key: an inferred label trains, so a wrong one is poison kaizen added itself."""
    out: dict[str, Any] = {}
    for kind in ("relabel", "pseudo_label"):
        got = [x for x in inferred if x.kind == kind and x.trace_id in key]
        right = sum(1 for x in got if key[x.trace_id].label == x.label)
        out[kind] = {"n": len(got), "right": right, "accuracy": round(right / len(got), 4) if got else None}
    return out
