"""``LLMBrain``: diagnosis, data synthesis, planning and skill edits by an OpenAI-compatible teacher.

It never works alone. The ``RuleBrain`` runs first on every decision and its answer is the one used
whenever the teacher's is missing or invalid (``LLMClient.parse`` returns None after bounded
retries; the reason is in ``brain.jsonl``). The teacher *adds* to the rule brain's answer — names and
explanations of clusters, probes, external-vs-fixable judgements, synthetic paraphrases and hard
negatives, a plan, a skill edit — and everything it adds is validated before use: labels must be in
the label set, plans must fit the Plan schema's bounds, generated inputs must not be near-duplicates
of any eval item. Trace text reaches it only inside ``<data>`` fences (``llm_client.fence``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from kaizen.agent.llm_client import LLMClient, fence
from kaizen.agent.rule_brain import RuleBrain
from kaizen.agent.state import Diagnosis, FailureCluster, Plan
from kaizen.tools.data import item_id
from kaizen.tools.errors import DataError
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import EvalItem, Message, Skill, TaskSpec, last_user_text
from kaizen.tools.similarity import near_duplicates
from kaizen.tools.store import TraceView

MAX_CLUSTERS = 8
MAX_PROBES = 3
POLICY = (
    "Iteration policy: held-out target score < 0.80 → rework the data (weight failures, more hard negatives); "
    "0.80–0.95 → tune hyper-parameters (learning rate, epochs); > 0.95 → add 2–3 examples per remaining "
    "failure pattern; too many regressions → more replay and a gentler learning rate."
)


# ------------------------------------------------------------------------- response schemas
class ClusterNote(BaseModel):
    key: str
    name: str
    explanation: str
    fixable: bool
    external_reason: str
    probes: list[str]


class ClusterReview(BaseModel):
    clusters: list[ClusterNote]


class SynthItem(BaseModel):
    input: str
    label: str
    kind: Literal["paraphrase", "hard_negative"]


class SynthBatch(BaseModel):
    items: list[SynthItem]


class PlanProposal(BaseModel):
    epochs: float
    learning_rate: float
    replay_fraction: float
    failure_weight: int
    hard_negatives_per_case: int
    fix: Literal["weights", "skill", "both"]
    rationale: str


class Shot(BaseModel):
    input: str
    output: str


class SkillEdit(BaseModel):
    instructions: str
    few_shot: list[Shot]
    evidence: list[str]
    rationale: str


class SeedItem(BaseModel):
    input: str
    label: str


class SeedBatch(BaseModel):
    items: list[SeedItem]


# ------------------------------------------------------------------------------------ brain
class LLMBrain:
    """A teacher model behind the rule brain; see the module docstring."""

    name = "llm"

    def __init__(self, client: LLMClient, rule: RuleBrain | None = None):
        self.client, self.rule = client, rule or RuleBrain()

    # ------------------------------------------------------------------------------ diagnose
    def diagnose(self, task: TaskSpec, traces: list[TraceView]) -> Diagnosis:
        diag = self.rule.diagnose(task, traces)
        open_ = [c for c in diag.clusters if c.kind not in ("suspect", "uncorrected")][:MAX_CLUSTERS]
        if not open_:
            return diag
        review = self.client.parse(
            "diagnose",
            ClusterReview,
            _task_intro(task)
            + (
                "\nYou review failure clusters of a deployed model. For each cluster key given, name the pattern, explain "
                "it, say whether more training data can fix it (fixable) or it is external (bad feedback, missing "
                f"knowledge, a product issue: say why), and write up to {MAX_PROBES} new short inputs (probes) that the "
                "model should get wrong if your explanation is right."
            ),
            "\n\n".join(_cluster_text(c) for c in open_),
        )
        if review is None:
            return diag
        notes = {n.key: n for n in review.clusters}
        for c in open_:
            n = notes.get(c.key)
            if n is None:
                continue
            c.name, c.hypothesis = n.name[:80], (n.explanation or c.hypothesis)[:500]
            c.probes = [p.strip()[:300] for p in n.probes if p.strip()][:MAX_PROBES]
            if not n.fixable and n.external_reason.strip():
                c.fixable, c.external_reason = False, n.external_reason[:300]
        return diag

    # -------------------------------------------------------------------------------- plan
    def plan(
        self, iteration: int, diagnosis: Diagnosis, last: dict[str, Any] | None, previous: Plan | None
    ) -> Plan:
        base = self.rule.plan(iteration, diagnosis, last, previous)
        facts = {
            "iteration": iteration,
            "rule_plan": base.model_dump(exclude={"rationale"}),
            "last_verdict": {
                k: (last or {}).get(k)
                for k in (
                    "passed",
                    "reasons",
                    "target_before",
                    "target_after",
                    "new_regressions",
                    "max_new_regressions",
                )
            }
            if last
            else None,
            "clusters": [{"key": c.key, "count": c.count, "fixable": c.fixable} for c in diagnosis.clusters],
        }
        prop = self.client.parse(
            "plan",
            PlanProposal,
            (
                "You plan one fine-tuning iteration (LoRA SFT) of a small model. "
                + POLICY
                + " Bounds: epochs 1–8, "
                "learning_rate 1e-5–3e-3, replay_fraction 0–0.5, failure_weight 1–4, hard_negatives_per_case 0–3. "
                "fix: weights (train), skill (edit the prompt only, for format/instruction problems), or both."
            ),
            json.dumps(facts, default=str),
        )
        if prop is None:
            return base
        try:
            if not (1 <= prop.epochs <= 8 and 1e-5 <= prop.learning_rate <= 3e-3):
                raise ValueError("epochs or learning rate out of bounds")
            upd = prop.model_dump(exclude={"rationale"})
            return Plan.model_validate(
                base.model_dump() | upd | {"rationale": [f"brain: {prop.rationale[:300]}"]}
            )
        except (ValidationError, ValueError) as e:
            self.client._log(
                {
                    "purpose": "plan",
                    "ok": False,
                    "cached": False,
                    "attempts": 0,
                    "tokens": 0,
                    "fallback": f"proposal rejected: {str(e)[:200]}",
                }
            )
            return base

    # -------------------------------------------------------------------------- synthesize
    def synthesize(
        self,
        task: TaskSpec,
        failures: list[EvalItem],
        eval_texts: list[str],
        confused_with: dict[str, str] | None = None,
        per_case: int = 2,
    ) -> list[EvalItem]:
        """Paraphrases of failing inputs and hard negatives of their neighbouring labels, validated."""
        if task.kind != "classification" or not failures:
            return []
        confused_with = confused_with or {}
        cases = [
            {
                "input": last_user_text(f.messages),
                "gold": f.expected,
                "confused_with": confused_with.get(f.id),
            }
            for f in failures[:12]
        ]
        batch = self.client.parse(
            "synthesize",
            SynthBatch,
            _task_intro(task)
            + (
                f"\nFor each failing case write {per_case} paraphrases of its input (kind paraphrase, label = its gold) in "
                "different surface forms, and one hard negative: an input that truly belongs to the label it was confused "
                "with but looks similar (kind hard_negative, label = that neighbouring label). Keep the length and style of "
                "the real inputs."
            ),
            fence(json.dumps(cases, ensure_ascii=False)),
            max_tokens=2048,
        )
        if batch is None:
            return []
        return validate_synthetic(
            task, [(i.input, i.label, i.kind) for i in batch.items], eval_texts, [c["input"] for c in cases]
        )

    def synthesize_seed(self, task: TaskSpec, n: int) -> list[EvalItem]:
        """Cold start without data: labelled examples written from the task description."""
        batch = self.client.parse(
            "cold-start",
            SeedBatch,
            _task_intro(task)
            + (
                f"\nWrite {n} realistic, varied user inputs for this task with their correct label, spread evenly over the "
                "labels, several surface patterns per label."
            ),
            f"Write {n} examples.",
            max_tokens=4096,
        )
        if batch is None:
            raise DataError(
                "the brain wrote no usable examples (its answer was missing or invalid): "
                "pass --seed-data or --dataset"
            )
        items = validate_synthetic(task, [(i.input, i.label, "seed") for i in batch.items], [], [])
        if not items:
            raise DataError(
                "none of the brain's examples passed validation (labels outside the set?): pass --seed-data or --dataset"
            )
        return items

    # ------------------------------------------------------------------------------- skill
    def propose_skill(self, task: TaskSpec, skill: Skill | None, failures: list[EvalItem]) -> Skill | None:
        """A minimal, evidence-backed edit of the prompt skill (SkillForge-style), or None."""
        current = {
            "instructions": (skill.instructions if skill else "") or "",
            "few_shot": [[m.content for m in shot] for shot in (skill.few_shot if skill else [])],
        }
        cases = [
            {"trace_id": f.id, "input": last_user_text(f.messages), "expected": f.expected}
            for f in failures[:12]
        ]
        edit = self.client.parse(
            "skill",
            SkillEdit,
            _task_intro(task)
            + (
                "\nThe model fails the cases given. Propose the smallest edit of the prompt skill that would fix them: "
                "extra instructions and/or a few input→output examples. Cite the trace ids that support each change."
            ),
            "Current skill: "
            + json.dumps(current, ensure_ascii=False)
            + "\nFailures:\n"
            + fence(json.dumps(cases, ensure_ascii=False)),
        )
        if edit is None or not (edit.instructions.strip() or edit.few_shot):
            return None
        shots = [
            [Message(role="user", content=s.input), Message(role="assistant", content=s.output)]
            for s in edit.few_shot[:4]
            if s.input.strip() and _valid_label(task, s.output)
        ]
        return Skill(
            name=task.name,
            version=(skill.version + 1) if skill else 1,
            system_prompt=skill.system_prompt if skill else None,
            instructions=edit.instructions.strip()[:1000] or (skill.instructions if skill else None),
            few_shot=(skill.few_shot if skill else []) + shots,
        )


# ---------------------------------------------------------------------------------- helpers
def _task_intro(task: TaskSpec) -> str:
    labels = f" Labels: {', '.join(task.labels)}." if task.labels else ""
    return f"Task {task.name!r} ({task.kind}): {task.description or 'no description'}.{labels}"


def _cluster_text(c: FailureCluster) -> str:
    ex = [
        {"input": e.get("input"), "output": e.get("output"), "correction": e.get("correction")}
        for e in c.examples
    ]
    return f"cluster key: {c.key} ({c.count} failures; rule hypothesis: {c.hypothesis})\n" + fence(
        json.dumps(ex, ensure_ascii=False)
    )


def _valid_label(task: TaskSpec, label: str) -> bool:
    return not task.labels or normalize_label(label, task.labels) is not None


def validate_synthetic(
    task: TaskSpec, rows: list[tuple[str, str, str]], eval_texts: list[str], real_inputs: list[str]
) -> list[EvalItem]:
    """Keep generated (input, label, kind) rows that are usable: label in the set, a plausible length,
    not a near-duplicate of an eval item or of each other."""
    lengths = [len(t) for t in real_inputs if t]
    lo, hi = (max(3, min(lengths) // 3), max(lengths) * 3) if lengths else (3, 500)
    out: list[EvalItem] = []
    for text, label, kind in rows:
        text = text.strip()
        gold = normalize_label(label, task.labels) if task.labels else label.strip()
        if not gold or not (lo <= len(text) <= hi):
            continue
        msgs = [{"role": "user", "content": text}]
        out.append(
            EvalItem(
                id=item_id(msgs, gold),
                messages=msgs,
                expected=gold,
                metadata={"provenance": "synthetic", "reason": f"brain: {kind}"},
            )
        )
    dup = (
        set(near_duplicates([last_user_text(i.messages) for i in out], eval_texts, 0.9))
        if eval_texts
        else set()
    )
    seen: set[str] = set()
    kept = []
    for k, it in enumerate(out):
        if k not in dup and it.id not in seen:
            seen.add(it.id)
            kept.append(it)
    return kept
