"""synthesize: held-out suites (once per run) and this iteration's training set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen.agent.context import event, progress, run_dir, workspace, write_json
from kaizen.agent.nodes.train import continues_incumbent, holds_full_data
from kaizen.agent.state import Diagnosis, Plan
from kaizen.tools.data import load_items, write_items
from kaizen.tools.datasets import build_splits, build_training_set
from langchain_core.runnables import RunnableConfig


def _suites(state: dict[str, Any], config: RunnableConfig) -> dict[str, str]:
    """Carve target/regression/train/replay once; later iterations reuse the same files."""
    if state.get("splits"):
        return state["splits"]
    ws = workspace(config)
    task = ws.store.get_task(state["task"])
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    clusters = {c.key: c.trace_ids for c in diag.clusters if c.fixable}
    splits = build_splits(task, ws.store.traces(task.name), excluded=diag.suspect_ids, clusters=clusters)
    d = run_dir(state) / "data"
    out = {}
    for name in ("target", "regression", "train_failures", "replay_pool"):
        out[name] = str(d / f"{name}.jsonl")
        write_items(Path(out[name]), getattr(splits, name))
    return out


def synthesize(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    ws = workspace(config)
    task = ws.store.get_task(state["task"])
    suites = _suites(state, config)
    p = Plan.model_validate(state["plan"])

    def load(name: str) -> list:
        path = Path(suites[name])
        return load_items(path, task) if path.exists() and path.stat().st_size else []

    from kaizen.tools.datasets import RepairSplits

    splits = RepairSplits(target=load("target"), regression=load("regression"),
                          train_failures=load("train_failures"), replay_pool=load("replay_pool"))
    extra = [load_items(Path(x), task) for x in config["configurable"].get("extra_eval_sets", [])]
    incumbent = ws.store.get_model_version(state["incumbent"])
    prior = []
    if not continues_incumbent(p, incumbent) and holds_full_data(incumbent):
        # Retraining from the base: everything the incumbent learned comes along (its held-out
        # suites are removed again by decontamination inside build_training_set).
        prior = [it for it in load_items(Path(incumbent.recipe["train_items_path"]), task)]
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    confused_with = {tid: c.key.split(" ← ")[1] for c in diag.clusters if c.kind == "confusion" for tid in c.trace_ids}
    items, stats = build_training_set(splits, replay_fraction=p.replay_fraction, failure_weight=p.failure_weight,
                                      seed=state.get("iteration", 1), eval_sets=extra, prior=prior,
                                      confused_with=confused_with, hard_negatives_per_case=p.hard_negatives_per_case)
    synthetic = _synthetic(state, config, task, splits, extra, confused_with, items)
    items, stats["synthetic"] = items + synthetic, len(synthetic)
    stats["n"] = len(items)
    it_dir = run_dir(state) / f"iter-{state['iteration']}"
    train_path = it_dir / "train.jsonl"
    write_items(train_path, items)
    write_json(it_dir / "train_stats.json", stats)
    progress(config, f"synthesize: {stats['n']} training examples ({stats['failures']} failures, "
                     f"{stats['hard_negatives']} hard negatives, {stats['replay']} replay, {stats['synthetic']} synthetic; "
                     f"dropped {stats['dropped_contaminated']} contaminated, {stats['dropped_for_balance']} for balance); "
                     f"held out {len(splits.target)} target, {len(splits.regression)} regression")
    if not items:
        why = (f"no training examples left: {stats['dropped_contaminated']} candidates were (near-)duplicates of held-out "
               "examples and nothing else was available; ingest more corrected failures")
        progress(config, f"synthesize: {why}")
        return {"splits": suites | {"train": str(train_path)}, "no_train_data": True,
                "verdict": {"passed": False, "reasons": [why]},
                "events": [event("synthesize", iteration=state["iteration"], n=0, reason=why)]}
    return {"splits": suites | {"train": str(train_path)}, "no_train_data": False,
            "events": [event("synthesize", iteration=state["iteration"], **{k: v for k, v in stats.items() if k != "labels"},
                             target=len(splits.target), regression=len(splits.regression))]}


def _synthetic(state: dict[str, Any], config: RunnableConfig, task: Any, splits: Any, extra: list, confused_with: dict,
               items: list) -> list:
    """The brain's paraphrases and hard negatives (none from the rule brain), kept clear of every eval set."""
    from kaizen.agent.context import brain
    from kaizen.tools.schema import last_user_text

    if not splits.train_failures:
        return []
    eval_texts = [last_user_text(e.messages) for s in [splits.target, splits.regression, *extra] for e in s]
    have = {it.id for it in items}
    new = brain(config).synthesize(task, splits.train_failures, eval_texts, confused_with)
    return [it for it in new if it.id not in have]
