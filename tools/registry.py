"""The model registry: versions with lineage, per-task aliases, promote and rollback.

A version is (base model, at most one LoRA adapter). Aliases are per task — ``production``,
``previous``, ``candidate`` — and every move is recorded in ``alias_event``; history is never
deleted, so any earlier state can be restored by promoting its version again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kaizen.tools.errors import ModelError, NotFoundError
from kaizen.tools.store import Store
from kaizen.tools.store.tables import ModelVersionRow

ALIASES = ("production", "previous", "candidate")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def resolve(store: Store, ref: str, task: str | None = None) -> ModelVersionRow:
    """A version name, or an alias of ``task`` (``production`` …), to its version row."""
    if ref in ALIASES:
        if not task:
            raise NotFoundError(f"{ref!r} is a per-task alias: pass --task NAME")
        store.get_task(task)
        alias = store.get_alias(task, ref)
        if alias is None:
            raise NotFoundError(f"task {task!r} has no {ref!r} version yet")
        return store.get_model_version(alias.model_version)
    return store.get_model_version(ref)


def base_of(store: Store, version: ModelVersionRow) -> ModelVersionRow:
    """The base version under ``version`` (itself when it is a base)."""
    return version if version.kind == "base" else store.get_model_version(version.base_ref)


def promote(store: Store, task: str, version: str, *, actor: str = "", note: str = "", skill: int | None = None) -> tuple[str, str]:
    """Point ``production`` at ``version``; the old production becomes ``previous``.

    Returns (old, new). Promoting the version already in production is a no-op that still records
    nothing new, so re-running a promote step is safe.
    """
    store.get_task(task)
    store.get_model_version(version)
    cur = store.get_alias(task, "production")
    if cur is not None and cur.model_version == version and cur.skill_version == skill:
        return version, version
    changes = {"production": (version, skill)}
    if cur is not None:
        changes["previous"] = (cur.model_version, cur.skill_version)
    store.set_aliases(task, changes, action="promote", actor=actor, note=note)
    return (cur.model_version if cur else ""), version


def rollback(store: Store, task: str, *, actor: str = "", note: str = "") -> tuple[str, str]:
    """Swap ``production`` and ``previous``. Returns (old production, new production)."""
    store.get_task(task)
    cur, prev = store.get_alias(task, "production"), store.get_alias(task, "previous")
    if cur is None or prev is None:
        raise NotFoundError(f"task {task!r} has no previous version to roll back to")
    store.set_aliases(
        task,
        {"production": (prev.model_version, prev.skill_version), "previous": (cur.model_version, cur.skill_version)},
        action="rollback",
        actor=actor,
        note=note,
    )
    return cur.model_version, prev.model_version


def classify_model_dir(path: Path) -> str:
    """``adapter`` for a PEFT adapter directory, ``base`` for a full model directory."""
    if not path.is_dir():
        raise ModelError(f"{path} is not a directory: pass the folder holding the adapter or model")
    if (path / "adapter_config.json").exists():
        return "adapter"
    if (path / "config.json").exists():
        return "base"
    raise ModelError(f"{path} holds neither adapter_config.json (LoRA adapter) nor config.json (full model)")


def add_external(
    store: Store,
    name: str,
    path: Path,
    *,
    base: str = "base",
    task: str | None = None,
    note: str = "",
) -> ModelVersionRow:
    """Register a model users already deploy: an adapter on a registered base, or a full model."""
    if not _NAME.match(name) or name in ALIASES:
        raise ModelError(f"invalid version name {name!r}: letters, digits, _ . - (not an alias name)")
    path = path.resolve()
    kind = classify_model_dir(path)
    if task:
        store.get_task(task)
    if kind == "adapter":
        base_row = store.get_model_version(base)
        if base_row.kind != "base":
            raise ModelError(
                f"--base {base!r} is itself an adapter version: a version holds at most one adapter, "
                f"pass its base instead (--base {base_row.base_ref})"
            )
        if not any((path / f).exists() for f in _ADAPTER_WEIGHTS):
            raise ModelError(f"{path} has adapter_config.json but no adapter weights ({' or '.join(_ADAPTER_WEIGHTS)})")
        try:
            cfg = json.loads((path / "adapter_config.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"{path / 'adapter_config.json'}: cannot read it as JSON: {e}") from None
        if not isinstance(cfg, dict):
            raise ModelError(f"{path / 'adapter_config.json'}: expected a JSON object")
        if cfg.get("peft_type", "LORA") != "LORA":
            raise ModelError(f"{path}: only LoRA adapters are supported (found {cfg.get('peft_type')})")
        row = ModelVersionRow(name=name, kind="adapter", base_ref=base, adapter_path=str(path), parent=base, task=task,
                              recipe={"source": "external", "note": note})
    else:
        row = ModelVersionRow(name=name, kind="base", base_ref=str(path), task=task, recipe={"source": "external", "note": note})
    return store.add_model_version(row)
