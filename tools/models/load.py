"""Load a base model (optionally with a LoRA adapter), export merged models, inspect adapters.

torch/transformers/peft are imported inside the functions so that ``import kaizen.tools.models`` stays
light.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ModelError
from kaizen.tools.models.device import configure_cpu_threads, pick_device, pick_dtype
from kaizen.tools.models.resolve import replace_dir, resolve_base

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "[PAD]", "<|pad|>")


def adapter_info(adapter_dir: Path | str) -> dict[str, Any]:
    """What a PEFT LoRA adapter directory holds, read from its ``adapter_config.json``.

    Returns ``path``, ``peft_type``, ``r``, ``alpha``, ``dropout``, ``target_modules`` (a sorted
    list, or the regex string PEFT allows), ``base`` (``base_model_name_or_path``), ``task_type``.
    Raises :class:`ModelError` when the directory is missing or is not a PEFT adapter.
    """
    path = Path(adapter_dir).expanduser()
    if not path.exists():
        raise ModelError(f"adapter directory {path} does not exist: check the path or the model version")
    if not path.is_dir():
        raise ModelError(f"adapter {path} is a file; an adapter is a directory holding {ADAPTER_CONFIG}")
    cfg_path = path / ADAPTER_CONFIG
    if not cfg_path.is_file():
        is_model = (path / "config.json").is_file()
        hint = " (it looks like a full model: load it as the base instead)" if is_model else ""
        raise ModelError(f"{path} is not a PEFT adapter: no {ADAPTER_CONFIG}{hint}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{cfg_path} is not valid JSON ({exc}): the adapter is damaged; re-train or re-export it"
        ) from exc
    if not isinstance(cfg, dict):
        raise ModelError(f"{cfg_path} is not a JSON object: the adapter is damaged")
    if not any((path / w).is_file() for w in ADAPTER_WEIGHTS):
        weights = " or ".join(ADAPTER_WEIGHTS)
        raise ModelError(f"{path} has {ADAPTER_CONFIG} but no adapter weights ({weights})")
    targets = cfg.get("target_modules")
    if isinstance(targets, (list, tuple, set)):
        targets = sorted(targets)
    return {
        "path": str(path.resolve()),
        "peft_type": cfg.get("peft_type"),
        "r": cfg.get("r"),
        "alpha": cfg.get("lora_alpha"),
        "dropout": cfg.get("lora_dropout"),
        "target_modules": targets,
        "base": cfg.get("base_model_name_or_path"),
        "task_type": cfg.get("task_type"),
    }


def load_tokenizer(base_dir: Path | str) -> Any:
    """The model's tokenizer, padding on the left (for batched generation) with a pad token set.

    If the tokenizer has no pad token, one that exists and is not eos is chosen when possible
    (masking padding out of a loss must not mask eos), else eos.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer from {base_dir}: {type(exc).__name__}: {exc}") from exc
    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"  # so that save_pretrained keeps it
    if tokenizer.pad_token is None:
        vocab = tokenizer.get_vocab()
        pad = next((t for t in _PAD_CANDIDATES if t in vocab and t != tokenizer.eos_token), None)
        tokenizer.pad_token = pad or tokenizer.eos_token
    return tokenizer


def _base_path(base_dir: Path | str) -> Path:
    path = Path(base_dir).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    return resolve_base(str(base_dir))  # a spec such as "smollm2-135m", or a clear ModelError


def load_model(
    base_dir: Path | str,
    adapter_dir: Path | str | None = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    merge: bool = False,
    for_training: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a model directory, optionally with a LoRA adapter.

    ``base_dir`` is a model directory (or anything :func:`resolve_base` accepts). ``device`` and
    ``dtype`` default to :func:`pick_device` / :func:`pick_dtype`. With ``adapter_dir`` the model
    is a ``PeftModel`` (adapter weights trainable only when ``for_training``); ``merge=True``
    folds the adapter into the base weights and returns a plain transformers model. The model
    is in eval mode unless ``for_training``.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # kaizen prints its own progress; per-tensor bars are noise
    base = _base_path(base_dir)
    info = adapter_info(adapter_dir) if adapter_dir is not None else None  # fail before the slow load
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    if device == "cpu":
        configure_cpu_threads()

    tokenizer = load_tokenizer(base)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch_dtype)
    except Exception as exc:
        raise ModelError(f"cannot load the model in {base}: {type(exc).__name__}: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device)

    if info is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, info["path"], is_trainable=for_training and not merge)
        except Exception as exc:
            raise ModelError(
                f"cannot apply the adapter {info['path']} to {base}: {type(exc).__name__}: {exc}. "
                f"The adapter was trained on {info['base']!r}; load it on that base"
            ) from exc
        if merge:
            model = model.merge_and_unload()
    model.train(for_training)
    return model, tokenizer


def _saved_dtype(base: Path) -> Any:
    """The dtype a model directory's config.json declares (float32 if it declares none)."""
    import torch

    try:
        cfg = json.loads((base / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    value = getattr(torch, str(name).removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) else torch.float32


def export_merged(
    base_dir: Path | str, adapter_dir: Path | str, out_dir: Path | str, *, dtype: Any = None
) -> Path:
    """Write a standalone model (adapter merged into the base) plus tokenizer to ``out_dir``.

    The merge is done in float32 on CPU; the result is saved in ``dtype`` (default: the dtype the
    base directory declares). It is written to a temporary sibling and moved into place, so
    ``out_dir`` never holds a half-written model. An existing ``out_dir`` is replaced only if it
    is empty or a model directory.
    """
    import torch

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise ModelError(
            f"{out} exists and is not a model directory; refusing to overwrite it: choose another path"
        )
    base = _base_path(base_dir)
    target_dtype = pick_dtype("cpu", dtype) if dtype is not None else _saved_dtype(base)

    model, tokenizer = load_model(base, adapter_dir, device="cpu", dtype=torch.float32, merge=True)
    if target_dtype != torch.float32:
        model = model.to(target_dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
