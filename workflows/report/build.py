"""The run report: ``report.json`` (the numbers) and a self-contained ``report.html`` (the same numbers, for people).

``write_report(run_dir, report)`` takes the summary dict the workflow built and enriches it from the
run directory's artifacts — ``diagnosis.json``, ``data/*.jsonl``, ``iter-N/{train_stats.json,
job/metrics.jsonl, job/result.json}``, ``evals/<version>--<suite>.json[l]`` — and the run's events.
Every section is read defensively: a run that stopped before training, a rejected run or one with
no candidate still gets a report, with the sections it has.

The HTML is rendered from the JSON written to disk (re-read after serialisation), so every number
on the page is the number in ``report.json``. Images (matplotlib, Agg canvas, no pyplot state) are
inlined as base64 PNG; the page loads nothing from elsewhere. All text from logs is escaped by
Jinja2's autoescape.
"""

from __future__ import annotations

import base64
import io
import json
import re
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.rundir import RunDir, step_order

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
TEMPLATE = Path(__file__).parent / "templates" / "report.html.j2"
_CLUSTER_RE = re.compile(r"failure in cluster (.+)$")
SUITE_ORDER = ("target", "regression")
MAX_FLIPS_SHOWN = 200  # rows per flipped-examples table in the HTML (report.json keeps them all)


def html_path_for(report_json: str | Path | None) -> Path | None:
    """``report.html`` next to a ``report.json`` path (what ``kaizen runs show --open`` prints)."""
    if not report_json:
        return None
    return Path(report_json).with_name(REPORT_HTML)


def write_report(run_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``run_dir``; returns both paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = build_report(run_dir, report)
    json_path, html_path = run_dir / REPORT_JSON, run_dir / REPORT_HTML
    _write(json_path, json.dumps(data, indent=2, default=str))
    on_disk = json.loads(
        json_path.read_text()
    )  # render what was written: the page shows report.json's numbers
    try:
        html = render_html(on_disk)
    except Exception:  # noqa: BLE001 - a broken page must not lose the run's report.json
        err = traceback.format_exc()
        data.setdefault("report_errors", []).append(
            {"section": "html", "error": err.strip().splitlines()[-1]}
        )
        _write(json_path, json.dumps(data, indent=2, default=str))
        html = _fallback_html(on_disk, err)
    _write(html_path, html)
    return json_path, html_path


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Reading the run directory
# --------------------------------------------------------------------------------------------


def _read_json(path: Path | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path | None) -> list[dict[str, Any]]:
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


def _user_text(item: dict[str, Any]) -> str:
    for m in reversed(item.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return str(m.get("content", ""))
    return str(item.get("input", "")) if item.get("input") is not None else ""


def _suite_rank(suite: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(suite), "") if suite in SUITE_ORDER else (len(SUITE_ORDER), suite)


class _Run:
    """Lazy views of one run directory's artifacts."""

    def __init__(self, run_dir: Path, report: dict[str, Any]) -> None:
        self.dir = run_dir
        self.report = report
        self.summary = report.get("summary") or {}
        self.events = [e for e in (report.get("events") or []) if isinstance(e, dict)]
        self.splits = report.get("splits") or {}
        self.incumbent: str | None = self.summary.get("incumbent") or report.get("incumbent")
        self.diagnosis = _read_json(
            Path(report["diagnosis_path"]) if report.get("diagnosis_path") else run_dir / "diagnosis.json"
        ) or _read_json(run_dir / "diagnosis.json")
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
            rec = _read_json(p)
            if name and isinstance(rec, dict):
                out[name] = rec
        for p in sorted(d.glob("*.jsonl")):  # outputs without a summary (e.g. the naive strategy): derive one
            name = self._split_name(p.stem)
            if not name or name in out:
                continue
            rows = _read_jsonl(p)
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
        return sorted({s for _, s in self.evals}, key=_suite_rank)

    def outputs(self, version: str, suite: str) -> dict[str, dict[str, Any]]:
        ev = self.evals.get((version, suite)) or {}
        path = ev.get("outputs_path")
        candidates = [Path(path)] if path else []
        candidates.append(self.dir / "evals" / f"{version}--{suite}.jsonl")
        for p in candidates:
            rows = _read_jsonl(p)
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
            for it in _read_jsonl(p):
                iid = str(it.get("id"))
                out.setdefault(
                    iid,
                    {
                        "input": _user_text(it),
                        "expected": it.get("expected"),
                        "metadata": it.get("metadata") or {},
                    },
                )
        return out

    def target_items(self) -> list[dict[str, Any]]:
        path = self.splits.get("target") or (self.dir / "data" / "target.jsonl")
        return _read_jsonl(Path(path))


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _score(ev: dict[str, Any] | None) -> float | None:
    return None if not ev else ev.get("score")


def _flips(a: dict[str, bool], b: dict[str, bool]) -> tuple[list[str], list[str]]:
    ids = sorted(set(a) & set(b))
    return [i for i in ids if not a[i] and b[i]], [i for i in ids if a[i] and not b[i]]


def _versions(r: _Run) -> dict[str, Any]:
    return {
        "incumbent": r.incumbent,
        "candidates": r.candidates,
        "compared": r.compared,
        "by_iteration": {
            i: e.get("version") for i, e in sorted(r.train_events.items(), key=lambda kv: step_order(kv[0]))
        },
    }


def _suites_section(r: _Run) -> list[dict[str, Any]]:
    rows = []
    for suite in r.suites():
        inc = r.evals.get((r.incumbent, suite)) if r.incumbent else None
        cmp_ = r.evals.get((r.compared, suite)) if r.compared else None
        scores = {v: _score(r.evals.get((v, suite))) for v in [r.incumbent, *r.candidates] if v}
        n = next((e.get("n") for e in (inc, cmp_) if e and e.get("n") is not None), None)
        row: dict[str, Any] = {
            "suite": suite,
            "n": n,
            "scores": scores,
            "before": _score(inc),
            "after": _score(cmp_),
            "delta": None,
            "fixed": None,
            "broken": None,
        }
        if row["before"] is not None and row["after"] is not None:
            row["delta"] = row["after"] - row["before"]
        if inc and cmp_ and inc.get("correct") is not None and cmp_.get("correct") is not None:
            fixed, broken = _flips(inc["correct"], cmp_["correct"])
            row["fixed"], row["broken"] = len(fixed), len(broken)
        rows.append(row)
    return rows


def _cluster_of(item: dict[str, Any], by_trace: dict[str, str]) -> str:
    m = _CLUSTER_RE.search(str((item.get("metadata") or {}).get("reason") or ""))
    if m:
        return m.group(1).strip()
    tid = (item.get("metadata") or {}).get("trace_id") or item.get("id")
    return by_trace.get(str(tid), "(no cluster)")


def _clusters_section(r: _Run) -> list[dict[str, Any]]:
    diag_clusters = (r.diagnosis or {}).get("clusters") or []
    by_trace = {str(t): c.get("key") for c in diag_clusters for t in c.get("trace_ids") or []}
    info = {c.get("key"): c for c in diag_clusters}
    groups: dict[str, list[str]] = defaultdict(list)
    for it in r.target_items():
        groups[_cluster_of(it, by_trace)].append(str(it.get("id")))
    inc = (r.evals.get((r.incumbent, "target")) or {}).get("correct") if r.incumbent else None
    rows = []
    for key, ids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        c = info.get(key) or {}
        row: dict[str, Any] = {
            "cluster": key,
            "kind": c.get("kind"),
            "hypothesis": c.get("hypothesis"),
            "in_logs": c.get("count"),
            "n": len(ids),
            "incumbent_right": None,
            "candidates": {},
        }
        if inc is not None:
            row["incumbent_right"] = sum(bool(inc.get(i)) for i in ids)
        for v in r.candidates:
            cand = (r.evals.get((v, "target")) or {}).get("correct")
            if cand is None or inc is None:
                continue
            wrong_before = [i for i in ids if i in inc and not inc[i]]
            fixed = [i for i in wrong_before if cand.get(i)]
            broken = [i for i in ids if inc.get(i) and i in cand and not cand[i]]
            row["candidates"][v] = {
                "right": sum(bool(cand.get(i)) for i in ids),
                "fixed": len(fixed),
                "broken": len(broken),
                "wrong_before": len(wrong_before),
                "fix_rate": len(fixed) / len(wrong_before) if wrong_before else None,
            }
        rows.append(row)
    return rows


def _flipped_section(r: _Run) -> dict[str, Any]:
    out: dict[str, Any] = {"incumbent": r.incumbent, "candidate": r.compared, "fixed": [], "broken": []}
    if not r.incumbent or not r.compared:
        return out
    items = None
    for suite in r.suites():
        a = (r.evals.get((r.incumbent, suite)) or {}).get("correct")
        b = (r.evals.get((r.compared, suite)) or {}).get("correct")
        if a is None or b is None:
            continue
        fixed, broken = _flips(a, b)
        if not fixed and not broken:
            continue
        items = items if items is not None else r.items()
        before, after = r.outputs(r.incumbent, suite), r.outputs(r.compared, suite)
        for kind, ids in (("fixed", fixed), ("broken", broken)):
            for i in ids:
                it = items.get(i) or {}
                expected = it.get("expected", (before.get(i) or after.get(i) or {}).get("expected"))
                out[kind].append(
                    {
                        "suite": suite,
                        "id": i,
                        "input": it.get("input", ""),
                        "expected": expected,
                        "before": (before.get(i) or {}).get("output"),
                        "after": (after.get(i) or {}).get("output"),
                    }
                )
    return out


def _evidence_summary(kind: str, ev: dict[str, Any]) -> str:
    def nb(n: int = 3) -> str:
        return ", ".join(
            f"{x.get('label')} ({x.get('similarity')})" for x in (ev.get("neighbours") or [])[:n]
        )

    if kind == "disagrees_with_similar_inputs":
        return (
            f"corrected to {ev.get('correction')!r}, but {ev.get('share', 0):.0%} of the similarity weight of "
            f"{len(ev.get('neighbours') or [])} similar inputs says {ev.get('majority')!r}; nearest: {nb()}"
        )
    if kind == "contradicts_near_duplicates":
        return f"corrected to {ev.get('correction')!r}, but near-duplicate inputs are labelled: {nb(5)}"
    if kind == "off_domain_input":
        return f"input unlike any other trace (best similarity {ev.get('best_similarity')})"
    if kind == "correction_off_label":
        return f"correction {ev.get('correction')!r} is not one of the task's labels"
    if kind == "correction_equals_output":
        return f"correction equals the model's output {ev.get('output')!r}"
    if kind == "empty_or_garbage_input":
        return "input is empty or not text"
    return "; ".join(f"{k}: {v}" for k, v in ev.items() if not isinstance(v, (list, dict)))


def _suspects_section(r: _Run) -> dict[str, Any]:
    traces = r.report.get("suspect_traces") or {}
    rows = []
    flagged = (r.diagnosis or {}).get("suspects") or []
    for s in flagged:
        if not isinstance(s, dict):
            continue
        tid = str(s.get("trace_id"))
        ev = s.get("evidence") or {}
        t = traces.get(tid) or {}
        rows.append(
            {
                "trace_id": tid,
                "kind": s.get("kind"),
                "input": t.get("input", ev.get("input")),
                "output": t.get("output"),
                "correction": t.get("correction", ev.get("correction")),
                "evidence_summary": _evidence_summary(str(s.get("kind")), ev),
                "evidence": ev,
            }
        )
    known = {x["trace_id"] for x in rows}
    for tid in r.summary.get("excluded_suspect") or r.report.get("excluded_suspect") or []:
        if str(tid) not in known:  # excluded without a diagnosis on disk: still listed
            t = traces.get(str(tid)) or {}
            rows.append(
                {
                    "trace_id": str(tid),
                    "kind": None,
                    "input": t.get("input"),
                    "output": t.get("output"),
                    "correction": t.get("correction"),
                    "evidence_summary": "",
                    "evidence": {},
                }
            )
    return {"count": len(rows), "by_kind": dict(Counter(str(x["kind"]) for x in rows)), "items": rows}


def _gate_section(r: _Run) -> list[dict[str, Any]]:
    """Every gated step of the run — iterations, recoveries, the refit — with its recipe and reasons."""
    path = r.summary.get("path") or []
    if path:
        return [
            {
                "iteration": s.get("step"),
                "candidate": s.get("candidate"),
                "recipe": s.get("recipe"),
                "target": s.get("target"),
                "passed": bool(s.get("passed")),
                "reasons": list(s.get("reasons") or []),
            }
            for s in path
        ]
    rows: list[dict[str, Any]] = []
    step = None
    for e in r.events:
        if e.get("step") is not None or e.get("iteration") is not None:
            step = str(e.get("step") or e["iteration"])
        if e.get("phase") == "gate":
            cand = (r.train_events.get(step) or {}).get("version") if step is not None else None
            rows.append(
                {
                    "iteration": step,
                    "candidate": cand,
                    "passed": bool(e.get("passed")),
                    "reasons": list(e.get("reasons") or []),
                }
            )
    verdict = r.report.get("verdict") or {}
    if not rows and verdict:
        rows.append(
            {
                "iteration": verdict.get("iteration"),
                "candidate": verdict.get("candidate"),
                "passed": bool(verdict.get("passed")),
                "reasons": list(verdict.get("reasons") or []),
            }
        )
    if not rows and (r.summary.get("verdict") or {}).get("reasons"):
        v = r.summary["verdict"]
        rows.append(
            {
                "iteration": r.summary.get("iterations"),
                "candidate": r.summary.get("candidate"),
                "passed": bool(v.get("passed")),
                "reasons": list(v.get("reasons") or []),
            }
        )
    return rows


def _phases_section(r: _Run) -> dict[str, Any]:
    """Seconds per phase: the gap between consecutive events goes to the later event's phase."""
    evs = [e for e in r.events if isinstance(e.get("t"), (int, float))]
    start = r.report.get("started_at")
    totals: dict[str, float] = {}
    counts: Counter[str] = Counter()
    timeline = []
    prev = start if isinstance(start, (int, float)) else None
    for e in evs:
        phase = str(e.get("phase"))
        dt = max(0.0, float(e["t"]) - float(prev)) if prev is not None else 0.0
        totals[phase] = totals.get(phase, 0.0) + dt
        counts[phase] += 1
        timeline.append(
            {"phase": phase, "iteration": e.get("iteration"), "t": e["t"], "seconds": round(dt, 3)}
        )
        prev = e["t"]
    phases = [{"phase": p, "seconds": round(s, 3), "count": counts[p]} for p, s in totals.items()]
    total = round(sum(totals.values()), 3)
    return {
        "phases": phases,
        "total_s": total,
        "timeline": timeline,
        "note": "seconds between an event and the one before it (the run's start for the first)",
    }


def _iter_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    rd = RunDir(run_dir)
    out = [(s, rd.step(s)) for s in rd.steps() if rd.step(s).is_dir()]
    if not out and (run_dir / "job").is_dir():  # a single-job run (the naive strategy)
        out.append(("1", run_dir))
    return out


def _training_section(r: _Run) -> list[dict[str, Any]]:
    rows = []
    for i, d in _iter_dirs(r.dir):
        job = d / "job"
        stats = _read_json(d / "train_stats.json") or {}
        result = _read_json(job / "result.json") or {}
        ev = r.train_events.get(i) or {}
        steps, loss, elapsed = [], [], []
        final = {}
        for rec in _read_jsonl(job / "metrics.jsonl"):
            if "loss" in rec and rec.get("step") is not None:
                steps.append(rec["step"])
                loss.append(rec["loss"])
                elapsed.append(rec.get("elapsed_s"))
            if "train_loss" in rec:
                final = rec
        rows.append(
            {
                "iteration": i,
                "version": ev.get("version"),
                "examples": stats.get("n"),
                "failures": stats.get("failures"),
                "replay": stats.get("replay"),
                "prior": stats.get("prior"),
                "dropped_contaminated": stats.get("dropped_contaminated"),
                "labels": stats.get("labels"),
                "steps": result.get("steps", ev.get("steps")),
                "train_tokens": result.get("train_tokens", ev.get("train_tokens")),
                "tokens_per_s": result.get("tokens_per_s", ev.get("tokens_per_s")),
                "train_runtime_s": result.get("train_runtime_s", ev.get("seconds")),
                "train_loss": result.get("train_loss", final.get("train_loss")),
                "device": result.get("device"),
                "curve": {"step": steps, "loss": loss, "elapsed_s": elapsed},
            }
        )
    return rows


def _merge_confusion(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    parts = [p for p in parts if p and p.get("labels") and p.get("matrix")]
    if not parts:
        return None
    labels: list[str] = []
    for p in parts:
        labels += [x for x in p["labels"] if x not in labels and x != "<invalid>"]
    if any("<invalid>" in p["labels"] for p in parts):
        labels.append("<invalid>")
    idx = {x: k for k, x in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for p in parts:
        for a, row in zip(p["labels"], p["matrix"], strict=False):
            for b, v in zip(p["labels"], row, strict=False):
                m[idx[a]][idx[b]] += int(v)
    return {"labels": labels, "matrix": m}


def _confusion_section(r: _Run) -> dict[str, Any] | None:
    suites = [s for s in ("target", "regression") if (r.incumbent, s) in r.evals]
    if not suites or not r.incumbent:
        return None
    inc = _merge_confusion([(r.evals[(r.incumbent, s)] or {}).get("confusion") for s in suites])
    cand = (
        _merge_confusion([(r.evals.get((r.compared, s)) or {}).get("confusion") for s in suites])
        if r.compared
        else None
    )
    if inc is None:
        return None
    if cand is not None and cand["labels"] != inc["labels"]:  # align both on one label order
        union = _merge_confusion([inc, cand])["labels"]  # type: ignore[index]
        zero = {"labels": union, "matrix": [[0] * len(union) for _ in union]}
        inc, cand = _merge_confusion([zero, inc]), _merge_confusion([zero, cand])
    return {
        "suites": suites,
        "labels": inc["labels"],
        "incumbent": {"version": r.incumbent, "matrix": inc["matrix"]},
        "candidate": {"version": r.compared, "matrix": cand["matrix"]} if cand else None,
        "note": "rows: expected label, columns: model output; <invalid>: output matching no label",
    }


def _headline(r: _Run, suites: list[dict[str, Any]]) -> dict[str, Any]:
    status = (r.report.get("run") or {}).get("status") or r.summary.get("status") or "unknown"
    s = r.summary
    by = {x["suite"]: x for x in suites}

    def fmt(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    tgt = by.get("target") or {}
    change = f"target {fmt(tgt.get('before'))} → {fmt(tgt.get('after'))}" if tgt else ""
    reasons = (s.get("verdict") or {}).get("reasons") or []
    if status == "promoted":
        text, tone = f"Promoted {r.compared} to production" + (f": {change}" if change else ""), "good"
    elif status == "awaiting_approval":
        text, tone = (
            f"{r.compared} passed the gate and awaits approval" + (f": {change}" if change else ""),
            "neutral",
        )
    elif status == "rejected":
        text, tone = (
            f"{r.compared} passed the gate but the promotion was rejected; production stays on {r.incumbent}",
            "bad",
        )
    elif not r.candidates:
        why = next(
            (
                "; ".join(e.get("reasons") or [])
                for e in reversed(r.events)
                if e.get("phase") == "rollback" and e.get("reasons")
            ),
            "",
        )
        text = f"No candidate was trained; production stays on {r.incumbent}" + (f" ({why})" if why else "")
        if (
            not why
            and r.diagnosis
            and not any(c.get("fixable") and c.get("count") for c in r.diagnosis.get("clusters") or [])
        ):
            text += " (nothing fixable in the logs)"
        tone = "bad" if status in ("failed", "interrupted") else "neutral"
    elif status in ("failed", "interrupted", "running"):
        text, tone = f"The run is {status}; production stays on {r.incumbent}", "bad"
    else:
        text, tone = f"Not promoted: no candidate passed the gate; production stays on {r.incumbent}", "bad"
    return {"status": status, "text": text, "tone": tone, "reasons": reasons}


SECTIONS: list[tuple[str, Callable[[_Run], Any], Any]] = [
    ("versions", _versions, {}),
    ("suites", _suites_section, []),
    ("clusters", _clusters_section, []),
    ("flipped", _flipped_section, {"fixed": [], "broken": []}),
    ("suspects", _suspects_section, {"count": 0, "by_kind": {}, "items": []}),
    ("gate", _gate_section, []),
    ("phases", _phases_section, {"phases": [], "total_s": 0.0, "timeline": []}),
    ("training", _training_section, []),
    ("confusion", _confusion_section, None),
]


def build_report(run_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` plus every section this run's artifacts allow (a failed section is logged in ``report_errors``)."""
    out = dict(report)
    out.pop("suspect_traces", None)  # folded into suspects.items
    out["run"] = {"id": None, "task": None, "status": None, "config": {}} | dict(report.get("run") or {})
    out["run"]["config"] = out["run"].get("config") or {}
    summary = dict(report.get("summary") or {})
    for k in ("before", "after"):
        summary[k] = summary.get(k) or {}
    summary["verdict"] = summary.get("verdict") or {"passed": False, "reasons": []}
    out["summary"] = summary
    errors: list[dict[str, str]] = []
    try:
        r = _Run(Path(run_dir), report)
    except Exception as exc:  # noqa: BLE001
        errors.append({"section": "run", "error": f"{type(exc).__name__}: {exc}"})
        r = _Run.__new__(_Run)
        r.dir, r.report, r.summary, r.events, r.splits = (
            Path(run_dir),
            report,
            report.get("summary") or {},
            [],
            {},
        )
        r.incumbent, r.diagnosis, r.train_events, r.candidates, r.evals, r.compared = (
            None,
            None,
            {},
            [],
            {},
            None,
        )
    for name, fn, default in SECTIONS:
        try:
            out[name] = fn(r)
        except Exception as exc:  # noqa: BLE001 - one unreadable artifact must not cost the whole report
            errors.append({"section": name, "error": f"{type(exc).__name__}: {exc}"})
            out[name] = default
    try:
        out["headline"] = _headline(r, out["suites"])
    except Exception as exc:  # noqa: BLE001
        errors.append({"section": "headline", "error": f"{type(exc).__name__}: {exc}"})
        out["headline"] = {"status": "unknown", "text": "", "tone": "neutral", "reasons": []}
    out["report_errors"] = errors
    return out


# --------------------------------------------------------------------------------------------
# Figures (matplotlib's Agg canvas directly: no pyplot, no global backend switch)
# --------------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _short(v: str | None, n: int = 28) -> str:
    v = str(v)
    return v if len(v) <= n else "…" + v[-(n - 1) :]


def fig_scores(data: dict[str, Any]) -> str | None:
    suites = [s for s in data.get("suites") or [] if any(v is not None for v in s["scores"].values())]
    if not suites:
        return None
    versions = [v for v in [data["versions"].get("incumbent"), *data["versions"].get("candidates", [])] if v]
    fig = _fig(min(2.0 + 1.6 * len(suites) * max(1, len(versions)) / 2, 11), 3.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(versions))
    colors = ["#9aa5b1", "#2b7bb9", "#2ca25f", "#e6842a", "#8e44ad"]
    for k, v in enumerate(versions):
        xs = [i + (k - (len(versions) - 1) / 2) * width for i in range(len(suites))]
        ys = [s["scores"].get(v) for s in suites]
        bars = ax.bar(
            xs,
            [y or 0 for y in ys],
            width,
            label=("incumbent " if k == 0 else "") + _short(v),
            color=colors[k % len(colors)],
        )
        for b, y in zip(bars, ys, strict=True):
            if y is not None:
                ax.annotate(
                    f"{y:.3f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7
                )
    ax.set_xticks(range(len(suites)), [f"{s['suite']}\n(n={s['n']})" for s in suites], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("score per suite", fontsize=10)
    return _png(fig)


def fig_confusion(conf: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(incumbent | candidate heatmaps, change heatmap); the change is its own image so labels stay legible."""
    if not conf or not conf.get("labels"):
        return None, None
    import numpy as np

    labels = conf["labels"]
    inc = np.array(conf["incumbent"]["matrix"])
    pair = [(f"{_short(conf['incumbent']['version'], 34)} (incumbent)", inc)]
    change = None
    if conf.get("candidate"):
        cand = np.array(conf["candidate"]["matrix"])
        pair.append((f"{_short(conf['candidate']['version'], 34)} (candidate)", cand))
        change = cand - inc
    vmax = max(int(m.max()) for _, m in pair) or 1
    first = _heatmaps(labels, [(t, m, False) for t, m in pair], vmax)
    second = (
        _heatmaps(labels, [("change: candidate − incumbent (blue better, red worse)", change, True)], vmax)
        if change is not None
        else None
    )
    return first, second


def _heatmaps(labels: list[str], panels: list[tuple[str, Any, bool]], vmax: int) -> str:
    import numpy as np

    n = len(labels)
    side = max(3.4, 0.32 * n + 1.6)
    fig = _fig(side * len(panels) + 0.6, side + 0.4)
    for k, (title, m, diff) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        lim = max(1, int(np.abs(m).max()))
        if diff:
            # More on the diagonal (right answers) is good, more off it (confusions) is bad: blue good, red bad.
            signed = np.where(np.eye(n, dtype=bool), m, -m)
            ax.imshow(signed, cmap="RdBu", vmin=-lim, vmax=lim)
        else:
            ax.imshow(m, cmap="Blues", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(n), labels, rotation=55, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("model output", fontsize=8)
        ax.set_ylabel("expected", fontsize=8)
        if n <= 24:
            for i in range(n):
                for j in range(n):
                    v = int(m[i, j])
                    if v:
                        dark = abs(v) > lim * 0.55 if diff else v > vmax * 0.55
                        ax.text(
                            j,
                            i,
                            f"{v:+d}" if diff else str(v),
                            ha="center",
                            va="center",
                            fontsize=7.5,
                            color="white" if dark else "black",
                        )
    fig.tight_layout()
    return _png(fig)


def fig_training(training: list[dict[str, Any]]) -> str | None:
    curves = [t for t in training if t["curve"]["step"]]
    if not curves:
        return None
    fig = _fig(7.5, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for t in curves:
        ax.plot(
            t["curve"]["step"], t["curve"]["loss"], marker="o", markersize=3, label=f"step {t['iteration']}"
        )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss per iteration", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def fig_phases(phases: dict[str, Any]) -> str | None:
    rows = [p for p in phases.get("phases") or [] if p["seconds"] > 0]
    if not rows:
        return None
    fig = _fig(7.5, 0.45 * len(rows) + 1.0)
    ax = fig.add_subplot(1, 1, 1)
    ys = range(len(rows))[::-1]
    ax.barh(list(ys), [p["seconds"] for p in rows], color="#2b7bb9")
    ax.set_yticks(list(ys), [p["phase"] for p in rows], fontsize=8)
    for y, p in zip(ys, rows, strict=True):
        ax.annotate(f" {p['seconds']:.1f} s", (p["seconds"], y), va="center", fontsize=7)
    ax.set_xlabel("seconds")
    ax.set_title(f"time per phase (total {phases.get('total_s', 0):.1f} s)", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlim(0, max(p["seconds"] for p in rows) * 1.18)
    return _png(fig)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


def fmt_score(x: Any) -> str:
    """How every score is shown (the tests read the page back with the same function)."""
    return "n/a" if x is None else f"{float(x):.3f}"


def fmt_delta(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):+.3f}"


def fmt_rate(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.0%}"


def fmt_num(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def render_html(data: dict[str, Any]) -> str:
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(
        score=fmt_score,
        delta=fmt_delta,
        rate=fmt_rate,
        num=fmt_num,
        short=_short,
        tojson_pretty=lambda v: json.dumps(v, indent=1, default=str, ensure_ascii=False),
    )
    images: dict[str, str | None] = {}
    for name, fn, arg in (
        ("scores", fig_scores, data),
        ("confusion", fig_confusion, data.get("confusion")),
        ("training", fig_training, data.get("training") or []),
        ("phases", fig_phases, data.get("phases") or {}),
    ):
        try:
            images[name] = fn(arg)
        except Exception as exc:  # noqa: BLE001 - a figure that fails is left out, the tables stay
            images[name] = None
            data.setdefault("report_errors", []).append(
                {"section": f"figure {name}", "error": f"{type(exc).__name__}: {exc}"}
            )
    images["confusion"], images["confusion_change"] = images["confusion"] or (None, None)
    tpl = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return tpl.render(r=data, img=images, max_flips=MAX_FLIPS_SHOWN)


def _fallback_html(data: dict[str, Any], err: str) -> str:
    from html import escape

    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>kaizen report</title></head><body>"
        "<h1>kaizen run report</h1><p>The full page could not be rendered; report.json holds the numbers.</p>"
        f"<pre>{escape(err)}</pre><pre>{escape(json.dumps(data.get('summary'), indent=2, default=str))}</pre></body></html>"
    )
