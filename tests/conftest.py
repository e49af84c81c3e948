"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The converted default model is cached once per user, not per test or per tmp dir: the
# conversion takes ~30-40 s. Read at import time, so a test that later points KAIZEN_CACHE at a
# temporary directory (monkeypatch) does not make the session fixture convert again.
SHARED_MODEL_CACHE = Path(os.environ.get("KAIZEN_CACHE") or Path.home() / ".cache" / "kaizen").expanduser()


@pytest.fixture(scope="session")
def shared_model_cache() -> Path:
    """The cache directory the session's converted models live in."""
    return SHARED_MODEL_CACHE


@pytest.fixture(scope="session")
def smollm_dir(shared_model_cache: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors directory (converted once, cached)."""
    from tools.models import resolve_base

    return resolve_base("smollm2-135m", cache=shared_model_cache)


@pytest.fixture(scope="session")
def tiny_llama_dir(smollm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer: seconds to train, for fast tests."""
    from tools.models import build_tiny_random_llama

    return build_tiny_random_llama(tmp_path_factory.mktemp("tiny-llama"), smollm_dir)
