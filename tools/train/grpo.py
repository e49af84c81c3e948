"""GRPO for kaizen: TRL's ``GRPOTrainer`` with entropy control and hints for all-zero groups.

The runner (``python -m kaizen.tools.train.runner job.json``) builds ``KaizenGRPOTrainer`` for a
``TrainJob(kind="grpo")``. On top of TRL it adds, each switched by a ``TrainJob`` field:

* **Positive/negative-advantage weighting** (``adv_weight_pos``, ``adv_weight_neg``). After "Entropy in
  RLVR" (README, Research): *entropy collapses mainly through the tokens of positive-advantage samples, so
  weighting positive- against negative-advantage tokens regulates it*. Every completion token's
  advantage ``A`` is multiplied by ``adv_weight_pos`` when ``A > 0`` and by ``adv_weight_neg`` when
  ``A < 0`` before TRL's clipped loss. The clipped term ``min(r·A, clip(r)·A)`` is positively
  homogeneous in ``A``, so each token's loss is scaled by exactly that weight (``weight_advantages``).
  ``adv_weight_pos < 1`` (or ``adv_weight_neg > 1``) slows the collapse.
* **Entropy early stop** (``entropy_floor``, ``entropy_patience``): ``EntropyFloorStop``, a
  ``TrainerCallback``, ends training when the logged policy entropy (mean nats per completion token)
  stays below the floor for ``entropy_patience`` logged steps: a collapsed policy samples the same
  completion for the whole group, every advantage is 0, and further steps only cost time.
* **Hints for all-zero groups** (``hint_share``, ``hint``, ``hint_tokens``), after KnowRL: when every
  completion of a prompt scores 0 there is no learning signal, so that prompt's group is sampled again
  with a minimal hint appended to its last user message — the label set, the first token(s) of the
  reference answer (never more than half of it), or the first test of a code task — for at most
  ``hint_share`` of the prompt groups seen so far. Each hint is one line of ``hints.jsonl``; a hinted
  prompt seen again *without* a hint counts as revisited/passed (``hints/revisited``,
  ``hints/passed_without_hint``), and at the end of training every hinted prompt is decoded once,
  greedily, without its hint (``hint_recheck``) — ``grpo.json`` says which now pass.
  ``hint="answer"`` is off-policy guidance instead (after LUFFY, README, Research): the group is not
  re-sampled; its last completion is replaced by the reference reply + end of turn and the group's
  advantages are recomputed as if it alone scored 1, so the model is pulled towards the right reply on the
  prompt *as asked* (a prompt hint teaches a prompt it never sees again). Only where the reference is a whole
  reply (a label, a JSON object). With a KL reference (``beta`` > 0) or vLLM's importance-sampling
  correction, the injected row's reference/old log-probs are recomputed and its importance ratio is 1.

Files a GRPO job writes besides the runner's (``metrics.jsonl``, checkpoints, adapter, result.json):
``hints.jsonl`` and ``grpo.json`` (the summary, also under ``result.json``'s ``"grpo"`` key). Per-step
keys of ``metrics.jsonl`` are listed in ``METRIC_KEYS``; ``read_curves`` turns them into plot series.

Hint state and the early-stop counter are saved in every checkpoint (``kaizen_grpo_state.json``), so a
killed job resumes with them. Under ``accelerate launch`` the hint decision is taken on the rewards
gathered from every rank, and every rank re-generates its whole local batch so collectives stay in step.

This module holds the job's files and dataset columns, the advantage weighting and the entropy early
stop; ``kaizen.tools.train.grpo_hints`` the pure parts of the hint path; ``kaizen.tools.train.grpo_trainer``
the trainer class that wires them into TRL. None imports a heavy library at import time;
``KaizenGRPOTrainer`` (which needs TRL) is built on first access.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

STATE_FILE = "kaizen_grpo_state.json"
HINTS_FILE = "hints.jsonl"
SUMMARY_FILE = "grpo.json"

METRIC_KEYS: dict[str, str] = {
    "reward": "mean total reward of the step's completions (weighted sum over reward functions; no hints)",
    "reward_std": "its standard deviation",
    "rewards/<name>/mean": "mean of one reward function (also /std)",
    "frac_reward_zero_std": "share of prompt groups whose completions all scored the same (no learning signal)",
    "entropy": "policy entropy: mean nats per completion token, from the loss's forward pass",
    "completions/mean_length": "mean completion length in tokens (TRL)",
    "hints/all_zero_groups": "groups of this step in which every completion scored 0",
    "hints/used": "groups of this step re-sampled with a hint",
    "hints/reward": "mean reward of the hinted completions (only on steps with a hint)",
    "hints/share": "hinted groups / groups seen so far (≤ hint_share)",
    "hints/total": "hinted groups so far",
    "hints/revisited": "hinted prompts sampled again later without a hint (cumulative)",
    "hints/passed_without_hint": "of those, how many then scored > 0 (cumulative)",
}
"""What each GRPO key in ``metrics.jsonl`` means (besides loss, learning_rate, step, elapsed_s …)."""


def weight_advantages(advantages: Any, pos: float, neg: float) -> Any:
    """Advantages multiplied by ``pos`` where positive, ``neg`` where negative (0 stays 0).

    Works on a torch tensor (the trainer's case) or a list of floats.

    Examples:
        >>> weight_advantages([1.5, -2.0, 0.0], pos=0.5, neg=2.0)
        [0.75, -4.0, 0.0]
    """
    if isinstance(advantages, (list, tuple)):
        return [a * (pos if a > 0 else neg if a < 0 else 1.0) for a in advantages]
    import torch

    w = torch.where(advantages > 0, torch.full_like(advantages, pos), torch.full_like(advantages, neg))
    return advantages * w


def encode_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``datasets.Dataset``: ``expected`` (and ``schema``) as JSON text.

    Arrow would merge extraction targets with different keys into one struct type, adding ``None``
    fields to every object; ``decode_columns`` undoes the encoding before a reward sees it.
    """
    out = []
    for i, r in enumerate(rows):
        row: dict[str, Any] = {
            "id": str(r.get("id", i)),
            "prompt": r["prompt"],
            "expected_json": json.dumps(r["expected"]),
        }
        if r.get("labels"):
            row["labels"] = list(r["labels"])
        if r.get("schema") is not None:
            row["schema_json"] = json.dumps(r["schema"])
        out.append(row)
    if any("labels" in r for r in out):
        for r in out:
            r.setdefault("labels", [])
    if any("schema_json" in r for r in out):
        for r in out:
            r.setdefault("schema_json", "null")
    return out


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A dataset row with ``expected``/``schema`` decoded (the inverse of ``encode_rows``)."""
    out = {k: v for k, v in row.items() if k not in ("expected_json", "schema_json")}
    if "expected_json" in row:
        out["expected"] = json.loads(row["expected_json"])
    if "schema_json" in row:
        out["schema"] = json.loads(row["schema_json"])
    return out


def decode_columns(fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
    """Wrap a reward so it receives ``expected``/``schema`` decoded from ``encode_rows``' JSON columns.

    The wrapper keeps the reward's ``__name__`` (TRL logs ``rewards/<name>/mean`` by it).
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> list[float]:
        if "expected_json" in kwargs:
            kwargs["expected"] = [json.loads(e) for e in kwargs.pop("expected_json")]
        if "schema_json" in kwargs:
            kwargs["schema"] = [json.loads(s) for s in kwargs.pop("schema_json")]
        return fn(*args, **kwargs)

    return wrapper


def read_curves(job_dir: Path) -> dict[str, list[Any]]:
    """Per-step series for plots from a GRPO job's ``metrics.jsonl``: step, entropy, reward, reward_std, hints_used.

    A step without a value has ``None``. The final summary record (``train_runtime``) is skipped.
    """
    path = Path(job_dir) / "metrics.jsonl"
    recs = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if "train_runtime" not in rec and "step" in rec:
                recs.append(rec)
    by_step: dict[int, dict[str, Any]] = {}
    for rec in recs:
        by_step[int(rec["step"])] = rec  # after a resume, the re-run's record of a step wins
    steps = sorted(by_step)
    pick = {"entropy": "entropy", "reward": "reward", "reward_std": "reward_std", "hints_used": "hints/used"}
    return {"step": steps, **{name: [by_step[s].get(key) for s in steps] for name, key in pick.items()}}


def read_summary(job_dir: Path) -> dict[str, Any] | None:
    """A finished GRPO job's ``grpo.json`` (hints, recheck, early stop), or ``None``."""
    try:
        return json.loads((Path(job_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# entropy early stop
# --------------------------------------------------------------------------------------------


def entropy_floor_stop(floor: float, patience: int = 2) -> Any:
    """A ``TrainerCallback`` that stops training once ``entropy`` stays below ``floor`` for ``patience`` logs.

    The callback's ``stopped`` is ``None`` or ``{"step", "entropy", "floor", "patience"}``; ``low`` is
    the current run of low-entropy logs (saved in checkpoints by ``KaizenGRPOTrainer``).
    """
    from transformers import TrainerCallback

    class EntropyFloorStop(TrainerCallback):
        def __init__(self) -> None:
            self.floor, self.patience = floor, max(1, patience)
            self.low = 0
            self.stopped: dict[str, Any] | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
            ent = (logs or {}).get("entropy")
            if ent is None or (isinstance(ent, float) and math.isnan(ent)):
                return control
            self.low = self.low + 1 if ent < self.floor else 0
            if self.low >= self.patience and self.stopped is None:
                self.stopped = {
                    "step": state.global_step,
                    "entropy": ent,
                    "floor": self.floor,
                    "patience": self.patience,
                }
                control.should_training_stop = True
                control.should_save = True  # the resume point is the stop point
                print(
                    f"kaizen grpo: entropy {ent:.4g} < floor {self.floor:g} for {self.low} logged steps: "
                    f"stopping at step {state.global_step}",
                    flush=True,
                )
            return control

    return EntropyFloorStop()
