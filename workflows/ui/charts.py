"""The dashboard's figures as inline SVG strings: line charts and the lineage graph.

Drawn on the server so pages need no chart library (nothing is fetched from a CDN, nothing is built) and
a live update is one HTML fragment swapped in. Every piece of text is escaped here.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

PALETTE = ("#2b7bb9", "#e6842a", "#2ca25f", "#8e44ad", "#c0392b", "#7f8c8d")


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _fmt(v: float, step: float | None = None) -> str:
    """A tick label with as many decimals as the spacing of the ticks needs (10.78 and 10.80 stay apart)."""
    if step:
        decimals = min(6, max(0, 1 - math.floor(math.log10(abs(step)))))
        return f"{v:.{decimals}f}"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def line_chart(
    series: list[dict[str, Any]],
    *,
    title: str = "",
    y_label: str = "",
    width: int = 560,
    height: int = 190,
    y_min: float | None = None,
    y_max: float | None = None,
    x_labels: list[str] | None = None,
    percent: bool = False,
) -> str:
    """Lines ``{"name", "x": [...], "y": [...]}`` on shared axes (``None`` values leave gaps); "" when nothing to draw."""
    pts = [
        [
            (x, y)
            for x, y in zip(s.get("x") or [], s.get("y") or [], strict=False)
            if _num(x) is not None and _num(y) is not None
        ]
        for s in series
    ]
    if not any(pts):
        return ""
    xs = [float(x) for p in pts for x, _ in p]
    ys = [float(y) for p in pts for _, y in p]
    lo = y_min if y_min is not None else min(ys)
    hi = y_max if y_max is not None else max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 1, x1 + 1
    y_ticks = [lo + (hi - lo) * k / 4 for k in range(5)]
    y_labels = [f"{v:.0%}" if percent else _fmt(v, (hi - lo) / 4) for v in y_ticks]
    left = max(50, 8 + 6 * max(len(t) for t in y_labels))  # room for the longest tick label
    right, top, bottom = 26, 22 if title else 10, 34
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - lo) / (hi - lo)) * ph

    out = [
        (
            f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title or y_label)}" xmlns="http://www.w3.org/2000/svg">'
        )
    ]
    if title:
        out.append(f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>')
    shown: set[str] = set()
    for v, label in zip(y_ticks, y_labels, strict=True):
        if label in shown:  # a range too narrow for distinct labels: draw each label once
            continue
        shown.add(label)
        y = sy(v)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 5}" y="{y + 3:.1f}" class="tick" text-anchor="end">{escape(label)}</text>'
        )
    if x_labels:
        n = len(x_labels)
        every = max(1, math.ceil(n / 8))
        for i, lab in enumerate(x_labels):
            if i % every == 0 or i == n - 1:
                out.append(
                    f'<text x="{sx(i):.1f}" y="{height - bottom + 14}" class="tick" text-anchor="middle">{escape(str(lab))}</text>'
                )
    else:
        integers = all(float(x).is_integer() for x in xs)
        seen: set[str] = set()
        for k in range(5):
            v = x0 + (x1 - x0) * k / 4
            if integers:
                v = float(round(v))
            label = f"{v:.0f}" if integers else _fmt(v, (x1 - x0) / 4)
            if label in seen:
                continue
            seen.add(label)
            out.append(
                f'<text x="{sx(v):.1f}" y="{height - bottom + 14}" class="tick" text-anchor="middle">{escape(label)}</text>'
            )
    if y_label:
        out.append(f'<text x="{left}" y="{height - 4}" class="axis">{escape(y_label)}</text>')
    for k, (s, p) in enumerate(zip(series, pts, strict=True)):
        if not p:
            continue
        color = s.get("color") or PALETTE[k % len(PALETTE)]
        path = " ".join(f"{sx(float(x)):.1f},{sy(float(y)):.1f}" for x, y in p)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(p) <= 40:
            out += [
                f'<circle cx="{sx(float(x)):.1f}" cy="{sy(float(y)):.1f}" r="2.6" fill="{color}"><title>{escape(str(s.get("name", "")))}: '
                f"{escape(_fmt(float(y)) if not percent else f'{float(y):.1%}')}</title></circle>"
                for x, y in p
            ]
    if len(series) > 1:
        lx = left + 6
        for k, s in enumerate(series):
            color = s.get("color") or PALETTE[k % len(PALETTE)]
            label = escape(str(s.get("name", "")))
            out.append(
                f'<rect x="{lx}" y="{top + 4}" width="10" height="3" fill="{color}"/>'
                f'<text x="{lx + 14}" y="{top + 9}" class="tick">{label}</text>'
            )
            lx += 24 + 7 * len(str(s.get("name", "")))
    out.append("</svg>")
    return "".join(out)


def lineage_graph(
    versions: list[dict[str, Any]], edges: list[dict[str, str]], *, box_w: int = 190, box_h: int = 46
) -> str:
    """Parent → child as boxes in columns by depth, each box linking to its row (``#v-NAME``); "" for no versions."""
    if not versions:
        return ""
    names = [v["name"] for v in versions]
    parent = {e["to"]: e["from"] for e in edges}
    depth: dict[str, int] = {}

    def d(n: str, seen: frozenset[str] = frozenset()) -> int:
        if n in depth:
            return depth[n]
        p = parent.get(n)
        depth[n] = 0 if p is None or p in seen or p not in names else d(p, seen | {n}) + 1
        return depth[n]

    cols: dict[int, list[str]] = {}
    for n in names:
        cols.setdefault(d(n), []).append(n)
    gap_x, gap_y, pad = 46, 14, 8
    width = pad * 2 + len(cols) * box_w + (len(cols) - 1) * gap_x
    rows = max(len(c) for c in cols.values())
    height = pad * 2 + rows * box_h + (rows - 1) * gap_y
    pos = {
        n: (pad + c * (box_w + gap_x), pad + i * (box_h + gap_y))
        for c, ns in cols.items()
        for i, n in enumerate(ns)
    }
    by_name = {v["name"]: v for v in versions}
    out = [
        (
            f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="model lineage" xmlns="http://www.w3.org/2000/svg">'
        )
    ]
    for e in edges:
        if e["from"] in pos and e["to"] in pos:
            (ax, ay), (bx, by) = pos[e["from"]], pos[e["to"]]
            x1, y1, x2, y2 = ax + box_w, ay + box_h / 2, bx, by + box_h / 2
            mx = (x1 + x2) / 2
            out.append(
                f'<path d="M{x1},{y1} C{mx},{y1} {mx},{y2} {x2 - 4},{y2}" class="edge" marker-end="url(#arrow)"/>'
            )
    out.insert(
        1,
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#7f8c8d"/></marker></defs>',
    )
    for n, (x, y) in pos.items():
        v = by_name[n]
        aliases = v.get("aliases") or []
        cls = (
            "node prod"
            if any(
                a.endswith("production") or ":production" in a or a.startswith("production") for a in aliases
            )
            else "node"
        )
        name = n if len(n) <= 26 else n[:12] + "…" + n[-12:]
        sub = ", ".join(aliases) or v.get("kind", "")
        out.append(
            f'<a href="#v-{escape(n)}"><g class="{cls}"><title>{escape(n)}</title>'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6"/>'
            f'<text x="{x + 8}" y="{y + 18}" class="node-name">{escape(name)}</text>'
            f'<text x="{x + 8}" y="{y + 35}" class="node-sub">{escape(sub[:34])}</text></g></a>'
        )
    out.append("</svg>")
    return "".join(out)
