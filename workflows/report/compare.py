"""The report sections that compare the candidate with the incumbent: scores, clusters, flips, confusion.

These answer "did the new model get better, where, and at what cost": per-suite scores and their
deltas, the fix rate per failure cluster of the diagnosis, every example that flipped (fixed or
broken), the confusion matrices of both models on one label order, and the one-line headline.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from kaizen.tools.rundir import step_order
from kaizen.workflows.report.artifacts import RunView

_CLUSTER_RE = re.compile(r"failure in cluster (.+)$")


def _score(ev: dict[str, Any] | None) -> float | None:
    return None if not ev else ev.get("score")


def _flips(a: dict[str, bool], b: dict[str, bool]) -> tuple[list[str], list[str]]:
    ids = sorted(set(a) & set(b))
    return [i for i in ids if not a[i] and b[i]], [i for i in ids if a[i] and not b[i]]


def versions_section(r: RunView) -> dict[str, Any]:
    return {
        "incumbent": r.incumbent,
        "candidates": r.candidates,
        "compared": r.compared,
        "by_iteration": {
            i: e.get("version") for i, e in sorted(r.train_events.items(), key=lambda kv: step_order(kv[0]))
        },
    }


def suites_section(r: RunView) -> list[dict[str, Any]]:
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


def clusters_section(r: RunView) -> list[dict[str, Any]]:
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


def flipped_section(r: RunView) -> dict[str, Any]:
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


def confusion_section(r: RunView) -> dict[str, Any] | None:
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


def headline(r: RunView, suites: list[dict[str, Any]]) -> dict[str, Any]:
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
