"""The models and skills pages: the versions of each, their lineage, and how two versions differ.

Model versions are compared on the data sets both were evaluated on (the latest result of each), with
the examples that flipped; skill versions as a unified diff of their bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.tools.skills import diff_skills, get_skill, list_skills
from kaizen.tools.store.tables import AliasEvent, EvalResultRow
from kaizen.workflows.ui.base import ReaderBase
from kaizen.workflows.ui.common import as_dict, as_list, jsonable, read_jsonl


class VersionsView(ReaderBase):
    """Model versions (lineage, scores, diff), skill versions (list, diff) and alias moves."""

    def models(self, task: str | None = None) -> dict[str, Any]:
        versions = self.store.list_model_versions(task)
        tasks = [task] if task else self.task_names()
        aliases: dict[str, list[str]] = {}
        for t in tasks:
            for name, a in self.store.aliases(t).items():
                label = name if task else f"{t}:{name}"
                aliases.setdefault(a.model_version, []).append(
                    label + (f"+skill{a.skill_version}" if a.skill_version else "")
                )
        evals = self.store.eval_results(task)
        latest: dict[str, dict[str, Any]] = {}
        for e in evals:
            latest.setdefault(e.model_version, {})[e.suite] = {"score": e.score, "n": e.n, "metric": e.metric}
        names = {v.name for v in versions}
        rows, edges = [], []
        for v in versions:
            parent = v.parent or (v.base_ref if v.kind == "adapter" else None)
            if parent and parent in names:
                edges.append({"from": parent, "to": v.name})
            recipe = as_dict(v.recipe)
            rows.append(
                {
                    "name": v.name,
                    "kind": v.kind,
                    "base_ref": v.base_ref,
                    "parent": parent,
                    "task": v.task,
                    "adapter_path": v.adapter_path,
                    "data_hash": v.data_hash,
                    "created_at": jsonable(v.created_at),
                    "recipe": jsonable(recipe),
                    "recipe_short": _recipe_short(recipe),
                    "metrics": jsonable({k: val for k, val in as_dict(v.metrics).items() if k != "suites"}),
                    "aliases": sorted(aliases.get(v.name, [])),
                    "scores": latest.get(v.name, {}),
                }
            )
        return {"task": task, "versions": rows, "edges": edges}

    def model_diff(self, a: str, b: str, task: str | None = None) -> dict[str, Any]:
        """Two versions' scores on the suites both were evaluated on (same data set), with example flips."""
        for v in (a, b):
            self.store.get_model_version(v)
        rows = self.store.eval_results(task, model_versions=[a, b])
        by: dict[tuple[str, str], EvalResultRow] = {}
        for r in rows:  # the latest result per (version, data set)
            by[(r.model_version, r.dataset_id)] = r
        shared = sorted({ds for (v, ds) in by if v == a} & {ds for (v, ds) in by if v == b})
        out = []
        for ds in shared:
            ra, rb = by[(a, ds)], by[(b, ds)]
            ca, cb = _correct(ra.outputs_path), _correct(rb.outputs_path)
            flips = None
            if ca and cb:
                ids = set(ca) & set(cb)
                flips = {
                    "newly_right": sorted(i for i in ids if not ca[i] and cb[i]),
                    "newly_wrong": sorted(i for i in ids if ca[i] and not cb[i]),
                }
            out.append(
                {
                    "dataset_id": ds,
                    "suite": rb.suite if rb.suite == ra.suite else f"{ra.suite} / {rb.suite}",
                    "run_id": rb.run_id or ra.run_id,
                    "metric": rb.metric,
                    "n": rb.n,
                    "a": ra.score,
                    "b": rb.score,
                    "delta": rb.score - ra.score,
                    "flips": flips,
                }
            )
        only = sorted({f"{r.suite}" for (v, ds), r in by.items() if ds not in shared})
        return {"a": a, "b": b, "task": task, "shared": out, "not_shared": only}

    def skills(self, task: str) -> dict[str, Any]:
        self.store.get_task(task)
        listed = {x["version"]: x for x in list_skills(self.store, task)}
        rows = self.store.skill_rows(task)
        versions = [
            {
                "version": r.version,
                "parent": r.parent,
                "created_at": jsonable(r.created_at),
                "body": jsonable(r.body),
                "aliases": as_list(as_dict(listed.get(r.version)).get("aliases")),
            }
            for r in rows
        ]
        return {"task": task, "versions": versions}

    def skill_diff(self, task: str, a: int, b: int) -> dict[str, Any]:
        """Unified diff of two skill versions (0: no skill, the task's system prompt alone)."""
        sa = get_skill(self.store, task, a) if a else None
        sb = get_skill(self.store, task, b) if b else None
        text = diff_skills(sa, sb, (f"skill {a}", f"skill {b}"))
        return {"task": task, "a": a, "b": b, "diff": text.splitlines()}

    # ---------------------------------------------------------------------------------- history
    def alias_events(self, task: str) -> list[AliasEvent]:
        return self.store.alias_history(task)


def _recipe_short(recipe: dict[str, Any]) -> str:
    """One line of a version's recipe: what a person scans in a lineage graph."""
    parts = []
    for k in ("source", "kind", "strategy", "epochs", "learning_rate", "max_steps", "n_examples", "examples"):
        if recipe.get(k) not in (None, "", [], {}):
            parts.append(f"{k} {recipe[k]}")
    lora = recipe.get("lora")
    if isinstance(lora, dict) and lora.get("r"):
        parts.append(f"LoRA r{lora['r']}")
    return ", ".join(parts[:5])


def _correct(path: str | None) -> dict[str, bool] | None:
    if not path:
        return None
    rows = read_jsonl(Path(path))
    return {str(r.get("id")): bool(r.get("correct")) for r in rows if "id" in r} or None
