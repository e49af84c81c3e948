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

This module assembles; the parts live beside it: ``artifacts`` (reading the run directory),
``compare`` and ``process`` (the sections), ``figures`` and ``page`` (the HTML).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.data import write_json, write_text
from kaizen.workflows.report.artifacts import RunView
from kaizen.workflows.report.compare import (
    clusters_section,
    confusion_section,
    flipped_section,
    headline,
    suites_section,
    versions_section,
)

# Re-exported: callers import the page's helpers from here (the UI's number formats; cold_start/report.py
# draws its figure with _fig and _png).
from kaizen.workflows.report.figures import new_figure as _fig
from kaizen.workflows.report.figures import to_png as _png
from kaizen.workflows.report.page import (
    TEMPLATE,
    fallback_html,
    fmt_delta,
    fmt_num,
    fmt_rate,
    fmt_score,
    render_html,
)
from kaizen.workflows.report.process import gate_section, phases_section, suspects_section, training_section

__all__ = [
    "REPORT_HTML",
    "REPORT_JSON",
    "SECTIONS",
    "TEMPLATE",
    "_fig",
    "_png",
    "build_report",
    "fmt_delta",
    "fmt_num",
    "fmt_rate",
    "fmt_score",
    "html_path_for",
    "render_html",
    "write_report",
]

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


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
    write_json(json_path, data)
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
        write_json(json_path, data)
        html = fallback_html(on_disk, err)
    write_text(html_path, html)
    return json_path, html_path


SECTIONS: list[tuple[str, Callable[[RunView], Any], Any]] = [
    ("versions", versions_section, {}),
    ("suites", suites_section, []),
    ("clusters", clusters_section, []),
    ("flipped", flipped_section, {"fixed": [], "broken": []}),
    ("suspects", suspects_section, {"count": 0, "by_kind": {}, "items": []}),
    ("gate", gate_section, []),
    ("phases", phases_section, {"phases": [], "total_s": 0.0, "timeline": []}),
    ("training", training_section, []),
    ("confusion", confusion_section, None),
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
        r = RunView(Path(run_dir), report)
    except Exception as exc:  # noqa: BLE001
        errors.append({"section": "run", "error": f"{type(exc).__name__}: {exc}"})
        r = RunView.empty(Path(run_dir), report)
    for name, fn, default in SECTIONS:
        try:
            out[name] = fn(r)
        except Exception as exc:  # noqa: BLE001 - one unreadable artifact must not cost the whole report
            errors.append({"section": name, "error": f"{type(exc).__name__}: {exc}"})
            out[name] = default
    try:
        out["headline"] = headline(r, out["suites"])
    except Exception as exc:  # noqa: BLE001
        errors.append({"section": "headline", "error": f"{type(exc).__name__}: {exc}"})
        out["headline"] = {"status": "unknown", "text": "", "tone": "neutral", "reasons": []}
    out["report_errors"] = errors
    return out
