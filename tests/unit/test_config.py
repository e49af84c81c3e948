"""Settings (kaizen.yaml): defaults, validation messages that name the field and the fix, the
generated template, and tasks declared in kaizen.yaml reaching the store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kaizen.tools.config import Settings, load_settings, settings_template
from kaizen.tools.errors import ConfigError
from kaizen.tools.workspace import find_workspace, init_workspace


def write_yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "kaizen.yaml"
    p.write_text(text)
    return p


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as ei:
        load_settings(path)
    msg = str(ei.value)
    assert "\n" not in msg, "a config error is one line"
    assert str(path) in msg, "a config error names the file"
    return msg


# --- defaults and the template ------------------------------------------------------------------


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "absent.yaml")
    assert s == Settings()
    assert s.model.base == "smollm2-135m"
    assert (s.model.device, s.model.dtype) == ("auto", "auto")
    # gate defaults come from the workflow's preset (tools.gate); only overrides live here
    assert s.budget.max_iterations == 3
    assert s.brain.kind == "rule" and s.brain.model is None
    assert s.tasks == []


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write_yaml(tmp_path, "")) == Settings()
    assert load_settings(write_yaml(tmp_path, "# only a comment\n")) == Settings()


def test_template_round_trips_to_defaults(tmp_path: Path) -> None:
    text = settings_template()
    assert load_settings(write_yaml(tmp_path, text)) == Settings()
    # every leaf option appears with its explanation (descriptions are the only documentation)
    for section in ("model", "gate", "budget", "brain"):
        assert re.search(rf"^{section}:$", text, re.M), section
        model = type(getattr(Settings(), section))
        for name, field in model.model_fields.items():
            assert re.search(rf"^  {name}: ", text, re.M), f"{section}.{name} missing from template"
            assert field.description and f"# {field.description}" in text


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    s = load_settings(write_yaml(tmp_path, "gate:\n  max_new_regressions: 0\nmodel: {device: cpu}\n"))
    assert s.gate.max_new_regressions == 0
    assert s.gate.min_score == Settings().gate.min_score
    assert s.model.device == "cpu" and s.model.base == "smollm2-135m"


# --- errors name the field and the fix ----------------------------------------------------------


def test_invalid_value_names_field_and_bound(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "gate: {max_new_regressions: -1}\n"))
    assert "gate.max_new_regressions" in msg
    assert "greater than or equal to 0" in msg


def test_invalid_literal_lists_choices(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "model:\n  device: tpu\n"))
    assert "model.device" in msg
    assert "'cpu'" in msg and "'cuda'" in msg


@pytest.mark.parametrize(
    ("text", "field"),
    [("gate: {max_regresions: 1}\n", "gate.max_regresions"), ("colour: red\n", "colour")],
)
def test_unknown_key_is_an_error(tmp_path: Path, text: str, field: str) -> None:
    msg = config_error(write_yaml(tmp_path, text))
    assert field in msg
    assert "unknown setting" in msg


def test_invalid_yaml_gives_file_and_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "model:\n  base: x\ngate:\n\tmin_score: 0.5\n")
    msg = config_error(path)
    assert re.search(rf"{re.escape(str(path))}:\d+: invalid YAML", msg), msg
    assert msg.startswith(f"{path}:4:")


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "- model\n- gate\n"))
    assert "expected a mapping" in msg


def test_llm_brain_needs_a_model(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "brain: {kind: llm}\n"))
    assert "brain.model" in msg
    assert "Value error" not in msg  # pydantic's prefix is noise in a one-line message
    ok = load_settings(
        write_yaml(tmp_path, "brain: {kind: llm, model: qwen, base_url: 'http://127.0.0.1:8000/v1'}\n")
    )
    assert ok.brain.model == "qwen"


def test_duplicate_task_names_refused(tmp_path: Path) -> None:
    text = "tasks:\n  - {name: intents, kind: math}\n  - {name: intents, kind: code}\n"
    msg = config_error(write_yaml(tmp_path, text))
    assert "unique" in msg and "intents" in msg


def test_invalid_task_field_named(tmp_path: Path) -> None:
    msg = config_error(write_yaml(tmp_path, "tasks:\n  - {name: a, kind: poetry}\n"))
    assert "tasks.0.kind" in msg
    msg = config_error(write_yaml(tmp_path, "tasks:\n  - {name: a, kind: math, colour: red}\n"))
    assert "tasks.0.colour" in msg and "unknown setting" in msg


# --- workspace: declared tasks reach the store, env overrides -------------------------------------


def declare(tmp_path: Path, tasks: list[dict]) -> None:
    """Set ``tasks:`` in kaizen.yaml (replacing the block: a key given twice is refused)."""
    path = tmp_path / "kaizen.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    path.write_text(yaml.safe_dump(data | {"tasks": tasks}))


def test_declared_tasks_synced_into_store(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    declare(
        tmp_path,
        [
            {"name": "intents", "kind": "classification", "labels": ["a", "b"], "description": "route"},
            {"name": "sums", "kind": "math"},
        ],
    )
    ws = find_workspace(tmp_path)
    store = ws.store
    tasks = {spec.name: (spec, src) for spec, src in store.list_tasks()}
    assert set(tasks) == {"intents", "sums"}
    spec, src = tasks["intents"]
    assert src == "kaizen.yaml"
    assert spec.labels == ["a", "b"] and spec.description == "route"
    assert store.get_alias("intents", "production").model_version == "base"
    store.close()

    # opening the workspace again is idempotent, and edits in kaizen.yaml win
    declare(
        tmp_path,
        [
            {
                "name": "intents",
                "kind": "classification",
                "labels": ["a", "b", "c"],
                "description": "route v2",
            },
            {"name": "sums", "kind": "math"},
        ],
    )
    ws2 = find_workspace(tmp_path)
    spec = ws2.store.get_task("intents")
    assert spec.labels == ["a", "b", "c"] and spec.description == "route v2"
    assert len(ws2.store.list_tasks()) == 2
    assert len(ws2.store.alias_history("intents")) == 1  # the init event only, not one per open
    ws2.store.close()


def test_init_refuses_invalid_settings_before_touching_the_db(tmp_path: Path) -> None:
    write_yaml(tmp_path, "gate: {max_new_regressions: -1}\n")
    with pytest.raises(ConfigError, match="gate.max_new_regressions"):
        init_workspace(tmp_path)
    assert not (tmp_path / ".kaizen" / "kaizen.db").exists()


def test_db_url_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("KAIZEN_DB_URL", f"sqlite:///{other}")
    ws, _ = init_workspace(tmp_path / "ws")
    assert ws.db_url == f"sqlite:///{other}"
    assert other.exists()
    assert not (tmp_path / "ws" / ".kaizen" / "kaizen.db").exists()
    assert find_workspace(tmp_path / "ws").store.get_model_version("base").kind == "base"
