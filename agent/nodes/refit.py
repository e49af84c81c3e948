"""refit: retrain on all the evidence with the recipe the loop chose, and verify it on a slice nobody used.

Inside the loop the target and regression traces only judge, so loop candidates learn from a subset. Once
the loop has shown that the recipe fixes the target failures without breaking the regression suite, those
suites have done that job: the refit trains, from the same start as the loop (the incumbent's adapter, or
the base with the incumbent's own data), on *every* trusted example and inferred label (never the final
slice), in one pass with a first iteration's schedule. It is then measured on the **final slice** — carved
before anything else, never trained on, never used to choose — against production (no significant
regression, floor and rate as the gate) and against the best loop candidate (not significantly worse).
If it holds, it is the one promoted; if not, the loop's best is, and the report says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.candidates import train_candidate, train_event
from kaizen.agent.context import RunContext, event, incumbent_label, label, run_dir, write_json
from kaizen.agent.measure import comparison, measure
from kaizen.agent.policy import continues_incumbent, earlier_suites, holds_full_data, load_roles
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.data import load_items, write_items
from kaizen.tools.datasets import build_refit_set
from kaizen.tools.gate import check_regressions, gate_config, paired_worse_p


def refit(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    best = dict(state["best"] or {})
    p = Plan.model_validate(state["plan"])
    rd = run_dir(state)
    splits = load_roles(task, state["splits"])
    incumbent = ws.store.get_model_version(state["incumbent"])
    from_adapter = continues_incumbent(p, incumbent)
    prior = []
    if not from_adapter and holds_full_data(
        incumbent
    ):  # retraining from the base: what v(n) learned comes along
        prior = list(load_items(Path(incumbent.recipe["train_items_path"]), task))
    extra = [load_items(Path(x), task) for x in earlier_suites(state, c).values()]
    items, stats = build_refit_set(splits, seed=7, eval_sets=extra, prior=prior)
    write_items(rd.train_set("refit"), items)
    write_json(rd.train_stats("refit"), stats)
    loop_best = ws.store.get_model_version(best["candidate_version"])
    version, result = train_candidate(
        state,
        c,
        items,
        step="refit",
        start=incumbent,
        from_adapter=from_adapter,
        p=p,
        skill_version=best.get("candidate_skill"),
        kind=p.kind,  # the loop's recipe: SFT, GRPO or SFT→GRPO
        epochs=Plan.model_fields["epochs"].default,
        train_items_path=str(rd.train_set("refit")),
    )
    refit_label = label(version.name, best.get("candidate_skill"))
    final = {"final": state["splits"]["final"]}
    evals = dict(state.get("evals") or {})
    for v, s in (
        (state["incumbent"], state.get("incumbent_skill")),
        (loop_best.name, best.get("candidate_skill")),
        (version.name, best.get("candidate_skill")),
    ):
        evals.update(measure(state, c, v, s, final))
    verdict, chosen = _verify(state, c, evals, best, refit_label, version.name)
    c.say(
        f"refit: {'PROMOTE the refit' if chosen else 'keep the loop candidate ' + best['candidate']} — "
        + "; ".join(verdict["reasons"])
    )
    new_best = best | verdict if chosen else best | {"refit": verdict}
    return {
        "candidate": version.name,
        "candidate_skill": best.get("candidate_skill"),
        "step": "refit",
        "refit_done": True,
        "evals": evals,
        "best": new_best,
        "verdict": verdict,
        "train_tokens_used": state.get("train_tokens_used", 0) + int(result.get("train_tokens") or 0),
        "path": [
            {
                "step": "refit",
                "recipe": f"{'continue ' + incumbent.name if from_adapter else 'retrain from the base'} on all "
                f"{stats['n']} examples ({stats['failures']} failures, {stats['replay']} passes, "
                f"{stats['inferred']} inferred labels; not the final slice)",
                "candidate": refit_label,
                "passed": chosen,
                "target": None,
                "regressions": verdict["final_regressions"],
                "reasons": verdict["reasons"],
            }
        ],
        "events": [
            event(
                "refit",
                **train_event("refit", version, result, rd.job("refit"), examples=len(items)),
                chosen=chosen,
                reasons=verdict["reasons"],
            )
        ],
    }


def _verify(
    state: RepairState,
    c: RunContext,
    evals: dict[str, Any],
    best: dict[str, Any],
    refit_label: str,
    refit_version: str,
) -> tuple[dict[str, Any], bool]:
    """The refit on the final slice: not a regression against production, not worse than the loop's best."""
    cfg = gate_config(state.get("preset", "repair"), c.workspace.settings.gate)
    inc = incumbent_label(state)
    inc_final = evals.get(f"{inc}/final") or {}
    passes = {i for i, ok in (inc_final.get("correct") or {}).items() if ok}
    vs_prod = comparison(
        evals, inc, refit_label, "final", ids=passes, name="final (production's right answers)"
    )
    vs_best = comparison(evals, best["candidate"], refit_label, "final", name=f"final vs {best['candidate']}")
    reasons: list[str] = []
    ok = True
    if vs_prod is not None and vs_prod.n:
        passed, why = check_regressions(cfg, vs_prod)
        ok, reasons = ok and passed, [*reasons, why]
    scores = {
        k: (evals.get(f"{v}/final") or {}).get("score")
        for k, v in (("production", inc), ("loop", best["candidate"]), ("refit", refit_label))
    }
    if vs_best is not None and vs_best.n:
        # The refit learned from more evidence; it is kept unless the final slice says it is *significantly*
        # worse than the loop candidate (one-sided paired test, the gate's alpha) — a one-item difference on a
        # small slice is noise, not a verdict.
        p = paired_worse_p(len(vs_best.newly_wrong), len(vs_best.newly_right))
        detail = (
            f"refit {vs_best.candidate_score:.3f} vs loop candidate {vs_best.incumbent_score:.3f} "
            f"({len(vs_best.newly_right)} newly right, {len(vs_best.newly_wrong)} newly wrong; paired p={p:.3g})"
        )
        if p < cfg.alpha:
            ok = False
            reasons.append(f"final: {detail}: significantly worse")
        else:
            reasons.append(f"final: {detail}")
    verdict = {
        "passed": ok,
        "reasons": reasons,
        "final_scores": scores,
        "final_n": (inc_final or {}).get("n", 0),
        "final_regressions": len(vs_prod.newly_wrong) if vs_prod else 0,
        "loop_candidate": best["candidate"],
        "loop_candidate_version": best["candidate_version"],
    }
    if ok:
        verdict |= {"candidate": refit_label, "candidate_version": refit_version, "step": "refit"}
    return verdict, ok
