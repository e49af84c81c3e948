"""Every docstring example in the package runs: a module with ``>>>`` is found by scanning, so a new doctest
can never be silently left out of the tests."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "tools", "workflows")


def _modules_with_doctests() -> list[str]:
    names = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                rel = path.relative_to(ROOT).with_suffix("")
                parts = [p for p in rel.parts if p != "__init__"]
                names.append(".".join(["kaizen", *parts]))
    return names


MODULES = _modules_with_doctests()


def test_the_scan_finds_the_known_doctests() -> None:
    assert {"kaizen.agent.nodes.plan", "kaizen.agent.nodes.refit", "kaizen.tools.gate"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has '>>>' but no doctest ran"
    assert result.failed == 0
