"""The house rules of the layout, checked on the source tree.

* Every module is imported under the ``kaizen.`` namespace: a bare ``import tools`` (or a string such as
  ``-m tools.train.runner``) would break as soon as another installed package is called ``tools``.
* Dependencies point one way, ``workflows → agent → tools``, and the rooms of ``workflows/`` import only the
  rooms listed for them (the import-linter idea, done with ``ast`` so it needs no extra dependency).
* ``pyproject.toml`` lists every package folder, so the wheel is never missing one.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("agent", "tools", "workflows")
BARE = re.compile(r"^(agent|tools|workflows)(\.|$)")
# A module path written in a string: "-m tools.train.runner", "workflows.cli", patch targets …
BARE_IN_STRING = re.compile(r"(?<![\w./-])(?:-m\s+)?(agent|tools|workflows)\.[a-z_]+(\.[a-z_]+)*(?![\w/])")

# Which rooms of workflows/ each room may import (besides kaizen.tools and kaizen.agent where listed).
# A room that is not here fails the test: adding a room means deciding what it may know.
ROOM_DEPS: dict[str, set[str]] = {
    "cli": {"*"},
    "repair": {"agent", "tools", "report"},
    "cold_start": {"agent", "tools", "report"},
    "schedule": {"tools", "repair"},
    "serve": {"tools"},
    "report": {"tools"},
    "bench": {"agent", "tools", "repair", "serve", "report"},
    "ui": {"tools", "report"},
}


def _py_files(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative imports resolved to absolute names."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _room(path: Path) -> tuple[str, str | None]:
    """('tools'|'agent'|'workflows', room of workflows or None) for a file under the code folders."""
    parts = path.relative_to(ROOT).parts
    return parts[0], (parts[1] if parts[0] == "workflows" and len(parts) > 2 else None)


def test_no_bare_top_level_imports() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line}: import {mod}"
        for p in _py_files(*CODE_DIRS, "tests", "examples")
        for line, mod in _imports(p)
        if BARE.match(mod)
    ]
    assert not bad, "import through the kaizen namespace (kaizen.tools …):\n" + "\n".join(bad)


def test_no_bare_module_paths_in_strings() -> None:
    bad = []
    for p in _py_files(*CODE_DIRS, "tests", "examples"):
        if p.name == Path(__file__).name:
            continue  # this file's own examples of what is refused
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" not in node.value:
                for m in BARE_IN_STRING.finditer(node.value):
                    if not node.value[max(0, m.start() - 7) : m.start()].endswith("kaizen."):
                        bad.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not bad, "module paths in strings must start with kaizen.:\n" + "\n".join(bad)


def test_layers_point_one_way() -> None:
    """tools never imports agent or workflows; agent never imports workflows."""
    forbidden = {"tools": ("kaizen.agent", "kaizen.workflows"), "agent": ("kaizen.workflows",)}
    bad = []
    for p in _py_files("tools", "agent"):
        layer, _ = _room(p)
        bad += [
            f"{p.relative_to(ROOT)}:{line}: {mod}"
            for line, mod in _imports(p)
            if any(mod == f or mod.startswith(f + ".") for f in forbidden[layer])
        ]
    assert not bad, "workflows → agent → tools, never back:\n" + "\n".join(bad)


def test_workflow_rooms_import_only_what_they_may() -> None:
    bad = []
    for p in _py_files("workflows"):
        _, room = _room(p)
        if room is None:
            continue
        assert room in ROOM_DEPS, (
            f"workflows/{room}/ is a new room: add it to ROOM_DEPS with what it may import"
        )
        allowed = ROOM_DEPS[room]
        for line, mod in _imports(p):
            parts = mod.split(".")
            if parts[0] != "kaizen" or len(parts) < 2:
                continue
            target = parts[2] if parts[1] == "workflows" and len(parts) > 2 else parts[1]
            if target != room and "*" not in allowed and target not in allowed:
                bad.append(
                    f"{p.relative_to(ROOT)}:{line}: {mod} (workflows/{room} may import {sorted(allowed)})"
                )
    assert not bad, "\n".join(bad)


def test_pyproject_lists_every_package() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {
        "kaizen." + ".".join(p.parent.relative_to(ROOT).parts)
        for p in _py_files(*CODE_DIRS)
        if p.name == "__init__.py"
    }
    assert listed == on_disk, (
        f"missing from pyproject: {sorted(on_disk - listed)}; stale: {sorted(listed - on_disk)}"
    )
    assert cfg["package-dir"] == {f"kaizen.{d}": d for d in CODE_DIRS}


@pytest.mark.parametrize(
    "bad", ["import tools.lock", "from agent import graph", "from workflows.cli import main"]
)
def test_the_bare_import_check_can_fail(tmp_path: Path, bad: str) -> None:
    f = tmp_path / "x.py"
    f.write_text(bad + "\n")
    assert any(BARE.match(mod) for _, mod in _imports(f))


def test_the_string_check_can_fail() -> None:
    assert BARE_IN_STRING.search("python -m tools.train.runner job.json")
    assert not BARE_IN_STRING.search("see kaizen.tools.train.runner")  # the caller checks the kaizen. prefix
    assert not BARE_IN_STRING.search("agent/nodes/train.py")
