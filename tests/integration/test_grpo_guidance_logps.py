"""Answer guidance in batches that are not purely on-policy: the injected reply gets its own log-probs.

With a KL reference (``beta`` > 0), off-policy "old" log-probs or vLLM's importance-sampling terms, TRL
keeps per-row log-probs computed for the *sampled* completions. ``_guide_with_answers`` replaces one
completion by the reference reply, so that row's terms must be recomputed (else the KL and the ratio of
the injected row would be another reply's). Checked on the real ``KaizenGRPOTrainer`` with the tiny random
Llama, the policy perturbed so that it differs from its reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

G = 2  # completions per prompt: rows 0–1 are group 0, rows 2–3 group 1


@pytest.fixture(scope="module")
def trainer(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory, grpo_trainer_classes):  # noqa: ANN001, ANN201
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    KaizenGRPOTrainer, _ = grpo_trainer_classes
    from trl import GRPOConfig

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": f"q{i}"}]} for i in range(4)])
    out = tmp_path_factory.mktemp("guide-logps")
    args = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=4,
        num_generations=G,
        max_completion_length=6,
        use_cpu=True,
        report_to=[],
        beta=0.04,  # a KL reference: TRL keeps ref_per_token_logps
        gradient_checkpointing=False,
        disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    t = KaizenGRPOTrainer(
        model=model,
        reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
        args=args,
        train_dataset=ds,
        processing_class=tok,
        hint="answer",
        hint_share=1.0,
        job_dir=out,
    )
    with torch.no_grad():  # the policy moves away from its reference, as after some training
        for p in t.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    t.model.train()
    return t


def _logps(t, model, prompt_ids, prompt_mask, comp, mask):  # noqa: ANN001, ANN202
    ids, attn = torch.cat([prompt_ids, comp], 1), torch.cat([prompt_mask, mask], 1)
    with torch.no_grad():
        lp, _, _ = t._get_per_token_logps_and_entropies(model, ids, attn, comp.size(1))
    return lp


def test_the_injected_reply_gets_its_own_reference_and_old_logps(trainer) -> None:  # noqa: ANN001
    t = trainer
    g = torch.Generator().manual_seed(3)
    prompt_ids = torch.randint(10, 1000, (4, 5), generator=g)
    prompt_mask = torch.ones(4, 5, dtype=torch.long)
    comp = torch.randint(10, 1000, (4, 2), generator=g)  # sampled replies, 2 tokens wide
    mask = torch.ones(4, 2, dtype=torch.long)
    sentinel = torch.full((4, 2), -7.0)
    out = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": comp.clone(),
        "completion_mask": mask.clone(),
        "advantages": torch.zeros(4),
        "ref_per_token_logps": sentinel.clone(),
        "old_per_token_logps": sentinel.clone(),
        "importance_sampling_ratio": torch.full((4, 1), 0.5),
    }
    answer = "yes maybe no"  # longer than the sampled replies: the tensors must widen
    guided = t._guide_with_answers(out, [(1, answer)], [0.0] * 4, ["a", "a", "b", "b"])

    row = 1 * G + G - 1  # group 1's last completion
    toks = t._tokenizer.encode(answer, add_special_tokens=False) + [t.eos_token_ids[0]]
    width = guided["completion_ids"].size(1)
    assert width == len(toks) > 2
    assert guided["completion_ids"][row, : len(toks)].tolist() == toks
    for key in ("ref_per_token_logps", "old_per_token_logps"):
        assert guided[key].shape == (4, width), key
        others = [r for r in range(4) if r != row]
        assert torch.equal(guided[key][others, :2], sentinel[others]), f"{key}: other rows untouched"

    comp_w, mask_w = guided["completion_ids"][row : row + 1], guided["completion_mask"][row : row + 1]
    p_ids, p_mask = prompt_ids[row : row + 1], prompt_mask[row : row + 1]
    ref = _logps(t, t.ref_model, p_ids, p_mask, comp_w, mask_w)[0]
    now = _logps(t, t.model, p_ids, p_mask, comp_w, mask_w)[0]
    n = len(toks)
    assert not torch.allclose(ref[:n], now[:n], atol=1e-3), "the perturbed policy differs from its reference"
    assert torch.allclose(guided["ref_per_token_logps"][row, :n], ref[:n], atol=1e-5)
    assert torch.allclose(guided["old_per_token_logps"][row, :n], now[:n], atol=1e-5)
    assert guided["importance_sampling_ratio"][row].tolist() == [1.0]  # vLLM never sampled it
    assert guided["importance_sampling_ratio"][[0, 1, 2]].flatten().tolist() == [0.5, 0.5, 0.5]
