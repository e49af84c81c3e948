"""GRPO hints for all-zero groups (after KnowRL): which groups get one, what it says, how it is merged.

When every completion of a prompt scores 0 there is no learning signal, so ``KaizenGRPOTrainer``
(``kaizen.tools.train.grpo_trainer``) samples that group again with a minimal hint. The pure parts live
here: the choice within the share (``all_zero_groups``, ``hint_budget``, ``choose_hints``), the hint
itself (``make_hint``, ``add_hint``), the state saved in checkpoints (``HintState``) and the merge of a
hinted batch back into TRL's padded one (``merge_rows``). ``kaizen.tools.train.grpo`` tells the whole
story. No heavy library is imported at module level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


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
            at most half of them, at least one), ``answer`` (the whole reference, which the trainer puts
            in the group as a completion rather than in the prompt: ``answer_hint``), or ``auto``: the
            label set when the prompt does not already list every label, else the first test line for
            code, else the prefix.
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
    if kind == "answer":
        return answer_hint(expected, labels)
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


def answer_hint(expected: Any, labels: Sequence[str] = ()) -> str | None:
    """The reference as a whole reply, for off-policy guidance of an all-zero group; ``None`` when the
    reference is not a whole reply.

    After LUFFY (README, Research: "Learning to reason under off-policy guidance"): when no sampled
    completion of a prompt is right, one of the group's completions is replaced by the reference reply,
    so the group has a right answer to move towards *on the prompt as asked* (a prompt hint teaches the
    hinted prompt, which the model never sees again). Only where the reference is the whole reply the
    verifier wants — a label, a JSON object; a math or code reference is a final answer or tests, not a
    reply, so those groups get no guidance.

    Examples:
        >>> answer_hint("card_declined", ["balance", "card_declined"]), answer_hint({"name": "Ann"})
        ('card_declined', '{"name": "Ann"}')
        >>> answer_hint("72") is None, answer_hint({"tests": "assert f() == 1"}) is None
        (True, True)
    """
    if labels:
        return str(expected).strip() or None
    if isinstance(expected, dict) and "tests" not in expected:
        return reference_text(expected)
    return None


def guided_advantages(group_size: int, scale: bool = True) -> list[float]:
    """The advantages of a group whose last completion is the injected reference (reward 1, others 0).

    TRL's group-relative rule: reward minus the group mean, divided by the group's (sample) standard
    deviation when rewards are scaled. The reference gets a positive advantage, the group's own wrong
    samples a negative one.

    Examples:
        >>> [round(a, 3) for a in guided_advantages(4)]
        [-0.5, -0.5, -0.5, 1.5]
        >>> guided_advantages(2, scale=False)
        [-0.5, 0.5]
    """
    if group_size < 2:
        raise ValueError("a guided group needs at least 2 completions")
    mean = 1.0 / group_size
    rewards = [0.0] * (group_size - 1) + [1.0]
    adv = [r - mean for r in rewards]
    if scale:
        std = math.sqrt(sum(a * a for a in adv) / (group_size - 1))
        adv = [a / (std + 1e-4) for a in adv]
    return adv


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


OFF_POLICY_KEYS = frozenset(
    {"old_per_token_logps", "ref_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio"}
)
"""Per-row log-probs TRL keeps when a batch is not purely on-policy (or has a KL reference); an injected
reference reply gets its own (``KaizenGRPOTrainer._relog_rows``)."""

# Row tensors of a generation batch and how they are padded (TRL: prompts left, completions right).
_LEFT = {"prompt_ids", "prompt_mask"}
ROW_KEYS = {
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

    Keys outside ``ROW_KEYS`` (and ``num_items_in_batch``, recomputed by the caller) are kept from
    ``base``. Widths are unified by padding: prompts on the left, everything else on the right.
    """
    import torch

    out = dict(base)
    idx = torch.tensor(rows, dtype=torch.long)
    ridx = torch.tensor(repl_rows, dtype=torch.long)
    for key in ROW_KEYS & set(base) & set(repl):
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


def pad_right(t: Any, width: int, value: float) -> Any:
    """A 2-D tensor padded on the right with ``value`` to ``width`` columns (completions are right-padded)."""
    return _pad_to(t, width, value, left=False)


def _pad_to(t: Any, width: int, value: float, left: bool) -> Any:
    import torch

    extra = width - t.size(1)
    if extra <= 0:
        return t
    filler = torch.full((t.size(0), extra), value, dtype=t.dtype, device=t.device)
    return torch.cat([filler, t] if left else [t, filler], dim=1)
