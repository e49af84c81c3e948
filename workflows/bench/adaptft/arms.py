"""One AdaptFT stage for the three arms: each runs its production model on the stage's inputs and ingests
the feedback; the agent and the oracle repair, the naive arm retrains on every correction; then every
arm's production is scored on the held-out set (clean gold).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kaizen.workflows.bench.adaptft.feedback import feedback_counts, log_records, split_truth
from kaizen.workflows.bench.adaptft.prepare import Progress
from kaizen.workflows.bench.adaptft.stages import Stage, count_regressions, heldout_union, score

ARMS = ("agent", "naive", "oracle")
STAGE_KEYS = (
    "stage",
    "v1",
    "first",
    "best",
    "naive",
    "oracle",
    "gap",
    "gap_p",
    "captured",
    "regressions",
    "triage_precision",
    "triage_recall",
)


def _ingest(ws: Any, path: Path, task: str) -> dict[str, Any]:
    from kaizen.tools.logs import parse_traces

    res = parse_traces(path)
    return asdict(ws.store.import_traces(res.traces, path=str(path), default_task=task))


def _has_corrections(ws: Any, task: str) -> bool:
    return any(t.verdict == "fail" and t.correction for t in ws.store.traces(task))


def deploy_logs(st: Stage, ctx: dict[str, Any], arm: str, version: str) -> tuple[list[dict[str, Any]], Path]:
    """Run ``arm``'s production model on the stage's inputs; write what kaizen ingests and, apart, the truth.

    The oracle arm gets the agent arm's kind of feedback on its own model's answers; its answer key
    (every stage so far) is the only place the truth goes.
    """
    sc, out, seed = ctx["sc"], ctx["out"], ctx["seed"]
    outputs = ctx["scorer"].generate(ctx[arm], version, [it.text for it in st.logs])
    recs = log_records(
        sc,
        st.logs,
        outputs,
        arm="naive" if arm == "naive" else "agent",
        stage=st.index,
        seed=seed,
        model_version=version,
    )
    logs, key = split_truth(sc, recs, st.logs)
    path = out / "logs" / f"stage{st.index}-{arm}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in logs))
    key_path = out / "logs" / f"answer-key-{arm}.jsonl"  # cumulative: a repair sees every stage's traces
    with key_path.open("a") as f:
        f.writelines(json.dumps(k, ensure_ascii=False) + "\n" for k in key)
    return recs, path


def run_stage(st: Stage, ctx: dict[str, Any], say: Progress) -> dict[str, Any]:
    """One deployment stage for the three arms; returns the stage's detail record."""
    from kaizen.tools import registry
    from kaizen.tools.answer_key import load_answer_key, triage_quality
    from kaizen.workflows.repair import job as repair
    from kaizen.workflows.repair.naive import run_naive

    p, out = ctx["preset"], ctx["out"]
    task = ctx["sc"].task.name
    t_stage = time.time()
    detail: dict[str, Any] = {
        "stage": st.index,
        "poison_rate": st.poison_rate,
        "n": len(st.batch),
        "poisoned": st.poisoned,
        "logs": len(st.logs),
        "test": len(st.test),
        "arms": {},
    }
    prev_prod = {arm: registry.resolve(ctx[arm].store, "production", task).name for arm in ARMS}
    for arm in ARMS:
        recs, path = deploy_logs(st, ctx, arm, prev_prod[arm])
        imported = _ingest(ctx[arm], path, task)
        detail["arms"][arm] = {
            "deployed": prev_prod[arm],
            "feedback": feedback_counts(recs),
            "imported": imported["imported"],
        }
        say(
            f"stage {st.index}: {arm} ran {prev_prod[arm]} on {len(recs)} inputs → {detail['arms'][arm]['feedback']}"
        )

    for arm in ("agent", "oracle"):
        t = time.time()
        key = out / "logs" / "answer-key-oracle.jsonl" if arm == "oracle" else None
        say(f"stage {st.index}: {arm} repair (max {p.max_iterations} iterations)")
        run = repair.start(
            ctx[arm],
            task,
            approve=True,
            max_iterations=p.max_iterations,
            plan_defaults=p.plan_defaults or None,
            train_overrides=p.train_overrides or None,
            answer_key=key,
            progress=lambda m, a=arm: say(f"  {a}: {m}"),
        )
        trained = [
            e["version"] for e in run.events if e.get("phase") in ("train", "refit") and e.get("version")
        ]
        excluded = set(run.summary.get("excluded_suspect") or [])
        detail["arms"][arm] |= {
            "run_id": run.id,
            "status": run.status,
            "iterations": run.summary.get("iterations"),
            "candidates": trained,
            "path": run.summary.get("path"),
            "seconds": round(time.time() - t, 1),
        }
        if arm == "agent":
            truth = load_answer_key(out / "logs" / "answer-key-agent.jsonl")
            detail["arms"]["agent"] |= {
                "excluded_suspect": len(excluded),
                "excluded_truly_poisoned": len(excluded & ctx["poisoned_ids"]),
                "triage": triage_quality(excluded, truth, ctx["agent"].store.traces(task)),
            }
    t = time.time()
    if _has_corrections(ctx["naive"], task):
        say(f"stage {st.index}: naive retraining (every correction, no gate)")
        nrun = run_naive(ctx["naive"], task, progress=lambda m: say(f"  naive: {m}"))
        detail["arms"]["naive"] |= {"run_id": nrun.id, "trained": nrun.summary.get("candidate")}
    else:
        say(f"stage {st.index}: naive has no corrected failure to train on; production unchanged")
    detail["arms"]["naive"]["seconds"] = round(time.time() - t, 1)
    return _score_stage(st, ctx, detail, prev_prod, t_stage, say)


def _score_stage(
    st: Stage,
    ctx: dict[str, Any],
    detail: dict[str, Any],
    prev_prod: dict[str, str],
    t_stage: float,
    say: Progress,
) -> dict[str, Any]:
    """Every arm's production on the held-out union (clean gold), the agent's first candidate, and captured."""
    from kaizen.tools import registry
    from kaizen.tools.gate import compare

    scorer, task = ctx["scorer"], ctx["sc"].task.name
    ctx["tests"].append(st.test)
    held = heldout_union(ctx["tests"])
    ids = [it.id for it in held]
    t = time.time()
    prod = {arm: registry.resolve(ctx[arm].store, "production", task).name for arm in ARMS}
    if prod["agent"] not in ctx["promoted"]:
        ctx["promoted"].append(prod["agent"])
    say(f"stage {st.index}: scoring on the held-out set ({len(held)} examples, clean gold)")
    naive_prev = scorer(ctx["naive"], prev_prod["naive"], held)
    promoted = {v: scorer(ctx["agent"], v, held) for v in ctx["promoted"]}
    trained = detail["arms"]["agent"].get("candidates") or []
    first = scorer(ctx["agent"], trained[0], held) if trained else None
    naive = scorer(ctx["naive"], prod["naive"], held)
    oracle = scorer(ctx["oracle"], prod["oracle"], held)
    v1 = score(scorer(ctx["agent"], "v1", held), ids)
    scores = {v: score(c, ids) for v, c in promoted.items()}
    agent = scores[prod["agent"]]
    reach = score(oracle, ids) - v1
    row = {
        "stage": st.index,
        "first": _r(score(first, ids)) if first is not None else None,
        "best": _r(agent),
        "naive": _r(score(naive, ids)),
        "oracle": _r(score(oracle, ids)),
        "v1": _r(v1),
        "captured": _r((agent - v1) / reach) if reach >= 0.02 else None,
        "regressions": count_regressions(promoted[prev_prod["agent"]], promoted[prod["agent"]]),
    }
    row["gap"] = _r(row["best"] - row["naive"])
    # Held-out sets are small (30–90 items): the paired exact test says whether a gap is more than noise.
    vs_naive = compare("heldout", naive, promoted[prod["agent"]])
    row["gap_p"] = _r(vs_naive.p_value)
    detail["agent_vs_naive"] = {  # the discordant pairs behind gap_p
        "agent_only_right": len(vs_naive.newly_right),
        "naive_only_right": len(vs_naive.newly_wrong),
    }
    tri = detail["arms"]["agent"].get("triage") or {}
    row |= {"triage_precision": tri.get("precision"), "triage_recall": tri.get("recall")}
    detail |= {
        "heldout": len(held),
        "agent_production": prod["agent"],
        "agent_production_score": _r(agent),
        "promoted_scores": {v: _r(s) for v, s in scores.items()},
        "naive_production": prod["naive"],
        "oracle_production": prod["oracle"],
        "naive_regressions": count_regressions(naive_prev, naive),
        "eval_seconds": round(time.time() - t, 1),
        "seconds": round(time.time() - t_stage, 1),
    }
    say(
        f"stage {st.index} done in {detail['seconds']:.0f}s: v1 {row['v1']}, agent {row['best']} (first {row['first']}), "
        f"naive {row['naive']}, oracle {row['oracle']}, captured {row['captured']}, gap {row['gap']}"
    )
    return {"row": {k: row[k] for k in STAGE_KEYS}, "detail": detail}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
