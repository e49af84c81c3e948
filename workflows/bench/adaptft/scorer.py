"""The AdaptFT run's version runner: held-out outcomes per version and the deployed model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.tools.schema import EvalItem
from kaizen.workflows.bench.adaptft.scenarios import Scenario


class Scorer:
    """Runs versions: held-out outcomes per version (each example scored once: versions are
    immutable) and the deployed model's outputs, through a small cache of loaded backends (a stage
    runs the same few versions several times; loading one costs seconds)."""

    def __init__(self, sc: Scenario, out: Path, batch: int, keep: int = 3) -> None:
        self.sc, self.out, self.batch, self.keep = sc, out, batch, keep
        self.correct: dict[str, dict[str, bool]] = {}
        self._backends: dict[str, Any] = {}

    @staticmethod
    def _key(row: Any) -> str:
        return row.adapter_path or row.base_ref  # v1 is the same adapter in both workspaces

    def backend(self, ws: Any, row: Any) -> Any:
        from kaizen.tools.versions import make_backend

        key = self._key(row)
        b = self._backends.pop(key, None) or make_backend(ws, row, batch_size=self.batch)
        self._backends[key] = b  # most recently used last
        while len(self._backends) > self.keep:
            self._backends.pop(next(iter(self._backends)))
        return b

    def generate(self, ws: Any, version: str, texts: list[str]) -> list[str]:
        from kaizen.tools.schema import render

        chats = [render(self.sc.task, None, [{"role": "user", "content": t}]) for t in texts]
        return self.backend(ws, ws.store.get_model_version(version)).generate(
            chats, max_new_tokens=self.sc.max_new_tokens
        )

    def __call__(self, ws: Any, version: str, items: list[EvalItem]) -> dict[str, bool]:
        from kaizen.tools.evaluate.run import evaluate

        row = ws.store.get_model_version(version)
        done = self.correct.setdefault(self._key(row), {})
        todo = [it for it in items if it.id not in done]
        if todo:
            n = sum(1 for _ in self.out.glob("evals/*.jsonl"))
            rep = evaluate(
                self.sc.task,
                todo,
                self.backend(ws, row),
                model_version=version,
                suite="adaptft-heldout",
                outputs_path=self.out / "evals" / f"{n:03d}-{version}.jsonl",
            )
            done.update(rep.correct_by_id)
        return {it.id: done[it.id] for it in items}
