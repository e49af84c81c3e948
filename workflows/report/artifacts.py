"""What one run directory holds, read defensively: the view every report section starts from.

A report must be written for any run — one that stopped before training, a rejected run, one killed
mid-write — so nothing here raises on a missing or half-written file: a missing JSON is ``None``, a
JSONL line cut off by a kill is skipped. ``RunView`` names the run's versions (incumbent, candidates,
the one the headline compares) and its evaluations once, so the sections do not each re-parse the
``evals/<version>--<suite>.json[l]`` file names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen.tools.rundir import step_order

SUITE_ORDER = ("target", "regression")


def read_json(path: Path | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not Path(path).is_file():
        return []
    out = []
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut off by a kill: skip it, keep the rest
            if isinstance(rec, dict):
                out.append(rec)
    except OSError:
        return []
    return out


def user_text(item: dict[str, Any]) -> str:
    for m in reversed(item.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return str(m.get("content", ""))
    return str(item.get("input", "")) if item.get("input") is not None else ""


def suite_rank(suite: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(suite), "") if suite in SUITE_ORDER else (len(SUITE_ORDER), suite)


class RunView:
    """Lazy views of one run directory's artifacts."""

    def __init__(self, run_dir: Path, report: dict[str, Any]) -> None:
        self.dir = run_dir
        self.report = report
        self.summary = report.get("summary") or {}
        self.events = [e for e in (report.get("events") or []) if isinstance(e, dict)]
        self.splits = report.get("splits") or {}
        self.incumbent: str | None = self.summary.get("incumbent") or report.get("incumbent")
        self.diagnosis = read_json(
            Path(report["diagnosis_path"]) if report.get("diagnosis_path") else run_dir / "diagnosis.json"
        ) or read_json(run_dir / "diagnosis.json")
        # step ("1", "1r1", "refit") → the event that made its candidate
        self.train_events = {
            str(e.get("step") or e["iteration"]): e
            for e in self.events
            if e.get("phase") in ("train", "recover", "refit")
            and (e.get("step") or e.get("iteration")) is not None
        }
        self.candidates = self._candidates()
        self.evals = self._evals()
        self.compared = self._compared()

    def _candidates(self) -> list[str]:
        out: list[str] = []
        for _, e in sorted(self.train_events.items(), key=lambda kv: step_order(kv[0])):
            if e.get("version") and e["version"] not in out:
                out.append(e["version"])
        for v in (
            self.summary.get("candidate"),
            (self.report.get("best") or {}).get("candidate"),
            (self.report.get("verdict") or {}).get("candidate"),
        ):
            if v and v not in out and v != self.incumbent:
                out.append(v)
        return out

    def _split_name(self, stem: str) -> tuple[str, str] | None:
        for v in sorted([self.incumbent or "", *self.candidates], key=len, reverse=True):
            if v and stem.startswith(v + "--"):
                return v, stem[len(v) + 2 :]
        if "--" in stem:
            v, s = stem.rsplit("--", 1)
            return v, s
        return None

    def _evals(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(version, suite) → {score, n, correct, decoding, confusion, outputs_path} from evals/."""
        d = self.dir / "evals"
        out: dict[tuple[str, str], dict[str, Any]] = {}
        if not d.is_dir():
            return out
        for p in sorted(d.glob("*.json")):
            name = self._split_name(p.stem)
            rec = read_json(p)
            if name and isinstance(rec, dict):
                out[name] = rec
        for p in sorted(d.glob("*.jsonl")):  # outputs without a summary (e.g. the naive strategy): derive one
            name = self._split_name(p.stem)
            if not name or name in out:
                continue
            rows = read_jsonl(p)
            if rows:
                correct = {str(r.get("id")): bool(r.get("correct")) for r in rows}
                out[name] = {
                    "score": sum(correct.values()) / len(correct),
                    "n": len(correct),
                    "correct": correct,
                    "outputs_path": str(p),
                }
        for v, _s in list(out):
            if v != self.incumbent and v not in self.candidates:
                self.candidates.append(v)
        return out

    def _compared(self) -> str | None:
        """The candidate the headline compares with: the promoted/best one, else the last one evaluated."""
        for v in (self.summary.get("candidate"), (self.report.get("best") or {}).get("candidate")):
            if v:
                return v
        for v in reversed(self.candidates):
            if any(k[0] == v for k in self.evals):
                return v
        return self.candidates[-1] if self.candidates else None

    def suites(self) -> list[str]:
        return sorted({s for _, s in self.evals}, key=suite_rank)

    def outputs(self, version: str, suite: str) -> dict[str, dict[str, Any]]:
        ev = self.evals.get((version, suite)) or {}
        path = ev.get("outputs_path")
        candidates = [Path(path)] if path else []
        candidates.append(self.dir / "evals" / f"{version}--{suite}.jsonl")
        for p in candidates:
            rows = read_jsonl(p)
            if rows:
                return {str(r.get("id")): r for r in rows}
        return {}

    def items(self) -> dict[str, dict[str, Any]]:
        """id → {input, expected, metadata} from every data file this run knows."""
        paths: list[Path] = []
        for p in (self.splits or {}).values():
            if p:
                paths.append(Path(p))
        data = self.dir / "data"
        if data.is_dir():
            paths.extend(sorted(data.glob("*.jsonl")))
        cfg = (self.report.get("run") or {}).get("config") or {}
        paths.extend(Path(p) for p in cfg.get("extra_eval_sets") or [])
        out: dict[str, dict[str, Any]] = {}
        seen: set[Path] = set()
        for p in paths:
            if p in seen:
                continue
            seen.add(p)
            for it in read_jsonl(p):
                iid = str(it.get("id"))
                out.setdefault(
                    iid,
                    {
                        "input": user_text(it),
                        "expected": it.get("expected"),
                        "metadata": it.get("metadata") or {},
                    },
                )
        return out

    def target_items(self) -> list[dict[str, Any]]:
        path = self.splits.get("target") or (self.dir / "data" / "target.jsonl")
        return read_jsonl(Path(path))

    @classmethod
    def empty(cls, run_dir: Path, report: dict[str, Any]) -> RunView:
        """A view with no artifacts (the run directory could not be read): every section gets its default."""
        r = cls.__new__(cls)
        r.dir, r.report, r.summary = Path(run_dir), report, report.get("summary") or {}
        r.events, r.splits, r.train_events, r.evals = [], {}, {}, {}
        r.incumbent, r.diagnosis, r.compared, r.candidates = None, None, None, []
        return r
