"""``RunDir``: the one place that names every file a run writes.

The graph's nodes write through it and the report reads through it, so neither re-invents (or
re-parses) a file name. Steps of a run are named ``1``, ``2`` … for loop iterations and ``1r1`` (a
recovery of iteration 1's candidate) or ``refit`` for the steps after them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SUITES = ("target", "regression", "train_failures", "replay_pool", "final")
_STEP = re.compile(r"iter-(\d+|\d+r\d+|refit)")


@dataclass(frozen=True)
class RunDir:
    """``.kaizen/artifacts/runs/RUN_ID`` and everything in it."""

    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- once per run
    @property
    def diagnosis(self) -> Path:
        return self.root / "diagnosis.json"

    @property
    def brain_log(self) -> Path:
        return self.root / "brain.jsonl"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    def suite(self, name: str) -> Path:
        """A held-out suite or data role (``target``, ``regression``, ``final`` …) as JSONL."""
        return self.root / "data" / f"{name}.jsonl"

    # ---------------------------------------------------------------- per step
    def step(self, step: str | int) -> Path:
        return self.root / f"iter-{step}"

    def train_set(self, step: str | int) -> Path:
        return self.step(step) / "train.jsonl"

    def train_stats(self, step: str | int) -> Path:
        return self.step(step) / "train_stats.json"

    def job(self, step: str | int) -> Path:
        return self.step(step) / "job"

    def steps(self) -> list[str]:
        """The steps that wrote a directory, in the order they ran (numbers, their recoveries, then the refit)."""
        found = [m.group(1) for p in self.root.glob("iter-*") if (m := _STEP.fullmatch(p.name))]
        return sorted(found, key=step_order)

    # ---------------------------------------------------------------- evaluations
    def eval_cache(self, label: str, suite: str) -> Path:
        return self.root / "evals" / f"{label}--{suite}.json"

    def eval_outputs(self, label: str, suite: str) -> Path:
        return self.root / "evals" / f"{label}--{suite}.jsonl"

    def eval_results(self) -> dict[tuple[str, str], Path]:
        """(label, suite) → cached result file, for every evaluation this run made."""
        out = {}
        for p in (self.root / "evals").glob("*--*.json"):
            label, _, suite = p.stem.rpartition("--")
            out[(label, suite)] = p
        return out


def step_order(step: str) -> tuple[int, int, int]:
    """``1`` < ``1r1`` < ``1r2`` < ``2`` < ``refit``.

    >>> sorted(["refit", "2", "1r1", "1", "10"], key=step_order)
    ['1', '1r1', '2', '10', 'refit']
    """
    if step == "refit":
        return (10**9, 0, 0)
    head, _, rec = step.partition("r")
    return (int(head), 1 if rec else 0, int(rec or 0))
