"""refit: retrain on all the evidence with the recipe the loop chose, and verify it on suites it never saw.

Inside the loop the target and regression traces only judge, so loop candidates learn from a subset. Once
the loop has shown that the recipe fixes the target failures, the target suite has done its job: the refit
trains, from the same start as the loop (the incumbent's adapter, or the base with the incumbent's own
data), on every trusted failure, the replay pool and every inferred label, in one pass with a first
iteration's schedule (epochs and learning rate). It never trains on what judges it: against production it
must not regress (floor, rate and paired test, as the gate) on the **regression suite**, earlier promotions'
suites and production's right answers in the **final slice** (carved before anything else, never trained
on, never used to choose); against the best loop candidate, it must not be significantly worse on the final
slice (the loop candidate was chosen on the regression suite, so only the final slice compares them fairly).
Why the regression suite judges rather than teaches: a refit verified on the final slice alone (11 of
production's right answers in a strong-v1 probe) saw no break and broke 9 % of them on gold.
If it holds, it is the one promoted; if not, the loop's best is, and the report says why.

When no loop candidate passed but one did fix target failures (it broke too much on a subset of the
data), or the target suite was too thin to show a fix either way (fewer than ``routing.THIN_TARGET`` items:
a scheduled loop's third batch with 40 % poisoned feedback left 2), the refit is the last candidate: trained
on all the evidence it often forgets less (every replay pass is in it), and it must then pass the gate — fix
some of production's wrong answers in the final slice, break no more of its right ones there and on the
regression suite than the gate allows — or production stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from kaizen.agent.candidates import train_candidate, train_event
from kaizen.agent.context import RunContext, event, incumbent_label, label, run_dir
from kaizen.agent.measure import comparison, measure
from kaizen.agent.policy import continues_incumbent, earlier_suites, holds_full_data, load_roles
from kaizen.agent.shrink import shrink
from kaizen.agent.state import Plan, RepairState
from kaizen.tools.data import load_items, write_items, write_json
from kaizen.tools.datasets.training import build_refit_set
from kaizen.tools.gate import check_regressions, check_target, gate_config, paired_worse_p


def refit(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    c = runtime.context
    ws = c.workspace
    task = ws.store.get_task(state["task"])
    best = dict(state.get("best") or {})
    skill = best.get("candidate_skill") if best else state.get("incumbent_skill")
    p = Plan.model_validate(state["plan"])
    rd = run_dir(state)
    incumbent = ws.store.get_model_version(state["incumbent"])
    from_adapter = continues_incumbent(p, incumbent)
    prior = []
    if not from_adapter and holds_full_data(incumbent):  # from the base: what production learned comes along
        prior = list(load_items(Path(incumbent.recipe["train_items_path"]), task))
    earlier = earlier_suites(state, c)  # earlier promotions' suites and the user's: never trained on, judge
    extra = [load_items(Path(x), task) for x in earlier.values()]
    items, stats = build_refit_set(load_roles(task, state["splits"]), seed=7, eval_sets=extra, prior=prior)
    write_items(rd.train_set("refit"), items)
    write_json(rd.train_stats("refit"), stats)
    # A first iteration's schedule: the loop's later plans halve the rate after a candidate broke too much
    # *on a subset*; the refit's guard is the replay pool and its verification. (Measured: AdaptFT
    # stage 1, after a GRPO recovery's regressions, refit at half rate and learned nothing.) GRPO: its own rule.
    rate = None if p.kind == "grpo" else first_rate(c.plan_defaults, from_adapter)
    version, result = train_candidate(
        state,
        c,
        items,
        step="refit",
        start=incumbent,
        from_adapter=from_adapter,
        p=p,
        skill_version=skill,
        kind=p.kind,  # the loop's recipe: SFT, GRPO or SFT→GRPO
        epochs=Plan.model_fields["epochs"].default,
        learning_rate=rate,
        train_items_path=str(rd.train_set("refit")),
    )
    shrunk: dict[str, Any] = {"skipped": "repair.shrink is off"}
    if state.get("shrink_enabled", True):
        version, shrunk = _shrink(state, c, task, incumbent, from_adapter, version, items, skill)
    refit_label = label(version.name, skill)
    evals = dict(state.get("evals") or {})
    # Production and the refit on every suite that judges the refit (production's are cached from the
    # loop); the loop's best on the final slice only. One measure call per version: one model load.
    held_out = {"regression": state["splits"]["regression"], **earlier}
    final = {"final": state["splits"]["final"]}
    measured = [
        (state["incumbent"], state.get("incumbent_skill"), final | held_out),
        (version.name, skill, final | held_out),
    ]
    if best:
        measured.append((ws.store.get_model_version(best["candidate_version"]).name, skill, final))
    for v, s, suites in measured:
        evals.update(measure(state, c, v, s, suites))
    verdict, chosen = _verify(state, c, evals, best, refit_label, version.name, suites=list(held_out))
    keep = f"keep the loop candidate {best['candidate']}" if best else "production stays"
    c.say(f"refit: {'PROMOTE the refit' if chosen else keep} — " + "; ".join(verdict["reasons"]))
    if chosen:
        new_best: dict[str, Any] | None = best | verdict | {"candidate_skill": skill}
    else:
        new_best = best | {"refit": verdict} if best else None
    return {
        "candidate": version.name,
        "candidate_skill": skill,
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
                f"{stats['inferred']} inferred labels; not the regression suite or the final slice)"
                + (f", shrunk to α = {shrunk['alpha']}" if shrunk.get("version") else ""),
                "candidate": refit_label,
                "passed": chosen,
                "target": None,
                "regressions": verdict["regressions"],
                "reasons": verdict["reasons"],
            }
        ],
        "events": [
            event(
                "refit",
                **train_event("refit", version, result, rd.job("refit"), examples=len(items)),
                shrink=shrunk,
                chosen=chosen,
                reasons=verdict["reasons"],
            )
        ],
    }


def _shrink(
    state: RepairState,
    c: RunContext,
    task: Any,
    incumbent: Any,
    from_adapter: bool,
    version: Any,
    items: list[Any],
    skill: int | None,
) -> tuple[Any, dict[str, Any]]:
    """The refit moved back toward production as far as its taught examples allow (``agent/shrink.py``):
    only toward the adapter it continued, or production itself when production has none."""
    if not from_adapter and (incumbent.adapter_path is not None or incumbent.kind != "base"):
        return version, {"skipped": "retrained from the base: production is not on its path"}
    start_adapter = incumbent.adapter_path if from_adapter else None
    version, info = shrink(
        state,
        c,
        task,
        start=incumbent,
        start_adapter=start_adapter,
        version=version,
        items=items,
        step="refit",
        skill=skill,
    )
    scores = ", ".join(f"α {a}: {s:.3f}" for a, s in info.get("scores", {}).items() if s is not None)
    if "version" in info:
        c.say(
            f"refit: shrunk to α = {info['alpha']} toward {incumbent.name} ({scores} on {info['taught']} taught examples) → {version.name}"
        )
    else:
        c.say(f"refit: kept the full update ({info.get('skipped') or scores})")
    return version, info


def first_rate(plan_defaults: dict[str, Any], from_adapter: bool) -> float:
    """The run's first-iteration learning rate (the plan's default or the run's own), doubled for a fresh
    adapter on the base as in ``train_candidate``.

    Examples:
        >>> first_rate({}, True), first_rate({"learning_rate": 1e-4}, True), first_rate({}, False)
        (0.0005, 0.0001, 0.001)
    """
    lr = float(plan_defaults.get("learning_rate", Plan.model_fields["learning_rate"].default))
    return lr if from_adapter else 2 * lr


def _verify(
    state: RepairState,
    c: RunContext,
    evals: dict[str, Any],
    best: dict[str, Any],
    refit_label: str,
    refit_version: str,
    suites: Sequence[str] = (),
) -> tuple[dict[str, Any], bool]:
    """Against production: no regression on ``suites`` (the regression suite, earlier promotions') nor on its
    right answers in the final slice. Then not significantly worse than the loop's best on the final slice —
    or, with no passing loop candidate, a fix of production's wrong answers there."""
    cfg = gate_config(state.get("preset", "repair"), c.workspace.settings.gate)
    inc = incumbent_label(state)
    inc_final = evals.get(f"{inc}/final") or {}
    right = {i for i, ok in (inc_final.get("correct") or {}).items() if ok}
    wrong = set(inc_final.get("correct") or {}) - right
    vs_prod = comparison(
        evals, inc, refit_label, "final", ids=right, name="final (production's right answers)"
    )
    reasons: list[str] = []
    ok = True
    broken = 0
    held = [comparison(evals, inc, refit_label, s) for s in suites]
    for cmp in [*held, vs_prod]:
        if cmp is not None and cmp.n:
            passed, why = check_regressions(cfg, cmp)
            ok, reasons, broken = ok and passed, [*reasons, why], broken + len(cmp.newly_wrong)
    if best:
        ok = _not_worse_than_loop(cfg, evals, best["candidate"], refit_label, reasons) and ok
    else:
        fixes = comparison(
            evals, inc, refit_label, "final", ids=wrong, name="final (production's wrong answers)"
        )
        fixed_ok, fixed_why = check_target(cfg, fixes)
        ok = ok and fixed_ok
        reasons += [f"final (production's wrong answers): {w}" for w in fixed_why]
    versions = (("production", inc), ("loop", best.get("candidate")), ("refit", refit_label))
    verdict = {
        "passed": ok,
        "reasons": reasons,
        "final_scores": {k: (evals.get(f"{v}/final") or {}).get("score") for k, v in versions if v},
        "final_n": (inc_final or {}).get("n", 0),
        "final_regressions": len(vs_prod.newly_wrong) if vs_prod else 0,
        "regressions": broken,
        "loop_candidate": best.get("candidate"),
        "loop_candidate_version": best.get("candidate_version"),
    }
    if ok:
        verdict |= {"candidate": refit_label, "candidate_version": refit_version, "step": "refit"}
    return verdict, ok


def _not_worse_than_loop(
    cfg: Any, evals: dict[str, Any], loop: str, refit_label: str, reasons: list[str]
) -> bool:
    """The refit learned from more evidence; it is kept unless the final slice says it is *significantly*
    worse than the loop candidate (one-sided paired test, the gate's alpha) — a one-item difference on a
    small slice is noise, not a verdict."""
    vs_best = comparison(evals, loop, refit_label, "final", name=f"final vs {loop}")
    if vs_best is None or not vs_best.n:
        return True
    p = paired_worse_p(len(vs_best.newly_wrong), len(vs_best.newly_right))
    detail = (
        f"refit {vs_best.candidate_score:.3f} vs loop candidate {vs_best.incumbent_score:.3f} "
        f"({len(vs_best.newly_right)} newly right, {len(vs_best.newly_wrong)} newly wrong; paired p={p:.3g})"
    )
    reasons.append(f"final: {detail}" + (": significantly worse" if p < cfg.alpha else ""))
    return p >= cfg.alpha
