"""GRPO for kaizen: TRL's ``GRPOTrainer`` with entropy control and hints for all-zero groups.

The runner (``python -m kaizen.tools.train.runner job.json``) builds ``KaizenGRPOTrainer`` for a
``TrainJob(kind="grpo")``. On top of TRL it adds, each switched by a ``TrainJob`` field:

* **Positive/negative-advantage weighting** (``adv_weight_pos``, ``adv_weight_neg``). After "Entropy in
  RLVR" (RESEARCH.md): *entropy collapses mainly through the tokens of positive-advantage samples, so
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

Files a GRPO job writes besides the runner's (``metrics.jsonl``, checkpoints, adapter, result.json):
``hints.jsonl`` and ``grpo.json`` (the summary, also under ``result.json``'s ``"grpo"`` key). Per-step
keys of ``metrics.jsonl`` are listed in ``METRIC_KEYS``; ``read_curves`` turns them into plot series.

Hint state and the early-stop counter are saved in every checkpoint (``kaizen_grpo_state.json``), so a
killed job resumes with them. Under ``accelerate launch`` the hint decision is taken on the rewards
gathered from every rank, and every rank re-generates its whole local batch so collectives stay in step.

This module imports no heavy library at import time; ``KaizenGRPOTrainer`` (which needs TRL) is built
on first access.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

STATE_FILE = "kaizen_grpo_state.json"
HINTS_FILE = "hints.jsonl"
SUMMARY_FILE = "grpo.json"
RECHECK_BATCH = 16  # prompts per greedy generate call of the end-of-training recheck

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


# --------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------


def all_zero_groups(rewards: Sequence[float], num_generations: int) -> list[int]:
    """Indices of the prompt groups in which every completion scored 0 (or could not be scored).

    ``rewards`` holds one total reward per completion, ``num_generations`` consecutive completions
    per prompt (TRL's order).

    Examples:
        >>> all_zero_groups([0, 0, 0, 0,  0, 1, 0, 0,  0.0, 0.0, float("nan"), 0], 4)
        [0, 2]
        >>> all_zero_groups([0.5, 0, 0, 0], 4)
        []
    """
    if num_generations < 1 or len(rewards) % num_generations:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {num_generations}")
    out = []
    for g in range(len(rewards) // num_generations):
        group = rewards[g * num_generations : (g + 1) * num_generations]
        if all(not (r > 0) for r in group):  # NaN (unscorable) counts as no reward
            out.append(g)
    return out


def hint_budget(groups_seen: int, hinted_so_far: int, share: float) -> int:
    """How many more groups may get a hint now: hinted groups stay ≤ ``share`` × groups seen.

    Examples:
        >>> hint_budget(groups_seen=2, hinted_so_far=0, share=0.25)
        0
        >>> hint_budget(groups_seen=4, hinted_so_far=0, share=0.25)
        1
        >>> hint_budget(groups_seen=8, hinted_so_far=2, share=0.25)
        0
        >>> hint_budget(groups_seen=8, hinted_so_far=0, share=1.0)
        8
    """
    return max(0, math.floor(share * groups_seen + 1e-9) - hinted_so_far)


def choose_hints(
    rewards: Sequence[float], num_generations: int, budget: int, hint_for: Callable[[int], str | None]
) -> list[tuple[int, str]]:
    """The groups to re-sample with a hint, and their hints: all-zero groups only, at most ``budget``.

    Args:
        rewards: One total reward per completion, ``num_generations`` consecutive ones per prompt.
        num_generations: The group size.
        budget: How many groups may be hinted now (``hint_budget``).
        hint_for: Group index → its hint (``None``: no hint can be made; the group is skipped).

    Returns:
        ``[(group index, hint), ...]`` in group order.

    Examples:
        >>> choose_hints([0, 0, 1, 0,  0, 0, 0, 0], 4, budget=5, hint_for=lambda g: f"h{g}")
        [(1, 'h1')]
        >>> choose_hints([0, 0, 0, 0,  0, 0, 0, 0], 4, budget=1, hint_for=lambda g: None if g == 0 else "h")
        [(1, 'h')]
    """
    used: list[tuple[int, str]] = []
    if budget <= 0:
        return used
    for g in all_zero_groups(rewards, num_generations):
        if len(used) >= budget:
            break
        hint = hint_for(g)
        if hint:
            used.append((g, hint))
    return used


def reference_text(expected: Any) -> str:
    """The reference answer a prefix hint is cut from (what SFT would train on).

    Examples:
        >>> reference_text("card_declined"), reference_text({"name": "Ann"}), reference_text(72)
        ('card_declined', '{"name": "Ann"}', '72')
    """
    if isinstance(expected, dict):
        if "tests" in expected:
            return str(expected.get("solution") or "")
        return json.dumps(expected, ensure_ascii=False)
    return str(expected)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content") or "") for m in prompt if isinstance(m, dict))


def make_hint(
    row: dict[str, Any],
    kind: str = "auto",
    n_tokens: int = 2,
    tokenize: Callable[[str], list[str]] | None = None,
) -> str | None:
    """The minimal hint for one prompt, or ``None`` when none can be made.

    Args:
        row: The data row: ``prompt``, ``expected`` and, for classification, ``labels``.
        kind: ``labels`` (the label set), ``prefix`` (the first ``n_tokens`` tokens of the reference,
            at most half of them, at least one), or ``auto``: the label set when the prompt does not
            already list every label, else the first test line for code, else the prefix.
        n_tokens: Prefix length in tokens.
        tokenize: Text → token strings whose concatenation is the text (default: whitespace words).

    Examples:
        >>> row = {"prompt": [{"role": "user", "content": "my card failed"}], "expected": "card_declined",
        ...        "labels": ["balance", "card_declined"]}
        >>> make_hint(row)
        'Hint: the answer is one of: balance, card_declined.'
        >>> make_hint(row, "prefix", tokenize=lambda s: ["card", "_dec", "lined"])
        'Hint: the answer begins with "card".'
        >>> make_hint({"prompt": "Add.", "expected": {"tests": "assert add(1, 2) == 3\\nassert add(0, 0) == 0"}})
        'Hint: the code must pass `assert add(1, 2) == 3`.'
    """
    labels = row.get("labels") or []
    expected = row.get("expected")
    text = _prompt_text(row.get("prompt"))
    if kind in ("auto", "labels") and labels:
        if kind == "labels" or not all(lab in text for lab in labels):
            return "Hint: the answer is one of: " + ", ".join(map(str, labels)) + "."
    if kind == "labels":
        return None
    if kind == "auto" and isinstance(expected, dict) and isinstance(expected.get("tests"), str):
        first = next(
            (ln.strip() for ln in expected["tests"].splitlines() if ln.strip().startswith("assert")), ""
        )
        if first:
            return f"Hint: the code must pass `{first}`."
    ref = reference_text(expected).strip()
    if not ref:
        return None
    toks = tokenize(ref) if tokenize else ref.split(" ")
    toks = [t for t in toks if t]
    if not toks:
        return None
    k = min(max(1, n_tokens), max(1, len(toks) // 2))
    prefix = ("" if tokenize else " ").join(toks[:k]).strip()
    return f'Hint: the answer begins with "{prefix}".' if prefix else None


def add_hint(prompt: Any, hint: str) -> Any:
    """The prompt with ``hint`` appended to its last user message (a new object; the input is kept).

    Examples:
        >>> add_hint([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], "Hint: x.")
        [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'Q\\n\\nHint: x.'}]
        >>> add_hint("Q", "Hint: x.")
        'Q\\n\\nHint: x.'
    """
    if isinstance(prompt, str):
        return f"{prompt}\n\n{hint}"
    msgs = [dict(m) for m in prompt]
    for m in reversed(msgs):
        if m.get("role") == "user":
            m["content"] = f"{m.get('content') or ''}\n\n{hint}"
            return msgs
    return [*msgs, {"role": "user", "content": hint}]


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


@dataclass
class HintState:
    """What the hint path has done so far (saved in checkpoints)."""

    groups_seen: int = 0
    all_zero: int = 0
    hinted: int = 0
    hinted_ids: list[str] = field(default_factory=list)
    revisited: dict[str, bool] = field(default_factory=dict)  # id -> passed without a hint on a later visit
    recheck: dict[str, bool] = field(
        default_factory=dict
    )  # id -> greedy decode without hint passes (end of training)

    def summary(self) -> dict[str, Any]:
        return {
            "groups_seen": self.groups_seen,
            "all_zero_groups": self.all_zero,
            "hinted": self.hinted,
            "hinted_prompts": len(set(self.hinted_ids)),
            "share": round(self.hinted / self.groups_seen, 4) if self.groups_seen else 0.0,
            "revisited": len(self.revisited),
            "passed_without_hint_on_revisit": sum(self.revisited.values()),
            "recheck": {
                "n": len(self.recheck),
                "passed": sum(self.recheck.values()),
                "passed_ids": sorted(k for k, v in self.recheck.items() if v),
            },
        }


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


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------

# Row tensors of a generation batch and how they are padded (TRL: prompts left, completions right).
_LEFT = {"prompt_ids", "prompt_mask"}
_ROW_KEYS = {
    "prompt_ids",
    "prompt_mask",
    "completion_ids",
    "completion_mask",
    "advantages",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
}


def merge_rows(
    base: dict[str, Any], repl: dict[str, Any], rows: list[int], repl_rows: list[int], pad_token_id: int
) -> dict[str, Any]:
    """``base`` with rows ``rows`` replaced by ``repl``'s rows ``repl_rows`` (padded batches of TRL).

    Keys outside ``_ROW_KEYS`` (and ``num_items_in_batch``, recomputed by the caller) are kept from
    ``base``. Widths are unified by padding: prompts on the left, everything else on the right.
    """
    import torch

    out = dict(base)
    idx = torch.tensor(rows, dtype=torch.long)
    ridx = torch.tensor(repl_rows, dtype=torch.long)
    for key in _ROW_KEYS & set(base) & set(repl):
        a, b = base[key], repl[key]
        if a.dim() == 2 and b.dim() == 2 and a.size(1) != b.size(1):
            width = max(a.size(1), b.size(1))
            value = pad_token_id if key == "prompt_ids" else 0
            a = _pad_to(a, width, value, left=key in _LEFT)
            b = _pad_to(b, width, value, left=key in _LEFT)
        merged = a.clone()
        merged[idx.to(a.device)] = b[ridx.to(b.device)].to(a.dtype)
        out[key] = merged
    return out


def _pad_to(t: Any, width: int, value: float, left: bool) -> Any:
    import torch

    extra = width - t.size(1)
    if extra <= 0:
        return t
    filler = torch.full((t.size(0), extra), value, dtype=t.dtype, device=t.device)
    return torch.cat([filler, t] if left else [t, filler], dim=1)


@lru_cache(maxsize=1)
def _trainer_class() -> type:
    import torch
    from accelerate.utils import gather_object
    from trl import GRPOTrainer

    class KaizenGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` + advantage weighting, hints for all-zero groups, state in checkpoints.

        Extra keyword arguments: ``adv_weight_pos``, ``adv_weight_neg`` (floats), ``hint_share``
        (0 disables hints), ``hint`` ("auto" | "labels" | "prefix"), ``hint_tokens``, ``hint_recheck``,
        ``job_dir`` (where hints.jsonl and grpo.json go). See the module docstring.
        """

        def __init__(
            self,
            *args: Any,
            adv_weight_pos: float = 1.0,
            adv_weight_neg: float = 1.0,
            hint_share: float = 0.0,
            hint: str = "auto",
            hint_tokens: int = 2,
            hint_recheck: bool = True,
            job_dir: str | Path | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.adv_weight_pos, self.adv_weight_neg = float(adv_weight_pos), float(adv_weight_neg)
            self.hint_share, self.hint_kind, self.hint_tokens = float(hint_share), hint, int(hint_tokens)
            self.hint_recheck = hint_recheck
            self.job_dir = Path(job_dir) if job_dir else Path(self.args.output_dir)
            self.hints = HintState()
            self._last_rewards: list[float] = []
            self._rows_by_id: dict[str, dict[str, Any]] | None = None

        # -- positive/negative advantage weighting ------------------------------------------
        def _compute_loss(self, model, inputs):  # noqa: ANN001, ANN202
            if self.adv_weight_pos != 1.0 or self.adv_weight_neg != 1.0:
                inputs = dict(inputs)
                inputs["advantages"] = weight_advantages(
                    inputs["advantages"], self.adv_weight_pos, self.adv_weight_neg
                )
            return super()._compute_loss(model, inputs)

        # -- rewards, seen by the hint path ---------------------------------------------------
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
            per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            total = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
            total[torch.isnan(per_func).all(dim=1)] = 0.0
            self._last_rewards = total.tolist()  # gathered: every rank's completions, in rank order
            return per_func

        def _hint_for(self, row: dict[str, Any]) -> str | None:
            tok = self.processing_class
            tokenizer: Any = getattr(tok, "tokenizer", tok)  # a processor wraps its tokenizer

            def tokenize(text: str) -> list[str]:
                ids = tokenizer.encode(text, add_special_tokens=False)
                # The first tokens as text (decoded growing prefixes, so they concatenate back to the
                # text); the rest only count, towards the "at most half" rule.
                pieces, prev = [], ""
                for i in range(1, min(len(ids), self.hint_tokens) + 1):
                    cur = tokenizer.decode(ids[:i])
                    pieces.append(cur[len(prev) :])
                    prev = cur
                return pieces + ["·"] * (len(ids) - len(pieces))

            return make_hint(decode_row(row), self.hint_kind, self.hint_tokens, tokenize)

        def _generate_and_score_completions(self, inputs):  # noqa: ANN001, ANN202
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return out
            G = self.num_generations
            rewards = list(self._last_rewards)
            ids = [str(i) for i in gather_object([str(x.get("id", "")) for x in inputs])]
            if len(rewards) != len(ids) or len(rewards) % G:
                return out  # not TRL's grouped layout (should not happen): no hints rather than wrong ones
            n_groups = len(rewards) // G
            zero = all_zero_groups(rewards, G)
            # Hinted prompts met again without a hint: do they pass now?
            hinted_before = set(self.hints.hinted_ids)
            for g in range(n_groups):
                gid = ids[g * G]
                if gid in hinted_before:
                    passed = any(r > 0 for r in rewards[g * G : (g + 1) * G])
                    self.hints.revisited[gid] = self.hints.revisited.get(gid, False) or passed
            self.hints.groups_seen += n_groups
            self.hints.all_zero += len(zero)
            local = {str(x.get("id", "")): x for x in inputs}

            def hint_of_group(g: int) -> str | None:
                row = local.get(ids[g * G]) or self._row(ids[g * G])
                return self._hint_for(row) if row is not None else None

            budget = hint_budget(self.hints.groups_seen, self.hints.hinted, self.hint_share)
            used = choose_hints(rewards, G, budget, hint_of_group)
            if used and set(out) - _ROW_KEYS - {"num_items_in_batch"}:
                used = []  # multimodal or tool batches: not supported by the merge below
            if used:
                out = self._resample_with_hints(inputs, out, used, rewards, ids)
            m = self._metrics["train"]
            m["hints/all_zero_groups"].append(float(len(zero)))
            m["hints/used"].append(float(len(used)))
            m["hints/total"].append(float(self.hints.hinted))
            m["hints/share"].append(self.hints.hinted / max(1, self.hints.groups_seen))
            m["hints/revisited"].append(float(len(self.hints.revisited)))
            m["hints/passed_without_hint"].append(float(sum(self.hints.revisited.values())))
            return out

        def _resample_with_hints(
            self,
            inputs: list[dict[str, Any]],
            out: dict[str, Any],
            used: list[tuple[int, str]],
            rewards: list[float],
            ids: list[str],
        ) -> dict[str, Any]:
            G, rank, n_local = self.num_generations, self.accelerator.process_index, len(inputs)
            hint_of = dict(used)
            offset = rank * n_local
            local_rows = [i for i in range(n_local) if (offset + i) // G in hint_of]
            distributed = self.accelerator.num_processes > 1
            if distributed:
                # Every rank re-generates its whole local batch (hinted where chosen) so that the
                # collectives inside generation and reward gathering stay in step across ranks.
                sub = [
                    dict(x, prompt=add_hint(x["prompt"], hint_of[(offset + i) // G]))
                    if (offset + i) // G in hint_of
                    else x
                    for i, x in enumerate(inputs)
                ]
                take = local_rows  # row i of the re-generated batch is local row i
            else:
                sub = [
                    dict(inputs[i], prompt=add_hint(inputs[i]["prompt"], hint_of[i // G])) for i in local_rows
                ]
                take = list(range(len(local_rows)))  # the sub-batch holds only the hinted rows, in order
            metrics = self._metrics["train"]
            before = {k: len(v) for k, v in metrics.items()}
            hinted_out = super()._generate_and_score_completions(sub)
            # The hinted pass's own logs would blur the step's reward curve: keep only ours.
            for k in list(metrics):
                if k not in before:
                    del metrics[k]
                else:
                    del metrics[k][before[k] :]
            hinted_rewards = list(self._last_rewards)
            merged = merge_rows(out, hinted_out, local_rows, take, self._tokenizer.pad_token_id)
            mask = (
                merged["completion_mask"]
                if "tool_mask" not in merged
                else merged["completion_mask"] * merged["tool_mask"]
            )
            merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
            # Rewards of the hinted groups, in the order the hinted pass scored them.
            if distributed:
                groups_rewards = {g: hinted_rewards[g * G : (g + 1) * G] for g, _ in used}
            else:
                flat = iter(hinted_rewards)
                groups_rewards = {g: [next(flat) for _ in range(G)] for g, _ in used}
            hinted_vals = [r for rs in groups_rewards.values() for r in rs]
            metrics["hints/reward"].append(sum(hinted_vals) / max(1, len(hinted_vals)))
            self.hints.hinted += len(used)
            for g, _hint in used:
                self.hints.hinted_ids.append(ids[g * G])
            if self.accelerator.is_main_process:
                with (self.job_dir / HINTS_FILE).open("a") as f:
                    for g, hint in used:
                        f.write(
                            json.dumps(
                                {
                                    "step": self.state.global_step + 1,
                                    "id": ids[g * G],
                                    "hint": hint,
                                    "rewards_before": rewards[g * G : (g + 1) * G],
                                    "rewards_with_hint": groups_rewards[g],
                                }
                            )
                            + "\n"
                        )
            return merged

        def _row(self, row_id: str) -> dict[str, Any] | None:
            if self._rows_by_id is None:
                self._rows_by_id = (
                    {str(r["id"]): dict(r) for r in self.train_dataset}
                    if "id" in self.train_dataset.column_names
                    else {}
                )
            return self._rows_by_id.get(row_id)

        # -- end of training: recheck hinted prompts without their hint -------------------------
        def train(self, *args: Any, **kwargs: Any):  # noqa: ANN201
            result = super().train(*args, **kwargs)
            if self.hint_recheck and self.hints.hinted_ids:
                self._recheck_hinted()
            self._write_summary()
            return result

        @torch.no_grad()
        def _recheck_hinted(self) -> None:
            rows = [r for r in (self._row(i) for i in dict.fromkeys(self.hints.hinted_ids)) if r is not None]
            if not rows:
                return
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            tok = self.processing_class
            tokenizer: Any = getattr(tok, "tokenizer", tok)  # a processor wraps its tokenizer
            side = tokenizer.padding_side
            tokenizer.padding_side = "left"
            try:
                from trl.data_utils import apply_chat_template

                texts = [
                    apply_chat_template({"prompt": r["prompt"]}, tokenizer)["prompt"]
                    if not isinstance(r["prompt"], str)
                    else r["prompt"]
                    for r in rows
                ]
                outs: list[str] = []
                for start in range(0, len(texts), RECHECK_BATCH):
                    enc = tokenizer(
                        texts[start : start + RECHECK_BATCH],
                        return_tensors="pt",
                        padding=True,
                        add_special_tokens=False,
                    ).to(model.device)
                    gen = model.generate(
                        **enc,
                        max_new_tokens=self.max_completion_length,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id,
                    )
                    outs += tokenizer.batch_decode(
                        gen[:, enc["input_ids"].size(1) :], skip_special_tokens=True
                    )
            finally:
                tokenizer.padding_side = side
                model.train(was_training)
            conversational = not isinstance(rows[0]["prompt"], str)
            completions = [[{"role": "assistant", "content": o}] if conversational else o for o in outs]
            columns = {k: [r[k] for r in rows] for k in rows[0] if k not in ("prompt",)}
            total = [0.0] * len(rows)
            for fn, w in zip(self.reward_funcs, self.reward_weights.tolist(), strict=True):
                if not callable(fn) or isinstance(fn, torch.nn.Module):
                    continue
                vals = fn(
                    prompts=[r["prompt"] for r in rows],
                    completions=completions,
                    completion_ids=None,
                    **columns,
                )
                total = [t + w * (v or 0.0) for t, v in zip(total, vals, strict=True)]
            self.hints.recheck = {str(r["id"]): t > 0 for r, t in zip(rows, total, strict=True)}

        def _write_summary(self) -> None:
            if not self.accelerator.is_main_process:
                return
            stop = next(
                (
                    getattr(cb, "stopped", None)
                    for cb in self.callback_handler.callbacks
                    if type(cb).__name__ == "EntropyFloorStop"
                ),
                None,
            )
            summary = {
                "hints": self.hints.summary(),
                "early_stop": stop,
                "adv_weight_pos": self.adv_weight_pos,
                "adv_weight_neg": self.adv_weight_neg,
                "hint_share": self.hint_share,
                "use_vllm": bool(self.use_vllm),
            }
            tmp = self.job_dir / (SUMMARY_FILE + ".tmp")
            tmp.write_text(json.dumps(summary, indent=2))
            os.replace(tmp, self.job_dir / SUMMARY_FILE)

        # -- checkpoint state -----------------------------------------------------------------
        def _entropy_cb(self) -> Any:
            return next(
                (cb for cb in self.callback_handler.callbacks if type(cb).__name__ == "EntropyFloorStop"),
                None,
            )

        def _save_checkpoint(self, model, trial):  # noqa: ANN001, ANN202
            super()._save_checkpoint(model, trial)
            if not self.args.should_save:
                return
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            ckpt = (
                Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            cb = self._entropy_cb()
            state = {"hints": asdict(self.hints), "entropy_low": cb.low if cb else 0}
            (ckpt / STATE_FILE).write_text(json.dumps(state))

        def _load_optimizer_and_scheduler(self, checkpoint):  # noqa: ANN001, ANN202
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is None:
                return
            path = Path(checkpoint) / STATE_FILE
            if path.exists():
                state = json.loads(path.read_text())
                self.hints = HintState(**state.get("hints", {}))
                cb = self._entropy_cb()
                if cb is not None:
                    cb.low = int(state.get("entropy_low", 0))

    return KaizenGRPOTrainer


def __getattr__(name: str) -> Any:  # PEP 562: TRL is imported only when the trainer is asked for
    if name == "KaizenGRPOTrainer":
        return _trainer_class()
    raise AttributeError(name)
