"""Unit-test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests make their own workspaces: a KAIZEN_HOME/KAIZEN_DB_URL from the shell must not leak in."""
    monkeypatch.delenv("KAIZEN_HOME", raising=False)
    monkeypatch.delenv("KAIZEN_DB_URL", raising=False)
