"""recover: before discarding a candidate that fixed failures but broke too much, try to mend it.

In order (multi-domain RL interference; README, Research): (a) **refresh** — a few steps continuing the
candidate on examples of the labels it broke plus its own training failures; (b) **sparse rollback** —
training-free: revert the few adapter coordinates where the update fights the loss on those labels; (c)
**grpo** — GRPO from the iteration's start (the working incumbent, else production) on the iteration's
training prompts, rewarded by the task kind's verifier: RL forgets less than SFT (README, Research:
"Reinforcement fine-tuning forgets less than SFT"), so it is the last resort when the SFT candidate's
fix cannot be kept without its damage. (a) and (b) use *training-side* examples of the damaged labels (the
replay pool and the training set), (c) the training set itself — never the regression suite that judges
them. Each result is a new candidate, gated like any other. Which recoveries run, in this order, is
``state["recoveries"]`` (``repair.recover``, ``repair.grpo_recovery``).

A GRPO recovery that failed its gate is not tried again in the same run: it is the slowest step of a CPU
repair (≈ 5 min, four SFT iterations' worth), and none of the five measured so far passed — the two of one
probe's run (fourteenth session, README "A low-traffic shape nothing was tuned on") spent 639 of its
1,119 s, and both failed the gate on regressions.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.candidates import train_candidate, train_event, version_name
from kaizen.agent.context import RunContext, event, run_dir
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.data import load_items, sft_rows, write_items, write_json
from kaizen.tools.schema import EvalItem


def _broken_labels(state: RepairState, task: Any) -> set[str]:
    """The labels of the regression examples the candidate got wrong (read from the suites' files)."""
    broken = {i for ids in (state.get("verdict") or {}).get("broken", {}).values() for i in ids}
    labels = set()
    for path in (state.get("splits") or {}).values():
        p = Path(path)
        if p.suffix == ".jsonl" and p.exists() and p.stat().st_size and "train" not in p.name:
            labels |= {str(it.expected) for it in load_items(p, task) if it.id in broken}
    return labels


def _examples(
    state: RepairState, task: Any, labels: set[str], seed: int
) -> tuple[list[EvalItem], list[EvalItem]]:
    """(examples of the damaged labels, the training failures): training-side data only."""
    splits = state["splits"]
    pool = [
        *load_items(Path(splits["train"]), task),
        *(
            load_items(Path(splits["replay_pool"]), task)
            if Path(splits["replay_pool"]).stat().st_size
            else []
        ),
    ]
    seen, damaged = set(), []
    for it in pool:
        key = it.metadata.get("trace_id", it.id)
        if str(it.expected) in labels and key not in seen:
            seen.add(key)
            damaged.append(it)
    failures = [
        it for it in load_items(Path(splits["train"]), task) if it.metadata.get("provenance") == "trace"
    ]
    random.Random(seed).shuffle(damaged)
    return damaged, failures


def recover(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    tried = list(state.get("recovery") or [])
    how = state["recoveries"][len(tried)]
    step = f"{state['iteration']}r{len(tried) + 1}"
    if how == "grpo":
        return {"recovery": [*tried, how], "step": step} | _grpo(state, c, task, step)
    failed = ws.store.get_model_version((state.get("verdict") or {})["candidate_version"])
    labels = _broken_labels(state, task)
    damaged, failures = _examples(state, task, labels, seed=len(tried))
    update: dict[str, Any] = {"recovery": [*tried, how], "step": step}
    if not damaged:
        c.say(
            f"recover [{step}]: no training-side example of the broken labels {sorted(labels)}: {how} skipped"
        )
        return update | {
            "candidate": None,
            "events": [event("recover", step=step, how=how, skipped="no examples")],
        }
    p = Plan.model_validate(state["plan"])
    rd = run_dir(state)
    if how == "refresh":
        items = damaged[: max(16, 4 * len(labels))]
        items += random.Random(1).sample(failures, min(len(failures), len(items)))
        write_items(rd.train_set(step), items)
        version, result = train_candidate(
            state,
            c,
            items,
            step=step,
            start=failed,
            from_adapter=True,
            p=p,
            skill_version=state.get("candidate_skill"),
            epochs=1.0,
            learning_rate=p.learning_rate / 2,
            min_steps=4,
        )
        info = train_event(step, version, result, rd.job(step), labels=sorted(labels), examples=len(items))
        c.say(
            f"recover [{step}]: refresh on {len(items)} examples of {sorted(labels)} + training failures → {version.name}"
        )
        return update | {
            "candidate": version.name,
            "train_tokens_used": state.get("train_tokens_used", 0) + int(result.get("train_tokens") or 0),
            "events": [event("recover", how=how, **info)],
        }
    return update | _rollback(state, c, task, failed, damaged, step, labels)


def _rollback(
    state: RepairState,
    c: RunContext,
    task: Any,
    failed: Any,
    damaged: list[EvalItem],
    step: str,
    labels: set[str],
) -> dict[str, Any]:
    from kaizen.tools.train.rollback import IncompatibleAdapters, sparse_rollback
    from kaizen.tools.versions import register_adapter, version_paths

    ws = c.workspace
    working = state.get("working")
    start = ws.store.get_model_version(working["candidate_version"] if working else state["incumbent"])
    base_dir, start_adapter = version_paths(ws, start)
    _, cand_adapter = version_paths(ws, failed)
    out = run_dir(state).step(step) / "adapter"
    if start_adapter is None or cand_adapter is None:
        c.say(f"recover [{step}]: sparse rollback needs the candidate to continue an adapter: skipped")
        return {
            "candidate": None,
            "events": [event("recover", step=step, how="rollback", skipped="no start adapter")],
        }
    try:
        info = sparse_rollback(
            base_dir, start_adapter, cand_adapter, sft_rows(task, damaged[:64]), out, fraction=0.05
        )
    except IncompatibleAdapters as e:
        c.say(f"recover [{step}]: sparse rollback skipped ({e})")
        return {"candidate": None, "events": [event("recover", step=step, how="rollback", skipped=str(e))]}
    write_json(run_dir(state).step(step) / "rollback.json", info | {"labels": sorted(labels)})
    version = register_adapter(
        ws,
        task,
        name=version_name(state, step),
        adapter_path=out,
        parent=failed,
        recipe={"kind": "sparse_rollback", "to": start.name, **info},
        items=damaged[:64],
    )
    c.say(
        f"recover [{step}]: rolled back {info['rolled_back']} of {info['coordinates']} adapter coordinates toward "
        f"{start.name} (labels {sorted(labels)}) → {version.name}"
    )
    return {
        "candidate": version.name,
        "events": [event("recover", step=step, how="rollback", version=version.name, **info)],
    }


def _grpo(state: RepairState, c: RunContext, task: Any, step: str) -> dict[str, Any]:
    """GRPO from the iteration's start on its training prompts (corrected failures + replay of passes)."""
    ws = c.workspace
    p = Plan.model_validate(state["plan"])
    working = state.get("working")
    start = ws.store.get_model_version(working["candidate_version"] if working else state["incumbent"])
    if p.kind == "grpo":
        c.say(f"recover [{step}]: the candidate already was GRPO from {start.name}: grpo skipped")
        return {
            "candidate": None,
            "events": [event("recover", step=step, how="grpo", skipped="the candidate was GRPO")],
        }
    failed = next(
        (e["step"] for e in state.get("path") or [] if e.get("recipe") == "grpo" and not e.get("passed")),
        None,
    )
    if failed is not None:
        c.say(f"recover [{step}]: GRPO recovery {failed} already failed in this run: grpo skipped")
        return {
            "candidate": None,
            "events": [event("recover", step=step, how="grpo", skipped=f"GRPO recovery {failed} failed")],
        }
    train_path = Path(state["splits"]["train"])
    items = load_items(train_path, task) if train_path.exists() and train_path.stat().st_size else []
    if not items:
        c.say(f"recover [{step}]: no training prompts: grpo skipped")
        return {"candidate": None, "events": [event("recover", step=step, how="grpo", skipped="no prompts")]}
    version, result = train_candidate(
        state,
        c,
        items,
        step=step,
        start=start,
        from_adapter=bool(working) or (start.adapter_path is not None and p.start != "base"),
        p=p,
        skill_version=state.get("candidate_skill"),
        kind="grpo",
        train_items_path=str(train_path),
    )
    c.say(f"recover [{step}]: GRPO from {start.name} on {len(items)} training prompts → {version.name}")
    info = train_event(step, version, result, run_dir(state).job(step), start=start.name, prompts=len(items))
    return {
        "candidate": version.name,
        "train_tokens_used": state.get("train_tokens_used", 0) + int(result.get("train_tokens") or 0),
        "events": [event("recover", how="grpo", **info)],
    }
