"""Every ``KAIZEN_*`` variable the code reads is a field of the one settings object and a row of the
README's table; values are read when used and a bad one is a one-line error naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kaizen.tools.env import Env, env
from kaizen.tools.errors import ConfigError
from kaizen.tools.workspace import find_workspace, init_workspace

ROOT = Path(__file__).resolve().parents[2]
TEST_SUITE_ONLY = {"KAIZEN_REQUIRE_VLLM", "KAIZEN_RUN_BENCH"}


def fields() -> set[str]:
    return {"KAIZEN_" + name.upper() for name in Env.model_fields}


def test_every_variable_in_the_code_is_a_field_and_documented() -> None:
    used = set()
    for folder in ("agent", "tools", "workflows"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"KAIZEN_[A-Z][A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert used - fields() == set(), "read outside tools/env.Env: add a field there (and a README row)"
    readme = (ROOT / "README.md").read_text()
    assert {v for v in fields() | TEST_SUITE_ONLY if f"`{v}" not in readme} == set()
    # …and nothing reads them behind the settings object's back.
    direct = [
        str(p.relative_to(ROOT))
        for folder in ("agent", "tools", "workflows")
        for p in (ROOT / folder).rglob("*.py")
        if re.search(r"environ(\.get)?[\[(]\s*[\"']KAIZEN_|getenv\(\s*[\"']KAIZEN_", p.read_text())
    ]
    assert direct == []


def test_values_are_read_when_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _ = init_workspace(tmp_path / "proj")
    monkeypatch.setenv("KAIZEN_HOME", str(ws.state))
    monkeypatch.chdir(tmp_path)
    assert find_workspace().state == ws.state
    monkeypatch.setenv("KAIZEN_HOME", "")  # empty = unset
    with pytest.raises(Exception, match="no kaizen workspace"):
        find_workspace()
    monkeypatch.setenv("KAIZEN_HOST_ID", "rack-7")
    assert env().host_id == "rack-7"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("KAIZEN_VLLM_ENGINE", "turbo"),
        ("KAIZEN_LOCK_STALE_AFTER_S", "-1"),
        ("KAIZEN_SERVE_ACCESS_LOG", "maybe"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        env()
