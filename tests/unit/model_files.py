"""Tiny, real model files for registry tests: safetensors files with a valid header (zeros as data).

The registry reads only the header (names, shapes) and ``adapter_config.json``, so these files are
enough to test what it accepts and refuses; they are not meant to be loaded into a model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# SmolLM2-135M (the embedded base): hidden 576, 9 heads of 64, 3 KV heads, MLP 1536, 30 layers.
SMOLLM2_OUT = {
    "q_proj": 576,
    "k_proj": 192,
    "v_proj": 192,
    "o_proj": 576,
    "gate_proj": 1536,
    "up_proj": 1536,
    "down_proj": 576,
}
SMOLLM2_IN = {
    "q_proj": 576,
    "k_proj": 576,
    "v_proj": 576,
    "o_proj": 576,
    "gate_proj": 576,
    "up_proj": 576,
    "down_proj": 1536,
}


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A float32 safetensors file with these tensor shapes, all zeros."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))
    return path


def lora_shapes(
    r: int = 8,
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
    layers: tuple[int, ...] = (0, 1),
    hidden_in: dict[str, int] | None = None,
    out: dict[str, int] | None = None,
) -> dict[str, list[int]]:
    """PEFT's tensor names and shapes for a LoRA adapter on a Llama-like model (SmolLM2's sizes by default)."""
    ins, outs = hidden_in or SMOLLM2_IN, out or SMOLLM2_OUT
    attn = {"q_proj", "k_proj", "v_proj", "o_proj"}
    shapes = {}
    for layer in layers:
        for m in modules:
            where = "self_attn" if m in attn else "mlp"
            key = f"base_model.model.model.layers.{layer}.{where}.{m}"
            shapes[f"{key}.lora_A.weight"] = [r, ins[m]]
            shapes[f"{key}.lora_B.weight"] = [outs[m], r]
    return shapes


def write_adapter(
    d: Path,
    *,
    r: int = 8,
    shapes: dict[str, list[int]] | None = None,
    peft_type: str = "LORA",
    base: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
) -> Path:
    """A LoRA adapter directory: adapter_config.json + adapter_model.safetensors."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": peft_type,
                "base_model_name_or_path": base,
                "r": r,
                "lora_alpha": 2 * r,
                "target_modules": ["q_proj", "v_proj"],
                "task_type": "CAUSAL_LM",
            }
        )
    )
    write_safetensors(d / "adapter_model.safetensors", shapes if shapes is not None else lora_shapes(r))
    return d
