"""The positive/negative-advantage weighting changes TRL's GRPO loss exactly as specified.

On a hand-made batch (fixed prompt and completion ids, masks with padding, advantages of both signs
and zero, old log-probs that put some ratios outside the clip range) through the real
``KaizenGRPOTrainer._compute_loss`` on the tiny random Llama, the loss and its gradient equal

    L = Σ_i Σ_t m_it · −w(A_i) · min(r_it A_i, clip(r_it, 1−ε, 1+ε) A_i) / N

with w(A) = adv_weight_pos for A > 0, adv_weight_neg for A < 0 (A = 0 contributes nothing),
r_it = exp(logπ_θ − logπ_old), and N the completion tokens of the batch ("dapo", TRL's default) or
per-sequence means averaged over sequences ("grpo"). With both weights 1 the loss is TRL's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ADV = [1.0, -0.5, 0.0, 2.0, -1.5, 0.7]


@pytest.fixture(scope="module")
def setup(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory, grpo_trainer_classes):  # noqa: ANN001, ANN201
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    KaizenGRPOTrainer, GRPOTrainer = grpo_trainer_classes
    from trl import GRPOConfig

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    ds = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"q{i}"}], "expected": "yes"} for i in range(6)]
    )

    def constant(completions, **kwargs):  # noqa: ANN001, ANN003, ANN202
        return [0.0] * len(completions)

    def make(cls: type, **extra):  # noqa: ANN003, ANN202
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
        args = GRPOConfig(
            output_dir=str(tmp_path_factory.mktemp("grpo-loss")),
            per_device_train_batch_size=6,
            num_generations=2,
            max_completion_length=4,
            use_cpu=True,
            report_to=[],
            epsilon=0.2,
            beta=0.0,
            gradient_checkpointing=False,
            disable_tqdm=True,
        )
        trainer = cls(
            model=model, reward_funcs=[constant], args=args, train_dataset=ds, processing_class=tok, **extra
        )
        trainer.current_gradient_accumulation_steps = 1
        trainer.model.train()
        return trainer

    # One trainer of each class; a test sets the loss type and the weights (plain attributes read by the loss).
    kaizen, trl_own = make(KaizenGRPOTrainer, adv_weight_pos=1.0, adv_weight_neg=1.0), make(GRPOTrainer)

    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(10, 1000, (6, 5), generator=g)
    prompt_mask = torch.ones(6, 5, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding
    prompt_ids[1, :2] = tok.pad_token_id
    completion_ids = torch.randint(10, 1000, (6, 4), generator=g)
    completion_mask = torch.ones(6, 4, dtype=torch.long)
    completion_mask[0, 3:] = 0  # right padding
    completion_mask[4, 2:] = 0
    # Off-policy old log-probs: ratios r = exp(Δ) from 0.5 to 1.6, some outside [0.8, 1.2].
    delta = torch.tensor(
        [
            [0.0, 0.3, -0.4, 0.1],
            [0.5, -0.7, 0.05, 0.0],
            [0.2, 0.2, 0.2, 0.2],
            [-0.1, 0.45, 0.0, -0.3],
            [0.35, -0.25, 0.0, 0.0],
            [0.1, -0.05, 0.6, -0.5],
        ]
    )
    batch = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor(ADV),
        "num_items_in_batch": completion_mask.sum(),
    }
    return kaizen, trl_own, batch, delta


def _with_old_logps(trainer, batch: dict, delta):  # noqa: ANN001, ANN202
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attn, 4)
    return dict(batch, old_per_token_logps=logps - delta)


def _expected_loss(trainer, batch: dict, pos: float, neg: float, loss_type: str):  # noqa: ANN001, ANN202
    """The specification, written out independently of TRL's code."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attn, 4)
    adv = batch["advantages"]
    w = torch.where(adv > 0, torch.tensor(pos), torch.where(adv < 0, torch.tensor(neg), torch.tensor(1.0)))
    a = (w * adv).unsqueeze(1)
    r = torch.exp(logps - batch["old_per_token_logps"])
    per_tok = -torch.min(r * a, torch.clamp(r, 0.8, 1.2) * a)
    m = batch["completion_mask"].float()
    if loss_type == "dapo":
        return (per_tok * m).sum() / m.sum()
    return ((per_tok * m).sum(1) / m.sum(1)).mean()


def _loss_and_grads(trainer, batch: dict, fn):  # noqa: ANN001, ANN202
    trainer.model.zero_grad()
    loss = fn()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
@pytest.mark.parametrize(("pos", "neg"), [(0.5, 1.0), (0.3, 1.7)])
def test_weighting_changes_the_loss_exactly_as_specified(
    setup, loss_type: str, pos: float, neg: float
) -> None:
    trainer, trl_own, batch, delta = setup
    trainer.loss_type = trl_own.loss_type = loss_type
    trainer.adv_weight_pos, trainer.adv_weight_neg = pos, neg
    b = _with_old_logps(trainer, batch, delta)
    loss, grads = _loss_and_grads(trainer, b, lambda: trainer._compute_loss(trainer.model, b))
    want, want_grads = _loss_and_grads(trainer, b, lambda: _expected_loss(trainer, b, pos, neg, loss_type))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-7)
    assert grads.keys() == want_grads.keys() and grads
    for n, g in grads.items():
        assert torch.allclose(g, want_grads[n], rtol=1e-4, atol=1e-7), n

    # ... and it is a real change: the unweighted loss differs, and equals TRL's own GRPOTrainer's.
    trainer.adv_weight_pos = trainer.adv_weight_neg = 1.0
    unweighted = trainer._compute_loss(trainer.model, b).item()
    assert unweighted == pytest.approx(trl_own._compute_loss(trl_own.model, b).item(), rel=1e-6)
    assert unweighted == pytest.approx(_expected_loss(trainer, b, 1.0, 1.0, loss_type).item(), rel=1e-5)
    assert abs(unweighted - loss.item()) > 1e-4
    assert torch.equal(batch["advantages"], torch.tensor(ADV))  # the batch itself is not modified
