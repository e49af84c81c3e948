"""Inference backends behind one protocol: transformers (CPU default), vLLM (a server, or the offline
engine where ``import vllm`` works; in ``kaizen.tools.evaluate.vllm_backends``), OpenAI-compatible.

Every backend takes already-rendered chats (``kaizen.tools.schema.render``) and decodes greedily by
default, and reports its decoding settings so the gate can check that candidate and incumbent
were measured the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kaizen.tools.errors import ConfigError

Chat = list[dict[str, str]]
ProgressFn = Callable[[int, int], None]


# What constrained classification reports when greedy decoding would have left the label set.
OFF_LABEL = "(off-label)"


@runtime_checkable
class InferenceBackend(Protocol):
    name: str

    def generate(
        self, chats: Sequence[Chat], *, max_new_tokens: int, progress: ProgressFn | None = None
    ) -> list[str]:
        """One greedy reply per chat, in order."""
        ...

    def decoding(self) -> dict[str, Any]:
        """The settings that shape outputs (recorded with every eval result)."""
        ...


class TransformersBackend:
    """Batched greedy generation with left padding; also label scoring by likelihood.

    Batches are formed from chats sorted by length (less padding), results returned in the
    caller's order.
    """

    name = "transformers"

    def __init__(
        self,
        base_dir: Path,
        adapter_dir: Path | None = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 16,
    ):
        from kaizen.tools.models.load import load_model

        self.model, self.tokenizer = load_model(base_dir, adapter_dir, device=device, dtype=dtype)
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.base_dir, self.adapter_dir = str(base_dir), str(adapter_dir) if adapter_dir else None

    def decoding(self) -> dict[str, Any]:
        return {"backend": self.name, "greedy": True, "dtype": str(next(self.model.parameters()).dtype)}

    def _prompts(self, chats: Sequence[Chat]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats
        ]

    def _encode(self, prompts: list[str]) -> tuple[Any, Any, Any]:
        """A left-padded batch: (encoding, attention mask, position ids that skip the padding)."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        attn = enc["attention_mask"]
        return enc, attn, (attn.cumsum(-1) - 1).clamp(min=0)

    def _batches(self, prompts: list[str]) -> list[list[int]]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def generate(
        self, chats: Sequence[Chat], *, max_new_tokens: int = 32, progress: ProgressFn | None = None
    ) -> list[str]:
        import torch

        prompts = self._prompts(chats)
        out: list[str] = [""] * len(prompts)
        done = 0
        for idx in self._batches(prompts):
            enc = self.tokenizer(
                [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, text in zip(idx, self.tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                out[i] = text.strip()
            done += len(idx)
            if progress:
                progress(done, len(prompts))
        return out

    def classify_prefix(
        self, chats: Sequence[Chat], labels: Sequence[str], *, progress: ProgressFn | None = None
    ) -> list[str]:
        """Greedy decoding that stops as soon as it has left the label set or finished a label.

        The same answers as greedy generation for every reply that is a label (the label's tokens and
        the end-of-turn token must each be the model's argmax); a reply that leaves the label trie is
        reported as ``OFF_LABEL`` at once instead of being decoded to its end. So a batch stops after the
        longest *label* rather than after ``max_new_tokens`` of the longest ramble. The gate never
        compares it with another mode.
        """
        import torch

        tok = self.tokenizer
        end = [tok.eos_token_id] if tok.eos_token_id is not None else []
        seqs = [tok(lab, add_special_tokens=False)["input_ids"] + end for lab in labels]
        prompts = self._prompts(chats)
        out: list[str] = [""] * len(prompts)
        done = 0
        for idx in self._batches(prompts):
            enc, attn, pos = self._encode([prompts[i] for i in idx])
            cands = [list(range(len(labels))) for _ in idx]
            decided: list[str | None] = [None] * len(idx)
            with torch.inference_mode():
                res = self.model(
                    input_ids=enc["input_ids"],
                    attention_mask=attn,
                    position_ids=pos,
                    use_cache=True,
                    logits_to_keep=1,
                )
                step = 0
                while True:
                    nxt = res.logits[:, -1, :].argmax(-1).tolist()
                    chosen = []
                    for r in range(len(idx)):
                        if decided[r] is not None:
                            chosen.append(tok.pad_token_id)
                            continue
                        live = [j for j in cands[r] if step < len(seqs[j])]
                        if nxt[r] not in {seqs[j][step] for j in live}:
                            decided[r] = OFF_LABEL
                        else:
                            cands[r] = [j for j in live if seqs[j][step] == nxt[r]]
                            whole = [j for j in cands[r] if len(seqs[j]) == step + 1]
                            if whole:  # the label and its end-of-turn were all the model's own argmax
                                decided[r] = labels[whole[0]]
                        chosen.append(nxt[r])
                    if all(d is not None for d in decided):
                        break
                    step += 1
                    attn = torch.cat(
                        [attn, torch.ones((attn.shape[0], 1), dtype=attn.dtype, device=self.device)], dim=1
                    )
                    res = self.model(
                        input_ids=torch.tensor(chosen, device=self.device).unsqueeze(1),
                        attention_mask=attn,
                        position_ids=(attn.sum(-1) - 1).unsqueeze(1),
                        past_key_values=res.past_key_values,
                        use_cache=True,
                    )
            for r, i in enumerate(idx):
                out[i] = decided[r] or OFF_LABEL
            done += len(idx)
            if progress:
                progress(done, len(prompts))
        return out

    def score_labels(
        self, chats: Sequence[Chat], labels: Sequence[str], *, progress: ProgressFn | None = None
    ) -> list[str]:
        """Pick, per chat, the label with the highest log-likelihood as the reply (never off-label)."""
        rows = self.label_logprobs(chats, labels, progress=progress)
        return [labels[max(range(len(labels)), key=row.__getitem__)] for row in rows]

    def label_logprobs(
        self, chats: Sequence[Chat], labels: Sequence[str], *, progress: ProgressFn | None = None
    ) -> list[list[float]]:
        """Per chat, the log-likelihood of every label as the whole reply (label tokens + end of turn).

        The prompt goes through the model once; its KV cache is repeated for every label and all
        label continuations (each ending with the end-of-turn token, so a label that is a prefix of
        another is not favoured) are scored in a single batched forward pass. Triage reads these as the
        model's own evidence about a correction (confident learning).
        """
        import torch

        tok = self.tokenizer
        end = [tok.eos_token_id] if tok.eos_token_id is not None else []
        lab_ids = [tok(lab, add_special_tokens=False)["input_ids"] + end for lab in labels]
        k, width = len(labels), max(len(x) for x in lab_ids)
        lab = torch.full((k, width), tok.pad_token_id, dtype=torch.long)
        lab_mask = torch.zeros((k, width), dtype=torch.long)
        for j, ids in enumerate(lab_ids):
            lab[j, : len(ids)] = torch.tensor(ids)
            lab_mask[j, : len(ids)] = 1
        prompts = self._prompts(chats)
        out: list[list[float]] = [[] for _ in prompts]
        done = 0
        for idx in self._batches(prompts):
            enc, attn, pos = self._encode([prompts[i] for i in idx])
            b = attn.shape[0]
            with torch.inference_mode():
                # Only the last prompt position's logits are needed: skipping the lm_head (576 × 49k)
                # on every other prompt position: ~10% less CPU time (32 prompts × 10 labels: 10.7 vs 11.7 s).
                first = self.model(
                    input_ids=enc["input_ids"],
                    attention_mask=attn,
                    position_ids=pos,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache = first.past_key_values
                cache.batch_repeat_interleave(k)
                first_lp = torch.log_softmax(first.logits[:, -1, :].float(), -1)  # (b, V)
                ids = lab.to(self.device).repeat(b, 1)  # (b*k, width)
                mask = lab_mask.to(self.device).repeat(b, 1)
                full_attn = torch.cat([attn.repeat_interleave(k, 0), mask], dim=1)
                start = attn.sum(-1).repeat_interleave(k).unsqueeze(1)
                lpos = start + torch.arange(width, device=self.device).unsqueeze(0)
                rest = self.model(
                    input_ids=ids,
                    attention_mask=full_attn,
                    position_ids=lpos,
                    past_key_values=cache,
                    use_cache=False,
                )
                lp = torch.log_softmax(rest.logits[:, :-1, :].float(), -1)
                tok_lp = lp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
                first_tok = first_lp.repeat_interleave(k, 0).gather(-1, ids[:, :1]).squeeze(-1)
                total = (first_tok + tok_lp.sum(-1)).view(b, k)
            for row, i in enumerate(idx):
                out[i] = [float(x) for x in total[row].tolist()]
            done += len(idx)
            if progress:
                progress(done, len(prompts))
        return out


class OpenAIBackend:
    """Any OpenAI-compatible endpoint (OpenAI, a vLLM server, …) with bounded concurrency."""

    name = "openai"

    def __init__(
        self,
        base_url: str | None,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 60.0,
    ):
        from openai import OpenAI

        self.model, self.concurrency = model, max(1, concurrency)
        key = os.environ.get(api_key_env) or ("EMPTY" if base_url else None)
        if key is None:
            raise ConfigError(f"no API key: set {api_key_env} (or point --base-url at a local server)")
        self.client = OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=2)
        self.base_url = base_url

    def decoding(self) -> dict[str, Any]:
        return {"backend": self.name, "greedy": True, "model": self.model, "base_url": self.base_url}

    def _one(self, chat: Chat, max_new_tokens: int) -> str:
        resp = self.client.chat.completions.create(
            model=self.model, messages=chat, temperature=0.0, max_tokens=max_new_tokens
        )  # type: ignore[arg-type]
        return (resp.choices[0].message.content or "").strip()

    def generate(
        self, chats: Sequence[Chat], *, max_new_tokens: int = 32, progress: ProgressFn | None = None
    ) -> list[str]:
        out: list[str] = []
        with ThreadPoolExecutor(self.concurrency) as pool:
            for i, text in enumerate(pool.map(lambda c: self._one(c, max_new_tokens), chats), 1):
                out.append(text)
                if progress:
                    progress(i, len(chats))
        return out
