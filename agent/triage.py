"""Triage: which feedback to trust, and what the distrusted or missing feedback should have said.

The rule brain's diagnosis runs it first: it separates failures we can learn from from feedback we should
not trust (rules, TF-IDF near-duplicates and, where the offline sentence-embedding model is installed, kNN
label consensus on embeddings), then infers labels where the evidence agrees. ``kaizen bench triage``
measures it (and tunes ``EMB_OWN_MAX``/``EMB_TOP_MIN`` by setting them on this module).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from kaizen.agent.state import InferredLabel, SuspectFlag
from kaizen.tools.evaluate.metrics import normalize_label
from kaizen.tools.schema import TaskSpec, last_user_text
from kaizen.tools.similarity import TextIndex
from kaizen.tools.store import TraceView

# Thresholds (cosine similarities of TF-IDF vectors), chosen on the CLINC150 banking slice.
# NEAR_DUP (char n-grams): the same request with small edits. OFF_DOMAIN applies to the *domain*
# similarity — the mean of the char-n-gram and the content-word similarity of a pair (char alone
# for an input without content words): char n-grams alone match function words ("what size wipers
# does this car take" scores ≈0.15–0.23 against banking requests, as high as in-domain inputs).
# On 4–10 banking intents × 12–50 inputs (15 % with typos) vs CLINC's 60 out-of-scope queries, a
# best domain similarity < 0.12 flags 57–85 % of the out-of-scope queries and ≤ 0.8 % of the
# in-domain ones (char n-grams alone < 0.12: 8–50 % of out-of-scope).
OFF_DOMAIN = 0.12
NEAR_DUP = 0.75
# A correction is contradicted by near-duplicates only when at least this many agree on another
# label: with one, it is one word against another (and the first seen would be the one flagged).
MIN_DUP_VOTES = 2
KNN = 7
# kNN label consensus on sentence embeddings (all-MiniLM-L6-v2): a correction is suspect when its k
# nearest labelled inputs give its label at most OWN_MAX of their similarity-weighted vote and one other
# label at least TOP_MIN. Chosen on AdaptFT stage 1 (CLINC banking, 15 % poison) and only reported on the
# demo and stages 2–3 (benchmarks/triage: `kaizen bench triage`).
EMB_K = 10
# A consensus needs this many neighbours on its side: with a handful of labelled traces, k neighbours spread
# over many labels and any one label's "majority" is an accident.
EMB_MIN_VOTES = 3
EMB_OWN_MAX = 0.05
EMB_ROUNDS = 3
# Two inputs are linked (by meaning) when their cosine reaches this; an input linked to nothing is off-domain.
# Chosen on AdaptFT stage 1 (in-domain inputs: nearest ≥ 0.41; off-domain queries 0.14–0.29), reported on
# stages 2–3 and the demo.
EMB_OFF_DOMAIN = 0.3
# Inputs linked at that cosine, directly or through others, must make up this share of the distinct inputs
# (below 2 inputs: a lone input is off-domain, as before). At 40 % poison (AdaptFT stage 3) three stray
# requests, each sent several times, linked only to each other; in-domain inputs form one chain holding
# ≥ 95 % of the inputs on every AdaptFT stage and the demo. Chosen on stage 1 (same 3-request cluster there).
EMB_OFF_DOMAIN_SHARE = 0.05
EMB_TOP_MIN = 0.4
# When the neighbours side with the model's own answer against the correction, less agreement is needed:
# the feedback contradicts both the model and the inputs around it.
EMB_OUTPUT_OWN_MAX = 0.3
EMB_OUTPUT_TOP_MIN = 0.4
# A correction the input itself names is re-checked on the input without those words (see _leading_claim).
LEADING_TOP_MIN = 0.6
# Inputs that try to steer the model (prompt injection, jailbreaks): whatever their feedback says, training on
# it teaches obedience to the injection. Common phrasings, not any data set's.
ADVERSARIAL = re.compile(
    r"\b(ignore|disregard|forget)\b[^.\n]{0,30}\b(previous|prior|above|earlier)\b[^.\n]{0,20}\b(instructions?|prompts?|rules)\b"
    r"|\bdisregard the above\b|(^|\n|\()\s*(system|assistant)\s*:|\bdeveloper mode\b|\byou are (now )?DAN\b"
    r"|\b(without|no) (any )?(rules|content policy|restrictions)\b|\bignore your (safety )?guidelines\b"
    r"|\bsystem prompt\b",
    re.IGNORECASE,
)

# Distrusted corrections whose trace may still teach, under a label the evidence infers (never input-level
# flags: an off-domain, garbage or adversarial input has no right label to learn).
RELABELABLE = {
    "disagrees_with_similar_inputs",
    "contradicts_near_duplicates",
    "correction_off_label",
    "correction_equals_output",
}


def is_garbage(text: str) -> bool:
    """Empty, or mostly not letters (keyboard mash, binary, emoji floods)."""
    t = text.strip()
    if len(t) < 2:
        return True
    letters = sum(ch.isalpha() for ch in t)
    return letters / len(t) < 0.5 or not re.search(r"[aeiouy]", t.casefold())


def embed_inputs(traces: list[TraceView]) -> Any:
    """Every trace's input embedded once per diagnosis (the costly part, shared by the off-domain check,
    the kNN rounds and label inference); None without the embedding model or with too few traces."""
    from kaizen.tools import embed

    if len(traces) < 3 or not embed.available():
        return None
    return embed.embed([last_user_text(t.messages) for t in traces])


def infer_labels(
    task: TaskSpec, traces: list[TraceView], suspects: list[SuspectFlag], emb: Any
) -> list[InferredLabel]:
    """Labels for traces the feedback cannot be trusted on or did not give, where the evidence agrees.

    A distrusted correction is not a worthless trace: the input is real traffic and its neighbours usually
    say what it means. So are unlabeled traces and failures nobody corrected. kNN consensus over the
    *trusted* labels (suspects and the queries themselves excluded) proposes a label; ``inferred_label``
    keeps it only when the consensus is clear and the model's own answer agrees, or the consensus alone is
    overwhelming. These labels train; they never enter a suite that judges a candidate.
    """
    from kaizen.tools.label_noise import inferred_label, knn_consensus

    if task.kind != "classification" or not task.labels or emb is None:
        return []
    distrusted = {s.trace_id for s in suspects}
    relabel = {s.trace_id for s in suspects if s.kind in RELABELABLE}
    texts = [last_user_text(t.messages) for t in traces]
    golds = [None if t.id in distrusted else _gold(task, t) for t in traces]
    query = [
        i
        for i, t in enumerate(traces)
        if t.id in relabel
        or (
            golds[i] is None
            and t.id not in distrusted
            and not is_garbage(texts[i])
            and not ADVERSARIAL.search(texts[i])
        )
    ]
    if not query:
        return []
    out = []
    for i, cons in knn_consensus(emb, golds, k=EMB_K, query=query).items():
        t = traces[i]
        output = normalize_label(t.output, task.labels)
        if t.id in relabel:
            kind, agreeing, refused = "relabel", output, _gold(task, t)
        elif t.verdict == "fail":  # a failure nobody corrected: the answer it rejected is not the label
            kind, agreeing, refused = "pseudo_label", None, output
        else:
            kind, agreeing, refused = "pseudo_label", output, None
        lab = inferred_label(cons, agreeing, refused=refused)
        if lab is not None:
            out.append(
                InferredLabel(
                    trace_id=t.id,
                    label=lab,
                    kind=kind,  # type: ignore[arg-type]
                    evidence={
                        "method": "embedding-knn",
                        "feedback": refused if kind == "relabel" else None,
                        "model_output": output,
                        "share": round(cons.top_share, 3),
                        "neighbours": [
                            {
                                "trace_id": traces[n["index"]].id,
                                "label": n["label"],
                                "similarity": n["similarity"],
                            }
                            for n in cons.neighbours
                        ],
                    },
                )
            )
    return out


def find_suspects(task: TaskSpec, labeled: list[TraceView], emb: Any) -> list[SuspectFlag]:
    """The traces whose feedback is not to be trusted, each with its kind and evidence: the rules first
    (garbage or adversarial input, a correction off the label set or equal to the output), then off-domain
    inputs and corrections their near-duplicates or semantic neighbours contradict."""
    flags: dict[str, SuspectFlag] = {}

    def flag(t: TraceView, kind: str, **evidence: Any) -> None:
        flags.setdefault(t.id, SuspectFlag(trace_id=t.id, kind=kind, evidence=evidence))  # type: ignore[arg-type]

    texts = [last_user_text(t.messages) for t in labeled]
    for t, text in zip(labeled, texts, strict=True):
        if is_garbage(text):
            flag(t, "empty_or_garbage_input", input=text[:200])
        elif (m := ADVERSARIAL.search(text)) is not None:
            flag(t, "adversarial_input", input=text[:200], matched=m.group(0)[:80])
    answers = _usable_answers(task, labeled, flag)
    if task.kind == "extraction":
        _ungrounded_answers(labeled, texts, answers, flags, flag)
    if task.kind == "classification" and task.labels:
        _label_answers(task, labeled, flag)
    if len(labeled) >= 3:
        if emb is not None:
            _embedding_off_domain(labeled, texts, emb, flags, flag)
        _similarity_flags(task, labeled, texts, flags, flag)
        # Rounds: a flagged correction stops voting, so a poisoned input's neighbours that were
        # poisoned too no longer hide it (heavy poison); stops when a round flags nothing new.
        for _ in range(EMB_ROUNDS):
            before = len(flags)
            _embedding_flags(task, labeled, texts, emb, flags, flag)
            if len(flags) == before:
                break
    return list(flags.values())


def _usable_answers(task: TaskSpec, labeled: list[TraceView], flag: Any) -> dict[int, Any]:
    """Each given answer the task can score, parsed, by index in ``labeled``; the rest are flagged.

    Unusable: an extraction correction that is not a JSON object, a "pass" on output that is not one, a
    "pass" on an empty reply. Nothing can be trained or judged on it, so it is distrusted, with why. (A
    classification correction off the label set has its own rule, ``_label_answers``.)"""
    from kaizen.tools.data import expected_from_feedback

    usable: dict[int, Any] = {}
    for i, t in enumerate(labeled):
        if t.verdict == "fail" and not t.correction:
            continue  # an uncorrected failure: nothing given, nothing to distrust
        value, problem = expected_from_feedback(task, t.gold)
        if problem is None:
            usable[i] = value
        else:
            kind = "correction_malformed" if t.verdict == "fail" else "passing_output_malformed"
            flag(t, kind, answer=str(t.gold)[:200], problem=problem)
    return usable


def _label_answers(task: TaskSpec, labeled: list[TraceView], flag: Any) -> None:
    """A classification correction off the label set, or naming the very answer the verdict calls wrong."""
    for t in labeled:
        if t.verdict == "fail" and t.correction is not None:
            label = normalize_label(t.correction, task.labels)
            if label is None:
                flag(t, "correction_off_label", correction=t.correction, labels=task.labels)
            elif label == t.output.strip():
                # "report lost card" for the output "report_lost_card": the verdict says wrong, the
                # correction says the very answer given (a format failure keeps its own output)
                flag(t, "correction_equals_output", output=t.output, correction=t.correction)


def _ungrounded_answers(
    labeled: list[TraceView], texts: list[str], answers: dict[int, Any], flags: dict, flag: Any
) -> None:
    """Extraction feedback whose extractive fields name something the input never mentions (a correction that
    moves ``city`` to a city the request does not contain; a "pass" on an output that invented one). When an
    absent value is evidence is learnt from this traffic's own feedback (``tools/grounding.py``); the flag keeps
    each such field's value, grounding share and the rival values the input names as its evidence.
    ``answers``: the usable answers (``_usable_answers``); traces flagged already are left out."""
    from kaizen.tools.grounding import ungrounded_answers

    given = {
        i: (texts[i], value)
        for i, value in answers.items()
        if labeled[i].id not in flags and isinstance(value, dict)
    }
    for i, fields in ungrounded_answers(given).items():
        t = labeled[i]
        flag(t, "field_not_in_input", input=texts[i][:200], verdict=t.verdict, fields=fields)


def _embedding_off_domain(
    labeled: list[TraceView], texts: list[str], emb: Any, flags: dict, flag: Any
) -> None:
    """Inputs the logs do not vouch for by meaning ("what rhymes with orange" among banking requests):
    TF-IDF misses those that share function words with the domain.

    Inputs are linked when their cosine reaches ``EMB_OFF_DOMAIN``; the task's traffic is chained together
    (each request has a close neighbour, and neighbours have theirs). An input whose chain holds fewer than
    ``EMB_OFF_DOMAIN_SHARE`` of the distinct inputs is off-domain: with heavy off-domain traffic, stray
    requests arrive many times and vouch for each other ("write a haiku …" ↔ "what rhymes with orange",
    0.38), but only for each other. Repeats of one query (cosine ≥ 0.99) count once, and inputs already
    flagged (garbage, injections) link nothing.
    """
    import numpy as np
    from scipy.sparse.csgraph import connected_components

    sims = emb @ emb.T
    # the first of each input's repeats (itself included) stands for them
    group = (sims >= 0.99).argmax(axis=1)
    reps = np.array(sorted({int(g) for i, g in enumerate(group) if labeled[i].id not in flags}), dtype=int)
    if len(reps) < 2:
        return
    linked = sims[np.ix_(reps, reps)] >= EMB_OFF_DOMAIN
    _, comp = connected_components(linked, directed=False)
    sizes = np.bincount(comp)
    size_of = {int(r): int(sizes[c]) for r, c in zip(reps, comp, strict=True)}
    floor = max(2, EMB_OFF_DOMAIN_SHARE * len(reps))
    for i, t in enumerate(labeled):
        size = size_of.get(int(group[i]), 0)
        if t.id not in flags and size < floor:
            others = sims[i][group != group[i]]
            flag(
                t,
                "off_domain_input",
                method="embedding",
                input=texts[i][:200],
                best_similarity=round(float(others.max()), 3) if len(others) else 0.0,
                linked_inputs=size - 1,
            )


def _leading_claim(texts: list[str], emb: Any, golds: list[str | None], i: int) -> Any:
    """Consensus on the input with the correction's own words removed, when the input names the correction
    ("as you said, this is a card declined issue: …"): a label the text *claims* is not a label it *means*."""
    from kaizen.tools import embed
    from kaizen.tools.label_noise import knn_consensus

    words = [w for w in str(golds[i]).lower().replace("-", "_").split("_") if len(w) > 2]
    text = texts[i].lower()
    if not words or not all(re.search(rf"\b{re.escape(w)}", text) for w in words):
        return None
    masked = text
    for w in words:
        masked = re.sub(rf"\b{re.escape(w)}\w*", " ", masked)
    emb = emb.copy()
    emb[i] = embed.embed([masked])[0]  # only the masked input changes: the others keep their vectors
    cons = knn_consensus(emb, golds, k=EMB_K, query=[i]).get(i)
    if cons and cons.own_share <= EMB_OWN_MAX and cons.top_share >= LEADING_TOP_MIN:
        return cons
    return None


def _embedding_flags(
    task: TaskSpec, labeled: list[TraceView], texts: list[str], emb: Any, flags: dict, flag: Any
) -> None:
    """Corrections their semantic neighbours contradict (skipped when the embedding model is not installed)."""
    from kaizen.tools.label_noise import knn_consensus

    if task.kind != "classification" or emb is None:
        return
    golds = [None if t.id in flags else _gold(task, t) for t in labeled]
    query = [i for i, t in enumerate(labeled) if t.verdict == "fail" and golds[i] is not None]
    if not query:
        return
    for i, cons in knn_consensus(emb, golds, k=EMB_K, query=query).items():
        t = labeled[i]
        sides_with_output = cons.top_label == normalize_label(t.output, task.labels or [])
        strict = cons.own_share <= EMB_OWN_MAX and cons.top_share >= EMB_TOP_MIN
        lenient = (
            sides_with_output
            and cons.own_share <= EMB_OUTPUT_OWN_MAX
            and cons.top_share >= EMB_OUTPUT_TOP_MIN
        )
        if not (strict or lenient) and (masked := _leading_claim(texts, emb, golds, i)) is not None:
            cons, strict = masked, True  # the input names the correction, the rest of it says otherwise
        votes = sum(1 for n in cons.neighbours if n["label"] == cons.top_label)
        if (strict or lenient) and cons.top_label != golds[i] and votes >= EMB_MIN_VOTES:
            flag(
                t,
                "disagrees_with_similar_inputs",
                method="embedding-knn",
                correction=golds[i],
                majority=cons.top_label,
                majority_is_model_output=sides_with_output,
                share=round(cons.top_share, 3),
                own_share=round(cons.own_share, 3),
                neighbours=[
                    {
                        "trace_id": labeled[n["index"]].id,
                        "label": n["label"],
                        "similarity": n["similarity"],
                    }
                    for n in cons.neighbours
                ],
            )


def _gold(task: TaskSpec, t: TraceView) -> str | None:
    g = t.gold
    if g is None:
        return None
    return normalize_label(g, task.labels) if task.labels else g.strip()


def _similarity_flags(
    task: TaskSpec, labeled: list[TraceView], texts: list[str], flags: dict, flag: Any
) -> None:
    import numpy as np

    sims = TextIndex(texts).self_similarity()
    words = TextIndex(texts, analyzer="word")
    domain = np.where(words.has_terms()[:, None], (sims + words.self_similarity()) / 2, sims)
    golds = [_gold(task, t) for t in labeled]
    for i, t in enumerate(labeled):
        if t.id in flags:
            continue
        row = sims[i]
        best = float(domain[i].max()) if len(row) else 0.0
        if best < OFF_DOMAIN:
            flag(t, "off_domain_input", input=texts[i][:200], best_similarity=round(best, 3))
            continue
        if t.verdict != "fail" or golds[i] is None or task.kind != "classification":
            continue
        order = [j for j in row.argsort()[::-1] if labeled[j].id not in flags and golds[j] is not None][:KNN]
        dups = [j for j in order if row[j] >= NEAR_DUP]
        if dups:
            votes = Counter(golds[j] for j in dups)
            top, n = votes.most_common(1)[0]
            if top != golds[i] and n >= MIN_DUP_VOTES and n > votes.get(golds[i], 0):
                flag(
                    t,
                    "contradicts_near_duplicates",
                    correction=golds[i],
                    neighbours=[
                        {
                            "trace_id": labeled[j].id,
                            "label": golds[j],
                            "similarity": round(float(row[j]), 3),
                        }
                        for j in dups
                    ],
                )
                continue
        weights: dict[str, float] = {}
        for j in order:
            weights[str(golds[j])] = weights.get(str(golds[j]), 0.0) + float(row[j])
        total = sum(weights.values())
        if total <= 0 or len(order) < 3:
            continue
        top, w = max(weights.items(), key=lambda kv: kv[1])
        own = weights.get(str(golds[i]), 0.0)
        if top != golds[i] and w / total >= 0.7 and own / total < 0.1:
            flag(
                t,
                "disagrees_with_similar_inputs",
                correction=golds[i],
                majority=top,
                share=round(w / total, 3),
                neighbours=[
                    {"trace_id": labeled[j].id, "label": golds[j], "similarity": round(float(row[j]), 3)}
                    for j in order
                ],
            )
