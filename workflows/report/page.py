"""``report.html``: the Jinja2 page over ``report.json``'s numbers, with its figures inlined.

The number formats live here because the page and its tests must agree on them (the tests read the
page back with the same ``fmt_*`` functions). All text from logs is escaped by Jinja2's autoescape; a
figure that fails is left out and noted in ``report_errors``, the tables stay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen.workflows.report.figures import fig_confusion, fig_phases, fig_rl, fig_scores, fig_training, short

TEMPLATE = Path(__file__).parent / "templates" / "report.html.j2"
MAX_FLIPS_SHOWN = 200  # rows per flipped-examples table in the HTML (report.json keeps them all)


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
        short=short,
        tojson_pretty=lambda v: json.dumps(v, indent=1, default=str, ensure_ascii=False),
    )
    images: dict[str, str | None] = {}
    for name, fn, arg in (
        ("scores", fig_scores, data),
        ("confusion", fig_confusion, data.get("confusion")),
        ("training", fig_training, data.get("training") or []),
        ("rl", fig_rl, data.get("training") or []),
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


def fallback_html(data: dict[str, Any], err: str) -> str:
    from html import escape

    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>kaizen report</title></head><body>"
        "<h1>kaizen run report</h1><p>The full page could not be rendered; report.json holds the numbers.</p>"
        f"<pre>{escape(err)}</pre><pre>{escape(json.dumps(data.get('summary'), indent=2, default=str))}</pre></body></html>"
    )
