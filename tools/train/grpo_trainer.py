"""``KaizenGRPOTrainer``: TRL's ``GRPOTrainer`` with advantage weighting, hints and state in checkpoints.

What each hook does and why is told in ``kaizen.tools.train.grpo`` (the advantage weighting and the
entropy early stop live there, the hint helpers in ``kaizen.tools.train.grpo_hints``); this module
wires them into TRL. Importing it loads no heavy library: the class (which needs TRL) is built on first
access of ``KaizenGRPOTrainer``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from kaizen.tools.data import write_json
from kaizen.tools.train.grpo import HINTS_FILE, STATE_FILE, SUMMARY_FILE, decode_row, weight_advantages
from kaizen.tools.train.grpo_hints import (
    OFF_POLICY_KEYS,
    ROW_KEYS,
    HintState,
    add_hint,
    all_zero_groups,
    choose_hints,
    guided_advantages,
    hint_budget,
    make_hint,
    merge_rows,
    pad_right,
)

RECHECK_BATCH = 16  # prompts per greedy generate call of the end-of-training recheck


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
            self._warned_off_policy = False

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
            if used and set(out) - ROW_KEYS - {"num_items_in_batch"}:
                used = []  # multimodal or tool batches: not supported by the merge below
            if used and self.hint_kind == "answer" and "tool_mask" in out:
                # An injected reply has no tool turns to interleave: tool-calling batches are not guided.
                used = []
                if not self._warned_off_policy:
                    self._warned_off_policy = True
                    print(
                        "kaizen: hint 'answer' does not guide tool-calling batches: no guidance in this job"
                    )
            if used:
                out = (
                    self._guide_with_answers(out, used, rewards, ids)
                    if self.hint_kind == "answer"
                    else self._resample_with_hints(inputs, out, used, rewards, ids)
                )
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
            self._log_hints(used, rewards, ids, groups_rewards)
            return merged

        def _log_hints(
            self,
            used: list[tuple[int, str]],
            rewards: list[float],
            ids: list[str],
            with_hint: dict[int, list[float]],
        ) -> None:
            """Count the hinted groups and append one line per hint to ``hints.jsonl`` (main process)."""
            G = self.num_generations
            self.hints.hinted += len(used)
            for g, _hint in used:
                self.hints.hinted_ids.append(ids[g * G])
            if not self.accelerator.is_main_process:
                return
            with (self.job_dir / HINTS_FILE).open("a") as f:
                for g, hint in used:
                    line = {
                        "step": self.state.global_step + 1,
                        "id": ids[g * G],
                        "hint": hint,
                        "kind": self.hint_kind,
                        "rewards_before": rewards[g * G : (g + 1) * G],
                        "rewards_with_hint": with_hint[g],
                    }
                    f.write(json.dumps(line) + "\n")

        def _guide_with_answers(
            self, out: dict[str, Any], used: list[tuple[int, str]], rewards: list[float], ids: list[str]
        ) -> dict[str, Any]:
            """Off-policy guidance (``hint="answer"``): the last completion of each chosen all-zero group
            becomes the reference reply + end of turn, and the group's advantages are recomputed as if it
            alone scored 1 (``guided_advantages``). The prompt is left as asked."""
            G, offset = self.num_generations, self.accelerator.process_index * len(out["completion_ids"])
            out = dict(out)
            comp, mask, adv = out["completion_ids"], out["completion_mask"], out["advantages"].clone()
            replaced: list[int] = []
            # Every guided group looks alike to the reward: the reference scored 1, the group's own samples 0.
            group_rewards = [0.0] * (G - 1) + [1.0]
            group_adv = guided_advantages(G, scale=self.scale_rewards != "none")
            for g, answer in used:
                row = g * G + G - 1 - offset  # the group's last completion, if it is on this rank
                toks = self._tokenizer.encode(answer, add_special_tokens=False) + [self.eos_token_ids[0]]
                toks = toks[: self.max_completion_length]  # as a sampled reply of that length would be
                if len(toks) > comp.size(1):
                    comp = pad_right(comp, len(toks), self._tokenizer.pad_token_id)
                    mask = pad_right(mask, len(toks), 0)
                for j in range(G):
                    local = g * G + j - offset
                    if 0 <= local < adv.size(0):
                        adv[local] = group_adv[j]
                if 0 <= row < comp.size(0):
                    comp[row] = self._tokenizer.pad_token_id
                    mask[row] = 0
                    comp[row, : len(toks)] = torch.tensor(toks, dtype=comp.dtype, device=comp.device)
                    mask[row, : len(toks)] = 1
                    replaced.append(row)
            out |= {"completion_ids": comp, "completion_mask": mask, "advantages": adv}
            if replaced and set(out) & OFF_POLICY_KEYS:
                out = self._relog_rows(out, replaced)
            out["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
            self._metrics["train"]["hints/reward"].append(1.0 / G)
            self._log_hints(used, rewards, ids, {g: group_rewards for g, _ in used})
            return out

        @torch.no_grad()
        def _relog_rows(self, out: dict[str, Any], rows: list[int]) -> dict[str, Any]:
            """The per-token log-probs TRL keeps for off-policy terms, recomputed for injected replies.

            A reference reply was never sampled: its "old" log-probs are the current policy's (as for an
            on-policy row), its reference log-probs the reference model's (the KL term), and its sampling
            log-probs are set to the old ones — an importance ratio of 1, i.e. no vLLM-mismatch correction
            for a reply vLLM did not write. Tensors are first widened to the (possibly longer) completions.
            """
            from trl.trainer.utils import use_adapter

            comp, mask = out["completion_ids"], out["completion_mask"]
            width = comp.size(1)
            for key in OFF_POLICY_KEYS & set(out):
                t = out[key]
                if t is not None and t.dim() == 2 and t.size(1) not in (1, width):
                    out[key] = pad_right(t, width, 1.0 if key == "importance_sampling_ratio" else 0.0)
            idx = torch.tensor(rows, device=comp.device)
            ids = torch.cat([out["prompt_ids"][idx], comp[idx]], dim=1)
            attn = torch.cat([out["prompt_mask"][idx], mask[idx]], dim=1)

            def logps(model: Any) -> Any:
                lp, _, _ = self._get_per_token_logps_and_entropies(
                    model, ids, attn, width, batch_size=len(rows)
                )
                return lp

            def put(key: str, value: Any) -> None:  # the injected rows only; TRL's tensor stays as it was
                out[key] = out[key].clone()
                out[key][idx] = value

            current = logps(self.model)
            for key in ("old_per_token_logps", "sampling_per_token_logps"):
                if out.get(key) is not None:
                    put(key, current)
            if out.get("importance_sampling_ratio") is not None:
                put("importance_sampling_ratio", 1.0)
            if out.get("ref_per_token_logps") is not None:
                if self.ref_model is not None:
                    ref = logps(self.ref_model)
                else:  # a PEFT adapter: its base (or the "ref" copy of a continued adapter), as TRL does
                    model = self.accelerator.unwrap_model(self.model)
                    with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
                        ref = logps(self.model)
                put("ref_per_token_logps", ref)
            return out

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
            write_json(self.job_dir / SUMMARY_FILE, summary)

        # -- checkpoint state -----------------------------------------------------------------
        def _entropy_cb(self) -> Any:
            return next(
                (cb for cb in self.callback_handler.callbacks if type(cb).__name__ == "EntropyFloorStop"),
                None,
            )

        def _save_checkpoint(self, model, trial):  # noqa: ANN001, ANN202
            # The hint state goes in *before* the Trainer's own files: the runner takes a checkpoint as complete
            # once trainer_state.json (written last by the Trainer) exists, so a kill between the two must not
            # leave a "complete" checkpoint without it (a resume would silently reset the hint budget).
            if self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                ckpt = (
                    Path(self._get_output_dir(trial=trial))
                    / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
                )
                cb = self._entropy_cb()
                write_json(
                    ckpt / STATE_FILE, {"hints": asdict(self.hints), "entropy_low": cb.low if cb else 0}
                )
            super()._save_checkpoint(model, trial)

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
