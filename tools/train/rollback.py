"""Training-free sparse rollback: undo the few adapter coordinates where an update fights what it broke.

Multi-domain RL interference (README, Research) locates forgetting in a low-dimensional shared conflict
subspace; reverting a sparse set of conflict coordinates partly restores the damaged domain without
retraining. Here: for a candidate adapter that continued a start adapter, the first-order change of the
loss on examples of the damaged labels caused by coordinate *i* is ``Δθᵢ·∇ᵢL`` (``Δθ = candidate −
start``, gradient at the candidate); the coordinates where it is largest and positive are where the update
hurt those examples most. The top ``fraction`` of all coordinates among them go back to the start's values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ADAPTER_FILE = "adapter_model.safetensors"


class IncompatibleAdapters(ValueError):
    """The candidate did not continue the start adapter (different tensors): nothing to roll back to."""


def check_continues(start: dict[str, Any], cand: dict[str, Any]) -> None:
    """Raise IncompatibleAdapters unless the two adapters hold the same tensors (the candidate continued
    the start): what both a rollback and an interpolation toward the start need."""
    if start.keys() != cand.keys() or any(start[k].shape != cand[k].shape for k in cand):
        raise IncompatibleAdapters(
            "the candidate's adapter does not continue the start's (different tensors)"
        )


def _file_key(param_name: str) -> str:
    """``…q_proj.lora_A.default.weight`` (in the model) → ``…q_proj.lora_A.weight`` (in the file)."""
    return param_name.replace(".default.", ".")


def _loss(model: Any, tok: Any, rows: list[dict[str, Any]], device: str) -> Any:
    """Mean SFT loss over the completion tokens of prompt/completion rows (gradients kept)."""
    import torch

    total = torch.zeros((), device=device)
    for row in rows:
        prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([*row["prompt"], *row["completion"]], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(p_ids) + ids[len(p_ids) :]
        out = model(
            input_ids=torch.tensor([ids], device=device), labels=torch.tensor([labels], device=device)
        )
        total = total + out.loss
    return total / max(1, len(rows))


def sparse_rollback(
    base_dir: Path,
    start_adapter: Path,
    candidate_adapter: Path,
    rows: list[dict[str, Any]],
    out_dir: Path,
    *,
    fraction: float = 0.05,
    device: str = "cpu",
) -> dict[str, Any]:
    """Write ``out_dir``: the candidate adapter with its top-``fraction`` conflict coordinates reverted.

    ``rows``: prompt/completion chats (``kaizen.tools.data.sft_rows``) of the labels the candidate broke —
    training-side examples, never the regression suite that judges the result. Raises IncompatibleAdapters
    when the two adapters do not hold the same tensors.
    """
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file

    from kaizen.tools.models.load import load_model

    start = load_file(str(Path(start_adapter) / ADAPTER_FILE))
    cand = load_file(str(Path(candidate_adapter) / ADAPTER_FILE))
    check_continues(start, cand)
    model, tok = load_model(base_dir, None, device=device, dtype="float32")
    model = PeftModel.from_pretrained(model, str(candidate_adapter), is_trainable=True)
    model.train()
    model.zero_grad()
    loss = _loss(model, tok, rows, device)
    loss.backward()
    scores, grads = {}, {}
    for name, p in model.named_parameters():
        key = _file_key(name)
        if p.grad is not None and key in cand:
            grads[key] = p.grad.detach().cpu().float()
            scores[key] = (cand[key].float() - start[key].float()) * grads[key]
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(len(flat) * fraction)
    new = dict(cand)
    n = 0
    if k > 0:
        threshold = float(flat.topk(k).values[-1].clamp(min=1e-30))
        for key, s in scores.items():
            mask = s >= threshold
            n += int(mask.sum())
            new[key] = torch.where(mask, start[key], cand[key])
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(candidate_adapter, out_dir)
    save_file(
        {k: v.contiguous() for k, v in new.items()}, str(out_dir / ADAPTER_FILE), metadata={"format": "pt"}
    )
    predicted = float(sum(s[new[key] == start[key]].sum() for key, s in scores.items() if key in new))
    info = {
        "rolled_back": n,
        "coordinates": int(len(flat)),
        "fraction": fraction,
        "loss_before": round(float(loss.detach()), 4),
        "first_order_loss_drop": round(predicted, 6),
        "examples": len(rows),
    }
    (out_dir / "rollback.json").write_text(json.dumps(info, indent=2))
    return info
