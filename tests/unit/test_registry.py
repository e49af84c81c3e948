"""The model registry: promote/rollback with an append-only alias history, and registering models
users already deploy (a LoRA adapter directory or a full model directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_files import write_adapter, write_safetensors

from kaizen.tools import registry
from kaizen.tools.errors import ConfigError, ModelError, NotFoundError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import Store
from kaizen.tools.store.tables import ModelVersionRow
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.cli.main import main


@pytest.fixture
def ws_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ws"
    init_workspace(d)
    return d


@pytest.fixture
def store(ws_dir: Path) -> Store:
    s = Store(f"sqlite:///{ws_dir / '.kaizen' / 'kaizen.db'}")
    s.add_task(TaskSpec(name="intents", kind="classification", labels=["a", "b"]))
    for name in ("v1", "v2"):
        s.add_model_version(
            ModelVersionRow(
                name=name,
                kind="adapter",
                base_ref="base",
                parent="base",
                task="intents",
                adapter_path=f"/nowhere/{name}",
                recipe={"kind": "sft"},
            )
        )
    yield s
    s.close()


def prod_prev(store: Store, task: str = "intents") -> tuple[str | None, str | None]:
    a = store.aliases(task)
    return (
        a["production"].model_version if "production" in a else None,
        a["previous"].model_version if "previous" in a else None,
    )


def history(store: Store, task: str = "intents") -> list[tuple]:
    return [(e.id, e.alias, e.model_version, e.action) for e in store.alias_history(task)]


def adapter_dir(tmp_path: Path, name: str = "adapter", peft_type: str = "LORA", weights: bool = True) -> Path:
    d = write_adapter(
        tmp_path / name, peft_type=peft_type
    )  # a real LoRA header for the embedded base's shapes
    if not weights:
        (d / "adapter_model.safetensors").unlink()
    return d


def full_model_dir(tmp_path: Path, name: str = "full") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    write_safetensors(d / "model.safetensors", {"model.embed_tokens.weight": [4, 2]})
    return d


# --- promote / rollback -------------------------------------------------------------------------


def test_promote_moves_production_and_keeps_previous(store: Store) -> None:
    assert prod_prev(store) == ("base", None)
    assert registry.promote(store, "intents", "v1", actor="me", note="first") == ("base", "v1")
    assert prod_prev(store) == ("v1", "base")
    last = store.alias_history("intents")[-2:]
    assert {(e.alias, e.model_version, e.action, e.actor, e.note) for e in last} == {
        ("production", "v1", "promote", "me", "first"),
        ("previous", "base", "promote", "me", "first"),
    }
    assert registry.promote(store, "intents", "v2") == ("v1", "v2")
    assert prod_prev(store) == ("v2", "v1")


def test_rollback_swaps_back(store: Store) -> None:
    registry.promote(store, "intents", "v1")
    assert registry.rollback(store, "intents") == ("v1", "base")
    assert prod_prev(store) == ("base", "v1")
    assert store.alias_history("intents")[-1].action == "rollback"


def test_round_trip_promote_rollback_promote(store: Store) -> None:
    registry.promote(store, "intents", "v1")
    registry.rollback(store, "intents")
    registry.rollback(store, "intents")  # rolling back a rollback restores the promotion
    assert prod_prev(store) == ("v1", "base")
    registry.rollback(store, "intents")
    assert registry.promote(store, "intents", "v1") == ("base", "v1")
    assert prod_prev(store) == ("v1", "base")
    assert registry.resolve(store, "production", "intents").name == "v1"
    assert registry.resolve(store, "previous", "intents").name == "base"


def test_alias_history_is_append_only(store: Store) -> None:
    seen = history(store)
    assert [h[1:] for h in seen] == [("production", "base", "init")]
    for step in (
        lambda: registry.promote(store, "intents", "v1"),
        lambda: registry.promote(store, "intents", "v2"),
        lambda: registry.rollback(store, "intents"),
        lambda: registry.promote(store, "intents", "v2"),
    ):
        step()
        now = history(store)
        assert len(now) > len(seen)
        assert now[: len(seen)] == seen, "earlier events must never change or disappear"
        seen = now
    assert len(seen) == 1 + 4 * 2


def test_promoting_current_production_is_a_noop(store: Store) -> None:
    registry.promote(store, "intents", "v1")
    before_hist, before = history(store), prod_prev(store)
    assert registry.promote(store, "intents", "v1") == ("v1", "v1")
    assert history(store) == before_hist
    assert prod_prev(store) == before == ("v1", "base")


def test_rollback_without_previous_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no previous version"):
        registry.rollback(store, "intents")
    assert prod_prev(store) == ("base", None)


def test_promote_unknown_version_or_task(store: Store) -> None:
    with pytest.raises(NotFoundError, match="'v9'"):
        registry.promote(store, "intents", "v9")
    with pytest.raises(NotFoundError, match="unknown task 'nope'"):
        registry.promote(store, "nope", "v1")
    assert prod_prev(store) == ("base", None)


def test_resolve(store: Store) -> None:
    assert registry.resolve(store, "v1").name == "v1"
    assert registry.resolve(store, "production", "intents").name == "base"
    with pytest.raises(NotFoundError, match="--task"):
        registry.resolve(store, "production")
    with pytest.raises(NotFoundError, match="no 'candidate' version"):
        registry.resolve(store, "candidate", "intents")
    assert registry.base_of(store, store.get_model_version("v1")).name == "base"


def test_aliases_are_per_task(store: Store) -> None:
    store.add_task(TaskSpec(name="sums", kind="math"))
    registry.promote(store, "intents", "v1")
    assert prod_prev(store, "sums") == ("base", None)


# --- registering external models ----------------------------------------------------------------


def test_add_external_adapter(store: Store, tmp_path: Path) -> None:
    d = adapter_dir(tmp_path)
    row = registry.add_external(store, "incumbent", d, task="intents", note="from prod")
    assert (row.kind, row.base_ref, row.parent, row.task) == ("adapter", "base", "base", "intents")
    assert row.adapter_path == str(d.resolve())
    assert row.recipe == {"source": "external", "note": "from prod"}
    stored = store.get_model_version("incumbent")
    assert stored.adapter_path == str(d.resolve())
    assert registry.base_of(store, stored).name == "base"


def test_add_external_full_model_becomes_a_base(store: Store, tmp_path: Path) -> None:
    d = full_model_dir(tmp_path)
    row = registry.add_external(store, "my-base", d)
    assert (row.kind, row.base_ref, row.adapter_path) == ("base", str(d.resolve()), None)
    # an adapter can then sit on it
    registry.add_external(store, "on-my-base", adapter_dir(tmp_path), base="my-base")
    assert registry.base_of(store, store.get_model_version("on-my-base")).name == "my-base"


def test_add_external_refuses_bad_dirs(store: Store, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="neither adapter_config.json"):
        registry.add_external(store, "x", empty)
    with pytest.raises(ModelError, match="not a directory"):
        registry.add_external(store, "x", tmp_path / "missing")
    with pytest.raises(ModelError, match="no adapter weights"):
        registry.add_external(store, "x", adapter_dir(tmp_path, "noweights", weights=False))
    with pytest.raises(ModelError, match="only LoRA"):
        registry.add_external(store, "x", adapter_dir(tmp_path, "ia3", peft_type="IA3"))
    good = adapter_dir(tmp_path, "good")
    with pytest.raises(ModelError, match="itself an adapter"):
        registry.add_external(store, "x", good, base="v1")  # at most one adapter per version
    with pytest.raises(NotFoundError, match="'nobase'"):
        registry.add_external(store, "x", good, base="nobase")
    for bad_name in ("production", "has space", ""):
        with pytest.raises(ModelError, match="invalid version name"):
            registry.add_external(store, bad_name, good)
    with pytest.raises(NotFoundError, match="unknown task"):
        registry.add_external(store, "x", good, task="nope")
    with pytest.raises(ConfigError, match="already exists"):
        registry.add_external(store, "v1", good)
    assert [v.name for v in store.list_model_versions()] == ["base", "v1", "v2"]


# --- through the CLI ----------------------------------------------------------------------------


def test_cli_models_add_promote(
    store: Store, ws_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = adapter_dir(tmp_path)
    w = ["--workspace", str(ws_dir)]

    # --promote without --task: refused before anything is registered
    assert main([*w, "models", "add", "incumbent", "--path", str(d), "--promote"]) != 0
    assert "--promote needs --task" in capsys.readouterr().err
    with pytest.raises(NotFoundError):
        store.get_model_version("incumbent")

    assert (
        main([*w, "models", "add", "incumbent", "--path", str(d), "--task", "intents", "--promote", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert (out["name"], out["kind"], out["promoted"]) == ("incumbent", "adapter", True)
    assert prod_prev(store) == ("incumbent", "base")

    assert main([*w, "models", "list", "--task", "intents", "--json"]) == 0
    listed = {v["name"]: v["aliases"] for v in json.loads(capsys.readouterr().out)}
    assert listed["incumbent"] == ["production"] and listed["base"] == ["previous"]

    assert main([*w, "models", "rollback", "--task", "intents", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "task": "intents",
        "production": "base",
        "previous": "incumbent",
    }
    assert main([*w, "models", "promote", "incumbent", "--task", "intents", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["production"] == "incumbent"
    assert main([*w, "models", "show", "production", "--task", "intents", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "incumbent"

    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert main([*w, "models", "add", "bad", "--path", str(nothing)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "neither adapter_config.json" in err
