"""Weight-space interpolation: a candidate adapter moved back part of the way toward where it started.

WiSE-FT (Wortsman et al., CVPR 2022) found that the weights halfway between a fine-tuned model and its
start often keep most of the fine-tune's gain and much of the start's robustness. Here the start is the
adapter the candidate continued (the incumbent's) and ``alpha`` is how much of the update is kept:
``θ(α) = θ_start + α · (θ_candidate − θ_start)``, tensor by tensor over the LoRA factors. With no start
adapter (the candidate is a fresh LoRA on the model it runs on), ``α`` scales the LoRA ``B`` factors, which
scales the weight delta ``B·A`` exactly. Training-free: one file written, nothing loaded on a device.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kaizen.tools.train.rollback import ADAPTER_FILE, check_continues


def blend(start: dict[str, Any] | None, cand: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The tensors of ``θ_start + α (θ_cand − θ_start)``; with no start, every ``lora_B`` scaled by α.

    Examples:
        >>> import torch
        >>> s, c = {"x.lora_A.weight": torch.zeros(2)}, {"x.lora_A.weight": torch.tensor([2.0, 4.0])}
        >>> blend(s, c, 0.5)["x.lora_A.weight"].tolist()
        [1.0, 2.0]
        >>> fresh = {"x.lora_A.weight": torch.ones(1), "x.lora_B.weight": torch.tensor([4.0])}
        >>> {k: v.tolist() for k, v in blend(None, fresh, 0.25).items()}
        {'x.lora_A.weight': [1.0], 'x.lora_B.weight': [1.0]}
        >>> blend({"y": torch.zeros(2)}, c, 0.5)
        Traceback (most recent call last):
        ...
        kaizen.tools.train.rollback.IncompatibleAdapters: the candidate's adapter does not continue the start's (different tensors)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if start is None:
        return {k: (v * alpha if ".lora_B." in k else v).contiguous() for k, v in cand.items()}
    check_continues(start, cand)
    return {k: (start[k] + alpha * (cand[k] - start[k])).to(cand[k].dtype).contiguous() for k in cand}


def interpolate_adapter(
    start_adapter: Path | None, candidate_adapter: Path, alpha: float, out_dir: Path
) -> dict[str, Any]:
    """Write ``out_dir``: the candidate adapter (config and all) with its weights at ``θ(α)``.

    Raises IncompatibleAdapters when the candidate did not continue ``start_adapter``.
    """
    from safetensors.torch import load_file, save_file

    cand = load_file(str(Path(candidate_adapter) / ADAPTER_FILE))
    start = load_file(str(Path(start_adapter) / ADAPTER_FILE)) if start_adapter else None
    weights = blend(start, cand, alpha)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(candidate_adapter, tmp)
    save_file(weights, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # a kill leaves a .tmp folder, never a half-written adapter under the real name
    return {"alpha": alpha, "tensors": len(weights), "from_start": start_adapter is not None}
