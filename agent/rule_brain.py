"""``RuleBrain``: the deterministic brain — the offline default and the fallback of any LLM brain.

It reads labelled traces, separates failures we can learn from from feedback we should not trust
(``kaizen.agent.triage``: rules, TF-IDF near-duplicates and, where the offline sentence-embedding model is
installed, kNN label consensus on embeddings), clusters the trusted failures, and turns the last verdict
into the next iteration's plan.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kaizen.agent import triage
from kaizen.agent.state import Diagnosis, FailureCluster, Plan
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import EvalItem, Skill, TaskSpec, last_user_text
from kaizen.tools.store import TraceView

HYPOTHESES = {
    "off_label": "the model replies outside the label set",
    "format": "right label, wrong format",
    "uncorrected": "failures without a correction: nothing to learn from until someone corrects them",
    "slice": "failures concentrated in this slice",
}


class RuleBrain:
    """Deterministic diagnosis and planning."""

    name = "rule"

    # ------------------------------------------------------------------------------ diagnose
    def diagnose(self, task: TaskSpec, traces: list[TraceView]) -> Diagnosis:
        labeled = [t for t in traces if t.verdict in ("pass", "fail")]
        emb = triage.embed_inputs(traces)
        at = {t.id: i for i, t in enumerate(traces)}
        suspects = triage.find_suspects(
            task, labeled, None if emb is None else emb[[at[t.id] for t in labeled]]
        )
        bad = {s.trace_id for s in suspects}
        failures = [t for t in labeled if t.verdict == "fail"]
        clusters = self._clusters(task, [t for t in failures if t.id not in bad])
        if suspects:
            by_kind: dict[str, list[str]] = defaultdict(list)
            for s in suspects:
                by_kind[s.kind].append(s.trace_id)
            for kind, ids in sorted(by_kind.items()):
                clusters.append(
                    FailureCluster(
                        key=f"suspect:{kind}",
                        kind="suspect",
                        fixable=False,
                        count=len(ids),
                        trace_ids=ids,
                        hypothesis="feedback not trusted: excluded from training and from the target set",
                    )
                )
        return Diagnosis(
            task=task.name,
            n_traces=len(traces),
            n_labeled=len(labeled),
            n_unlabeled=len(traces) - len(labeled),
            n_failures=len(failures),
            n_passes=len(labeled) - len(failures),
            clusters=clusters,
            suspects=suspects,
            inferred=triage.infer_labels(task, traces, suspects, emb),
        )

    def _clusters(self, task: TaskSpec, failures: list[TraceView]) -> list[FailureCluster]:
        groups: dict[tuple[str, str], list[TraceView]] = defaultdict(list)
        for t in failures:
            if not t.correction:
                groups[("uncorrected", f"uncorrected: {t.metadata.get('slice', 'all')}")].append(t)
            elif task.kind == "classification":
                gold = normalize_label(t.correction, task.labels) or t.correction
                pred = normalize_label(t.output, task.labels)
                if pred is None:
                    groups[("off_label", f"{gold} ← off-label output")].append(t)
                elif pred == gold:
                    groups[("format", f"{gold} ← badly formatted")].append(t)
                else:
                    groups[("confusion", f"{gold} ← {pred}")].append(t)
            else:
                key = f"{t.metadata.get('slice', 'all')}: {t.reason or 'unspecified'}"
                groups[("slice", key)].append(t)
        out = []
        for (kind, key), ts in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            if kind == "confusion":
                gold, pred = key.split(" ← ", 1)
                hyp = f"the model answers {pred!r} where {gold!r} is right"
            else:
                hyp = HYPOTHESES[kind]
            out.append(
                FailureCluster(
                    key=key,
                    kind=kind,
                    fixable=kind != "uncorrected",
                    count=len(ts),
                    trace_ids=[t.id for t in ts],  # type: ignore[arg-type]
                    examples=[
                        {
                            "trace_id": t.id,
                            "input": last_user_text(t.messages)[:200],
                            "output": t.output[:200],
                            "correction": (t.correction or "")[:200],
                        }
                        for t in ts[:3]
                    ],
                    hypothesis=hyp,
                )
            )
        return out

    # ------------------------------------------------------------------- no teacher, no text
    def synthesize(
        self,
        task: TaskSpec,
        failures: list[EvalItem],
        eval_texts: list[str],
        confused_with: dict[str, str] | None = None,
        per_case: int = 2,
    ) -> list[EvalItem]:
        """Writing new inputs needs a teacher; the rule brain's data comes from the logs alone."""
        return []

    def propose_skill(self, task: TaskSpec, skill: Skill | None, failures: list[EvalItem]) -> Skill | None:
        return None

    # ---------------------------------------------------------------------------------- plan
    def plan(
        self, iteration: int, diagnosis: Diagnosis, last: dict[str, Any] | None, previous: Plan | None
    ) -> Plan:
        """First iteration: the default recipe. Later: change what the last verdict says failed.

        Policy after Pioneer Agent: a passing candidate → continue from it with more weight on the
        failures; too many regressions → more replay and a gentler learning rate; target not fixed →
        rework data (weight the failures) when the target score is below 0.80, otherwise tune (more epochs).
        """
        if previous is None or last is None:
            return Plan(
                iteration=iteration,
                rationale=[
                    "default recipe: LoRA SFT continuing the incumbent, a hard negative per failure, 20% replay, lr 5e-4"
                ],
            )
        p = previous.model_copy(update={"iteration": iteration, "rationale": []})
        if last.get("passed"):
            # The last candidate passed and is now the working incumbent: continue it, a shorter pass that
            # leans harder on the failures (those it fixed cost little; those it did not are the point).
            p.epochs = max(1.0, previous.epochs - 1)
            p.failure_weight = min(4, previous.failure_weight + 1)
            p.rationale.append(
                f"{last.get('candidate')} passed (target {last.get('target_after') or 0:.2f}): continue from it, "
                f"failures ×{p.failure_weight}, {p.epochs:g} epochs"
            )
            return p
        regressions = last.get("new_regressions", 0)
        limit = last.get("max_new_regressions", 2)
        target_after = last.get("target_after")
        if regressions > limit:
            p.replay_fraction = min(0.5, p.replay_fraction * 2)
            p.learning_rate = p.learning_rate * 0.5
            p.hard_negatives_per_case = min(3, p.hard_negatives_per_case + 1)
            p.rationale.append(
                f"{regressions} regressions > {limit}: replay ×2 ({p.replay_fraction:.0%}), learning rate ×0.5, "
                f"hard negatives ×{p.hard_negatives_per_case}"
            )
        if last.get("target_gain", 0.0) <= 0 or (target_after is not None and target_after < 0.8):
            if target_after is not None and target_after < 0.8:
                p.failure_weight = min(4, p.failure_weight + 1)
                p.rationale.append(
                    f"target {target_after:.2f} < 0.80: rework data (failure examples ×{p.failure_weight})"
                )
            else:
                p.epochs = p.epochs + 1
                p.rationale.append(f"target gain too small: epochs → {p.epochs:g}")
        if not p.rationale:
            p.epochs += 1
            p.rationale.append("gate failed for another reason: one more epoch")
        return p
