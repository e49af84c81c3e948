"""synthesize: the run's data roles (once) and this iteration's training set.

Roles, carved once per run and never changed: the final slice (verifies the refit), the target suite
(judges the loop's candidates), the regression suite (judges every candidate, the refit included), the
training failures and the replay pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.context import RunContext, event, run_dir
from kaizen.agent.policy import continues_incumbent, earlier_suites, holds_full_data, load_roles, load_traces
from kaizen.agent.state import Diagnosis, Plan, RepairState
from kaizen.tools.data import load_items, write_items, write_json
from kaizen.tools.datasets.splits import RepairSplits, build_splits
from kaizen.tools.datasets.training import build_training_set


def _roles(state: RepairState, c: RunContext) -> tuple[dict[str, str], int]:
    """Carve the roles once; later iterations reuse the same files. Returns (role → path, final size)."""
    if state.get("splits"):
        return state["splits"], state.get("final_n", 0)
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    clusters = {k.key: k.trace_ids for k in diag.clusters if k.fixable}
    final_fraction = ws.settings.repair.final_fraction if state.get("refit_enabled", True) else 0.0
    splits = build_splits(
        task,
        load_traces(c, task),
        excluded=diag.suspect_ids,
        clusters=clusters,
        final_fraction=final_fraction,
        inferred={x.trace_id: (x.label, x.kind) for x in diag.inferred},
        deployed=state["incumbent"],
    )
    rd = run_dir(state)
    out = {}
    for name, items in splits.roles().items():
        out[name] = str(rd.suite(name))
        write_items(Path(out[name]), items)
    return out, len(splits.final)


def synthesize(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    roles, final_n = _roles(state, c)
    p = Plan.model_validate(state["plan"])
    splits = load_roles(task, roles)
    # Never train on anything that judges: earlier promotions' suites and the user's extra sets included.
    extra = [load_items(Path(x), task) for x in earlier_suites(state, c).values()]
    incumbent = ws.store.get_model_version(state["incumbent"])
    prior = []
    if not state.get("working") and not continues_incumbent(p, incumbent) and holds_full_data(incumbent):
        # Retraining from the base: everything the incumbent learned comes along (decontaminated below).
        prior = list(load_items(Path(incumbent.recipe["train_items_path"]), task))
    diag = Diagnosis.model_validate_json(Path(state["diagnosis_path"]).read_text())
    confused_with = {
        tid: k.key.split(" ← ")[1] for k in diag.clusters if k.kind == "confusion" for tid in k.trace_ids
    }
    items, stats = build_training_set(
        splits,
        replay_fraction=p.replay_fraction,
        replay_per_label=p.replay_per_label,
        failure_weight=p.failure_weight,
        seed=state.get("iteration", 1),
        eval_sets=[*extra, splits.final],
        prior=prior,
        confused_with=confused_with,
        hard_negatives_per_case=p.hard_negatives_per_case,
    )
    synthetic = _synthetic(c, task, splits, extra, confused_with, items)
    items, stats["synthetic"] = items + synthetic, len(synthetic)
    stats["n"] = len(items)
    rd = run_dir(state)
    step = state.get("step") or str(state["iteration"])
    write_items(rd.train_set(step), items)
    write_json(rd.train_stats(step), stats)
    c.say(
        f"synthesize: {stats['n']} training examples ({stats['failures']} failures, {stats['inferred']} inferred labels, "
        f"{stats['hard_negatives']} hard negatives, "
        f"{stats['replay']} replay = {stats.get('replay_share', 0):.0%}, {stats['synthetic']} synthetic; dropped "
        f"{stats['dropped_contaminated']} contaminated, {stats['dropped_for_balance']} for balance); held out "
        f"{len(splits.target)} target, {len(splits.regression)} regression, {len(splits.final)} final"
    )
    update: dict[str, Any] = {
        "splits": roles | {"train": str(rd.train_set(step))},
        "final_n": final_n,
        "target_n": len(splits.target),
    }
    if not items:
        why = (
            f"no training examples left: {stats['dropped_contaminated']} candidates were (near-)duplicates of held-out "
            "examples and nothing else was available; ingest more corrected failures"
        )
        c.say(f"synthesize: {why}")
        return update | {
            "no_train_data": True,
            "verdict": {"passed": False, "reasons": [why]},
            "events": [event("synthesize", iteration=state["iteration"], n=0, reason=why)],
        }
    return update | {
        "no_train_data": False,
        "events": [
            event(
                "synthesize",
                iteration=state["iteration"],
                **{k: v for k, v in stats.items() if k != "labels"},
                target=len(splits.target),
                regression=len(splits.regression),
                final=len(splits.final),
            )
        ],
    }


def _synthetic(
    c: RunContext, task: Any, splits: RepairSplits, extra: list, confused_with: dict, items: list
) -> list:
    """The brain's paraphrases and hard negatives (none from the rule brain), kept clear of every eval set."""
    from kaizen.tools.schema import last_user_text

    if not splits.train_failures:
        return []
    eval_texts = [
        last_user_text(e.messages)
        for s in [splits.target, splits.regression, splits.final, *extra]
        for e in s
    ]
    have = {it.id for it in items}
    new = c.brain.synthesize(task, splits.train_failures, eval_texts, confused_with)
    return [it for it in new if it.id not in have]
