"""What ``check.py`` measures on, built here in seconds with nothing to download: a randomly initialised
Qwen2 of a given shape (``QWEN25_15B``, or ``TINY`` for ``--smoke``), a byte-level BPE tokenizer with a
ChatML template, and banking-flavoured chats of random words. The outputs are noise: only speeds count.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

QWEN25_15B = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = [
    "account",
    "balance",
    "transfer",
    "card",
    "declined",
    "payment",
    "freeze",
    "refund",
    "statement",
    "deposit",
    "loan",
    "interest",
    "branch",
    "savings",
    "checking",
    "wire",
    "routing",
    "limit",
    "overdraft",
    "fee",
    "dispute",
    "merchant",
    "pin",
    "chip",
    "online",
    "mobile",
    "app",
    "login",
]


def build_tokenizer(out: Path, vocab: int) -> Any:
    """A byte-level BPE tokenizer with a ChatML template, trained here in a second (nothing to download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    rnd = random.Random(0)
    corpus = [" ".join(rnd.choice(WORDS) + str(rnd.randrange(100)) for _ in range(64)) for _ in range(2000)]
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab, 8000),
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, shape: dict[str, int], device: str) -> dict[str, Any]:
    """A randomly initialised Qwen2 of ``shape``, saved as safetensors (bf16 on CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(**shape, rms_norm_eps=1e-6, rope_theta=1_000_000.0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"params": params, "shape": shape, "build_and_save_s": round(time.perf_counter() - t0, 1)}


def sft_rows(n: int, words: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        user = " ".join(rnd.choice(WORDS) for _ in range(words))
        answer = " ".join(rnd.choice(WORDS) for _ in range(8))
        out.append(
            {
                "prompt": [
                    {"role": "system", "content": "Answer the banking request."},
                    {"role": "user", "content": user},
                ],
                "completion": [{"role": "assistant", "content": answer}],
            }
        )
    return out
