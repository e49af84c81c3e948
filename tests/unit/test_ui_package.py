"""The dashboard ships whole and works offline: every template and static file is package data, none loads from elsewhere."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "workflows" / "ui"
EXTERNAL = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|fetch\(\s*["']https?:""",
    re.IGNORECASE,
)


def _assets() -> list[Path]:
    return sorted(p for d in ("templates", "static") for p in (UI / d).rglob("*") if p.is_file())


def test_every_template_and_static_file_is_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "kaizen.workflows.ui"
    ]
    files = _assets()
    assert any(p.suffix == ".html" for p in files) and any(p.suffix == ".js" for p in files)
    missing = [
        str(p.relative_to(UI))
        for p in files
        if not any(fnmatch.fnmatch(str(p.relative_to(UI)), g) for g in globs)
    ]
    assert not missing, f"not in [tool.setuptools.package-data] for kaizen.workflows.ui: {missing}"


def test_no_asset_is_fetched_from_another_host() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in _assets()
        for m in EXTERNAL.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not bad, "the dashboard must work offline (no CDN):\n" + "\n".join(bad)


def test_the_external_check_can_fail() -> None:
    for html in (
        '<script src="https://cdn.example/htmx.js">',
        "<link href='//fonts.example/x.css'>",
        "@import url(x.css)",
        'fetch("https://api.example")',
    ):
        assert EXTERNAL.search(html), html
    assert not EXTERNAL.search('<script src="/static/kaizen.js"></script>')
