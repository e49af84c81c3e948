"""The cold-start report: ``report.json`` for machines, a self-contained ``report.html`` for people.

It answers the questions a cold start raises: what data was used, how the base model did, which
pipelines were tried and why, what each scored on the same held-out set, and what the gate said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen.tools.store.tables import RunRow

TEMPLATE = Path(__file__).parents[1] / "report" / "templates" / "cold_start.html.j2"


def report_data(run: RunRow) -> dict[str, Any]:
    s = run.summary
    attempts = [{k: v for k, v in a.items() if k != "correct"} for a in s.get("attempts", [])]
    base = {k: v for k, v in (s.get("base") or {}).items() if k != "correct"}
    return {
        "run": {"id": run.id, "task": run.task, "status": run.status, "config": run.config},
        "data": {"n_train": s.get("n_train"), "n_eval": s.get("n_eval"), "notes": s.get("notes", [])},
        "base": base,
        "attempts": attempts,
        "best": s.get("best"),
        "verdict": s.get("verdict"),
        "promoted": bool(s.get("promoted")),
        "approval": s.get("approval"),  # who approved or rejected, when, and why
    }


def fig_attempts(data: dict[str, Any]) -> str | None:
    """Held-out score of the base and of every attempt, as an inlined PNG."""
    from kaizen.workflows.report.build import _fig, _png

    rows = [("base", (data["base"] or {}).get("score"))] + [
        (f"{a['index'] + 1}. {a['name']}", a.get("score")) for a in data["attempts"]
    ]
    if all(v is None for _, v in rows):
        return None
    fig = _fig(max(4.0, 1.3 * len(rows)), 3.0)
    ax = fig.add_subplot(1, 1, 1)
    best = (data.get("best") or {}).get("attempt")
    colors = ["#9aa5b1"] + ["#2ca25f" if a["index"] == best else "#2b7bb9" for a in data["attempts"]]
    bars = ax.bar(range(len(rows)), [v or 0 for _, v in rows], color=colors)
    for b, (_, v) in zip(bars, rows, strict=True):
        ax.annotate(
            "failed" if v is None else f"{v:.3f}",
            (b.get_x() + b.get_width() / 2, v or 0),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(rows)), [r for r, _ in rows], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("held-out score")
    return _png(fig)


def write_report(run_dir: Path, run: RunRow) -> Path:
    """Write both files; returns the JSON's path. A figure that fails is left out, never the report."""
    from jinja2 import Environment, StrictUndefined

    data = report_data(run)
    path = run_dir / "report.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    try:
        img = fig_attempts(data)
    except Exception:  # noqa: BLE001 - the table still has every number
        img = None
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(r=data, img=img)
    (run_dir / "report.html").write_text(html, encoding="utf-8")
    return path
