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
    from kaizen.tools.models import resolve_base

    return resolve_base("smollm2-135m", cache=shared_model_cache)


@pytest.fixture(scope="session")
def tiny_llama_dir(smollm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer: seconds to train, for fast tests."""
    from kaizen.tools.models import build_tiny_random_llama

    return build_tiny_random_llama(tmp_path_factory.mktemp("tiny-llama"), smollm_dir)


# ------------------------------------------------------------------------------------------
# A "deployed v1" for the CLINC150 banking slice: the default model after a brief LoRA SFT on
# three of four intents. The fourth intent (card_declined) is the deliberate gap that the
# repair tests then fix. Trained once per session (≈1 min on 2 CPU cores) and shared by every
# test that needs a trained model; cached across sessions under the model cache, keyed by the
# exact data and recipe, so a local re-run does not pay it again.
CLINC_LABELS = ["balance", "transfer", "freeze_account", "card_declined"]
CLINC_GAP = "card_declined"


@pytest.fixture(scope="session")
def clinc_task():
    from kaizen.tools.schema import TaskSpec
    from kaizen.workflows.bench.clinc import SYSTEM_PROMPT

    return TaskSpec(name="intents", kind="classification", labels=CLINC_LABELS, system_prompt=SYSTEM_PROMPT)


@pytest.fixture(scope="session")
def clinc_v1(smollm_dir: Path, shared_model_cache: Path, clinc_task) -> dict:
    """Train (or reuse) the v1 adapter; returns {"adapter": Path, "result": dict, "train_ids": set}."""
    import json

    from kaizen.tools.data import sft_rows, write_items
    from kaizen.tools.schema import content_hash
    from kaizen.tools.train.launch import run_job
    from kaizen.tools.train.spec import LoraSpec, TrainJob
    from kaizen.workflows.bench.clinc import rows, to_items

    seen = [lab for lab in CLINC_LABELS if lab != CLINC_GAP]
    items = to_items(rows("train", seen, per_label=12, seed=1))
    data = sft_rows(clinc_task, items)
    recipe = dict(epochs=3, learning_rate=1e-3, batch_size=8, lora=LoraSpec(r=16, alpha=32, top_layers=12).model_dump(), seed=0)
    key = content_hash({"data": data, "recipe": recipe, "v": 1})
    job_dir = shared_model_cache / "test-fixtures" / f"clinc-v1-{key}"
    job_dir.mkdir(parents=True, exist_ok=True)
    write_items(job_dir / "data.jsonl", data)
    job = TrainJob(kind="sft", base_dir=smollm_dir, data_path=job_dir / "data.jsonl", output_dir=job_dir, save_steps=100,
                   **{k: v for k, v in recipe.items() if k != "lora"}, lora=LoraSpec(**recipe["lora"]))
    result = run_job(job)
    (job_dir / "fixture.json").write_text(json.dumps({"labels": CLINC_LABELS, "gap": CLINC_GAP}))
    return {"adapter": Path(result["output_path"]), "result": result, "train_ids": {it.id for it in items}, "job_dir": job_dir}


# ------------------------------------------------------------------------------------------
# GRPO needs reward *variance* inside a group: with identical rewards every advantage is zero
# and so is the gradient. A random Llama answers random tokens (reward always 0), so GRPO tests
# use this variant, which answers "yes" or "no" about equally often as its first token.
YES_NO_LABELS = ["yes", "no"]


@pytest.fixture(scope="session")
def yes_no_llama_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_llama_dir`` whose first generated token is "yes" or "no" (≈43 % each, any prompt).

    The embedding rows of the two tokens (tied with the output head) are set to the same vector,
    scaled so its logit at the generation position is ≈12 against ≈0 for every other token. That
    position is always after ``<|im_start|>assistant\\n``, so its hidden state barely depends on
    the prompt (cosine ≥ 0.998 measured). Sampling one token then gives label_exact_match
    rewards of 0 and 1 within each group: a real GRPO learning signal.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("yes-no-llama")
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    chat = [{"role": "system", "content": "Answer with one label: yes, no."}, {"role": "user", "content": "Is 4 even?"}]
    ids = tok(tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False), add_special_tokens=False,
              return_tensors="pt").input_ids
    label_ids = [tok.encode(w, add_special_tokens=False) for w in YES_NO_LABELS]
    assert all(len(t) == 1 for t in label_ids), label_ids
    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state[0, -1]  # after the final norm: what the head sees
        emb = model.get_input_embeddings().weight
        for (t,) in label_ids:
            emb[t] = h * (12.0 / h.dot(h))
        probs = model(input_ids=ids).logits[0, -1].softmax(-1)
    assert all(0.3 < probs[t].item() < 0.6 for (t,) in label_ids), [probs[t].item() for (t,) in label_ids]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
