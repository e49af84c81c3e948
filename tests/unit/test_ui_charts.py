"""The dashboard's server-drawn SVG: tick labels that stay apart, escaped text, lineage edges."""

from __future__ import annotations

import re

from kaizen.workflows.ui.charts import line_chart, lineage_graph


def _ticks(svg: str) -> list[str]:
    return re.findall(r'class="tick" text-anchor="end">([^<]*)<', svg)


def test_y_ticks_stay_distinct_on_a_narrow_range_and_x_ticks_are_integers() -> None:
    svg = line_chart([{"name": "entropy", "x": [1, 2, 3, 30], "y": [10.79001, 10.78998, 10.78995, 10.78990]}])
    ys = _ticks(svg)
    assert len(ys) == len(set(ys)) >= 3, ys
    xs = re.findall(r'class="tick" text-anchor="middle">([^<]*)<', svg)
    assert xs and all(x.isdigit() for x in xs), xs
    assert line_chart([{"name": "empty", "x": [], "y": []}]) == ""
    assert "<circle" in line_chart([{"x": [0, 1], "y": [None, 0.5]}])  # a None is a gap, not an error


def test_text_is_escaped_and_lineage_draws_parent_to_child() -> None:
    svg = line_chart(
        [{"name": "<b>x</b>", "x": [0, 1], "y": [0, 1]}, {"name": "y", "x": [0, 1], "y": [1, 0]}], title="a<b"
    )
    assert "<b>" not in svg and "a&lt;b" in svg
    versions = [
        {"name": "base", "kind": "base", "aliases": ["previous"]},
        {"name": "v1<script>", "kind": "adapter", "aliases": ["production"]},
    ]
    g = lineage_graph(versions, [{"from": "base", "to": "v1<script>"}])
    assert g.count('class="edge"') == 1 and "<script>" not in g and 'class="node prod"' in g
    assert lineage_graph([], []) == ""
