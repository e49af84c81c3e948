"""The model registry: versions with lineage, per-task aliases, promote and rollback.

A version is (base model, at most one LoRA adapter). Aliases are per task — ``production``,
``previous``, ``candidate`` — and every move is recorded in ``alias_event``; history is never
deleted, so any earlier state can be restored by promoting its version again.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ModelError, NotFoundError
from kaizen.tools.store import Store
from kaizen.tools.store.tables import ModelVersionRow
from kaizen.tools.train.spec import MAX_LORA_RANK

log = logging.getLogger(__name__)

ALIASES = ("production", "previous", "candidate")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_HEADER = 100 * 1024 * 1024  # safetensors refuses headers above 100 MB too
_LORA_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\..*?\.?(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


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


def promote(
    store: Store, task: str, version: str, *, actor: str = "", note: str = "", skill: int | None = None
) -> tuple[str, str]:
    """Point ``production`` at ``version``; the old production becomes ``previous``.

    Returns (old, new). Promoting the version already in production is a no-op that still records
    nothing new, so re-running a promote step is safe.
    """
    check_promotable(store, task, version)
    cur = store.get_alias(task, "production")
    if cur is not None and cur.model_version == version and cur.skill_version == skill:
        return version, version
    changes = {"production": (version, skill)}
    if cur is not None:
        changes["previous"] = (cur.model_version, cur.skill_version)
    store.set_aliases(task, changes, action="promote", actor=actor, note=note)
    return (cur.model_version if cur else ""), version


def check_promotable(store: Store, task: str, version: str) -> ModelVersionRow:
    """The version row, if ``version`` may become ``task``'s production; else a ``ModelError`` saying why.

    A version registered or trained for another task is refused: its labels, prompt and data are
    that task's, and promoting it here would silently serve the wrong model.
    """
    store.get_task(task)
    row = store.get_model_version(version)
    if row.task is not None and row.task != task:
        raise ModelError(
            f"version {version!r} belongs to task {row.task!r}, not {task!r}: promote one of {task!r}'s versions "
            f"(`kaizen models list --task {task}`), or register the model for {task!r} with "
            f"`kaizen models add NAME --path DIR --task {task}`"
        )
    return row


def rollback(store: Store, task: str, *, actor: str = "", note: str = "") -> tuple[str, str]:
    """Swap ``production`` and ``previous``. Returns (old production, new production)."""
    store.get_task(task)
    cur, prev = store.get_alias(task, "production"), store.get_alias(task, "previous")
    if cur is None or prev is None:
        raise NotFoundError(f"task {task!r} has no previous version to roll back to")
    store.set_aliases(
        task,
        {
            "production": (prev.model_version, prev.skill_version),
            "previous": (cur.model_version, cur.skill_version),
        },
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
    """Register a model users already deploy: an adapter on a registered base, or a full model.

    Everything is checked before anything is registered: the configs parse, the weights' headers
    load, and an adapter is a LoRA adapter of rank ≤ ``MAX_LORA_RANK`` (what ``kaizen serve`` can
    load) whose tensor shapes fit ``base`` — and ``base`` is the base the task runs on.

    Raises:
        ModelError: What does not fit, and what to do about it.
        NotFoundError: An unknown task or base version.
    """
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
        if task:
            _check_task_base(store, task, base_row)
        validate_adapter(path, base_row)
        row = ModelVersionRow(
            name=name,
            kind="adapter",
            base_ref=base,
            adapter_path=str(path),
            parent=base,
            task=task,
            recipe={"source": "external", "note": note},
        )
    else:
        validate_full_model(path)
        row = ModelVersionRow(
            name=name, kind="base", base_ref=str(path), task=task, recipe={"source": "external", "note": note}
        )
    return store.add_model_version(row)


def _check_task_base(store: Store, task: str, base_row: ModelVersionRow) -> None:
    prod = store.get_alias(task, "production")
    if prod is None:
        return
    task_base = base_of(store, store.get_model_version(prod.model_version))
    if task_base.name != base_row.name:
        raise ModelError(
            f"task {task!r} runs on base {task_base.name!r} (its production is {prod.model_version!r}), but "
            f"this adapter would sit on {base_row.name!r}: pass --base {task_base.name} if it was trained on "
            "that base, or register it without --task"
        )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(
            f"{path}: cannot read it as JSON ({e}): the {what} is damaged; re-export it"
        ) from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: expected a JSON object: the {what} is damaged; re-export it")
    return cfg


def safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensor table of a safetensors file (name → dtype, shape, data_offsets), read without the tensors.

    Raises:
        ModelError: The file is not a (complete) safetensors file.
    """
    bad = f"{path}: not a valid safetensors file"
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(size - 8, _MAX_HEADER):
                raise ModelError(
                    f"{bad} (its header length does not fit a {size}-byte file): the file is damaged or "
                    "is not safetensors; re-export the weights"
                )
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as e:
        raise ModelError(f"{path}: cannot read it: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelError(
            f"{bad} (its header is not JSON): the file is damaged; re-export the weights"
        ) from None
    if not isinstance(header, dict):
        raise ModelError(f"{bad} (its header is not a JSON object)")
    data = size - 8 - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for k, v in tensors.items():
        ok = (
            isinstance(v, dict)
            and isinstance(v.get("shape"), list)
            and all(isinstance(x, int) and x >= 0 for x in v["shape"])
            and isinstance(v.get("data_offsets"), list)
            and len(v["data_offsets"]) == 2
            and all(isinstance(x, int) for x in v["data_offsets"])
            and 0 <= v["data_offsets"][0] <= v["data_offsets"][1] <= data
        )
        if not ok:
            raise ModelError(
                f"{bad} (tensor {k!r} has no valid shape/offsets, or the file is cut short): re-export the weights"
            )
    return tensors


def _check_bin(path: Path) -> None:
    """A ``.bin`` checkpoint must be torch's zip format (loading it would run pickle: that waits for use)."""
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path}: not a PyTorch checkpoint (not torch's zip format): the file is damaged; re-export "
            "the weights, preferably as safetensors"
        )


def validate_adapter(path: Path, base_row: ModelVersionRow) -> dict[str, Any]:
    """Check a LoRA adapter directory against its base before it is registered; returns its config.

    Checks that ``adapter_config.json`` is a LoRA config, that the weights load (safetensors header,
    or torch's zip format for ``.bin``), that the rank is servable (≤ ``MAX_LORA_RANK``), and that
    every LoRA tensor's shape fits the base model's layers.
    """
    weights = [path / f for f in _ADAPTER_WEIGHTS if (path / f).exists()]
    if not weights:
        raise ModelError(
            f"{path} has adapter_config.json but no adapter weights ({' or '.join(_ADAPTER_WEIGHTS)})"
        )
    cfg = _read_json(path / "adapter_config.json", "adapter config")
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ModelError(f"{path}: only LoRA adapters are supported (found {cfg.get('peft_type')})")
    declared = [cfg.get("r"), *(cfg.get("rank_pattern") or {}).values()]
    if not all(isinstance(r, int) and r > 0 for r in declared):
        raise ModelError(
            f"{path / 'adapter_config.json'}: 'r' must be a positive integer (found {cfg.get('r')!r})"
        )
    ranks: list[int] = [int(r) for r in declared]  # type: ignore[arg-type]  # checked just above
    tensors: dict[str, dict[str, Any]] = {}
    if weights[0].suffix == ".safetensors":
        tensors = safetensors_header(weights[0])
        lora = {k: v for k, v in tensors.items() if ".lora_A" in k or ".lora_B" in k}
        if not lora:
            raise ModelError(
                f"{weights[0]}: holds no LoRA weights (no lora_A/lora_B tensors): not a LoRA adapter"
            )
        ranks += [v["shape"][0] for k, v in lora.items() if ".lora_A" in k and v["shape"]]
    else:
        _check_bin(weights[0])
    rank = max(ranks)
    if rank > MAX_LORA_RANK:
        raise ModelError(
            f"{path}: LoRA rank {rank} is above {MAX_LORA_RANK}, the most `kaizen serve` (vLLM "
            f"--max-lora-rank) loads: retrain it with r ≤ {MAX_LORA_RANK}"
        )
    if tensors:
        _check_shapes(path, cfg, tensors, base_row)
    return cfg


def _base_config(base_row: ModelVersionRow) -> dict[str, Any] | None:
    """The base model's config.json, or None when it cannot be had here (a hub id not in the cache)."""
    from kaizen.tools.models.resolve import resolve_base

    try:
        d = resolve_base(base_row.base_ref)
    except ModelError as e:
        log.warning("cannot check the adapter's shapes against base %s: %s", base_row.name, e)
        return None
    return _read_json(d / "config.json", "base model config")


def _check_shapes(
    path: Path, cfg: dict[str, Any], tensors: dict[str, dict[str, Any]], base_row: ModelVersionRow
) -> None:
    base = _base_config(base_row)
    if base is None:
        return
    hidden, heads = base.get("hidden_size"), base.get("num_attention_heads")
    if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0:
        return  # not a decoder config kaizen knows how to read: vLLM checks at load time
    kv = base.get("num_key_value_heads") or heads
    head_dim = base.get("head_dim") or hidden // heads
    inter = base.get("intermediate_size")
    dims = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv * head_dim),
        "v_proj": (hidden, kv * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    layers = base.get("num_hidden_layers")
    trained_on = cfg.get("base_model_name_or_path") or "another model"
    for key, t in tensors.items():
        m = _LORA_KEY.search(key)
        if m is None:
            continue
        layer, module, ab = int(m[1]), m[2], m[3]
        problem = None
        if isinstance(layers, int) and layer >= layers:
            problem = f"it adapts layer {layer}, and the base has {layers} layers"
        elif module in dims and len(t["shape"]) == 2:
            n_in, n_out = dims[module]
            got, want = (t["shape"][1], n_in) if ab == "A" else (t["shape"][0], n_out)
            if isinstance(want, int) and got != want:
                side = "input" if ab == "A" else "output"
                problem = f"its {module} {side} size is {got}, and the base's is {want}"
        if problem:
            raise ModelError(
                f"{path}: this adapter does not fit base {base_row.name!r} ({base_row.base_ref}): {problem} "
                f"(it was trained on {trained_on}); register it on the base it was trained on (--base)"
            )


def validate_full_model(path: Path) -> dict[str, Any]:
    """Check a full model directory before it is registered as a base: config and weights readable."""
    cfg = _read_json(path / "config.json", "model config")
    if not (cfg.get("model_type") or cfg.get("architectures")):
        raise ModelError(
            f"{path / 'config.json'}: no model_type or architectures: not a transformers model config"
        )
    safetensors = sorted(path.glob("*.safetensors"))
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not safetensors and not bins:
        raise ModelError(f"{path}: no weights (*.safetensors or pytorch_model*.bin) beside config.json")
    for f in safetensors:
        safetensors_header(f)
    for f in bins:
        _check_bin(f)
    return cfg
