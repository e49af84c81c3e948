"""Evidence that a piece of feedback is wrong: kNN label consensus on sentence embeddings.

A correction says "this input means label L". If the inputs most similar to it (by meaning, not by
spelling) almost all carry another label, and hardly any carries L, the correction is suspect — the
training-free SimiFeat idea (SimiFeat, arXiv 2110.06283; README, Research). Each verdict keeps
its evidence: the neighbours, their labels and similarities, and the shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Consensus:
    """What the neighbours of one labelled input say about its label."""

    own_share: float  # similarity-weighted share of the neighbours agreeing with the given label
    top_label: str
    top_share: float
    neighbours: list[dict[str, Any]] = field(default_factory=list)


def knn_consensus(
    embeddings: Any, labels: list[str | None], *, k: int = 10, query: list[int] | None = None
) -> dict[int, Consensus]:
    """For each index in ``query`` (default: every labelled one), the weighted vote of its ``k`` nearest labelled
    neighbours (cosine on unit vectors, itself excluded). Similarities below 0 count as 0. A query may be
    unlabelled (its ``own_share`` is then 0): that is how a label is inferred for a trace nobody labelled."""
    import numpy as np

    labelled = [i for i, lab in enumerate(labels) if lab is not None]
    if len(labelled) < 2:
        return {}
    emb = np.asarray(embeddings)
    rows = list(query) if query is not None else labelled
    if not rows:
        return {}
    sims = emb[rows] @ emb[labelled].T  # only the rows asked for: O(queries × labelled), not N × N
    out = {}
    for r, i in enumerate(rows):
        row = sims[r].copy()
        row[[j for j, li in enumerate(labelled) if li == i]] = -np.inf
        order = np.argsort(row)[::-1][:k]
        votes: dict[str, float] = {}
        for j in order:
            lab = str(labels[labelled[j]])
            votes[lab] = votes.get(lab, 0.0) + max(0.0, float(row[j]))
        total = sum(votes.values())
        if total <= 0:
            continue
        top, w = max(votes.items(), key=lambda kv: kv[1])
        out[i] = Consensus(
            own_share=votes.get(str(labels[i]), 0.0) / total if labels[i] is not None else 0.0,
            top_label=top,
            top_share=w / total,
            neighbours=[
                {"index": labelled[j], "label": labels[labelled[j]], "similarity": round(float(row[j]), 3)}
                for j in order
            ],
        )
    return out


# Inferring a label that only ever *trains* (never judges): the neighbours' consensus must be clear — enough
# neighbours on its side, a trusted neighbour really close — and either the model's own answer agrees with it
# (two independent signals) or the consensus alone is overwhelming. Chosen on AdaptFT stage 1 (CLINC banking,
# 15 % poison), reported on the demo and stages 2–3 (`kaizen bench triage`).
INFER_MIN_VOTES = 3
INFER_TOP_MIN = 0.6
INFER_ALONE_MIN = 0.8
INFER_MIN_SIMILARITY = 0.5


def inferred_label(cons: Consensus, agreeing: str | None, *, refused: str | None = None) -> str | None:
    """The label ``cons`` supports, or None. ``agreeing``: a second signal's label (the model's own answer);
    ``refused``: a label it must not be (the distrusted correction, or the answer a failure verdict rejected)."""
    votes = sum(1 for n in cons.neighbours if n["label"] == cons.top_label)
    nearest = max((float(n["similarity"]) for n in cons.neighbours), default=0.0)
    if votes < INFER_MIN_VOTES or nearest < INFER_MIN_SIMILARITY or cons.top_label == refused:
        return None
    if cons.top_share >= INFER_ALONE_MIN or (cons.top_share >= INFER_TOP_MIN and cons.top_label == agreeing):
        return cons.top_label
    return None


@dataclass(frozen=True)
class ModelVote:
    """What a model's own label likelihoods say about one given label (confident learning)."""

    given: str
    given_prob: float  # the model's probability of the given label, normalised over the label set
    threshold: float  # the given label's per-class threshold: mean probability on the examples that carry it
    likely: (
        str | None
    )  # the most probable label among those above their own threshold (None: no confident label)
    likely_prob: float
    rank: int  # the given label's rank among all labels (1 = the model's first choice)

    @property
    def disputes(self) -> bool:
        """The model is confident in another label and below its usual confidence in the given one."""
        return self.likely is not None and self.likely != self.given and self.given_prob < self.threshold


def confident_votes(
    logprobs: list[list[float]], labels: list[str], given: list[str | None], *, query: list[int]
) -> dict[int, ModelVote]:
    """Confident learning (Northcutt et al., JAIR 2021) on a model's label log-likelihoods.

    Each row of ``logprobs`` is one input's log-likelihood of every label; ``given`` its label (None: none
    given). A class's threshold is the model's mean probability of that class over the inputs that carry
    it, so a model that is never very sure of a rare class is not held to a common class's standard. For
    each ``query`` index the vote records the given label's probability against that threshold and the
    label the model is confidently for (above its own threshold), if any.

    Examples:
        >>> import math
        >>> lp = [[math.log(p) for p in row] for row in ([.9, .1], [.8, .2], [.3, .7], [.2, .8], [.85, .15])]
        >>> v = confident_votes(lp, ["a", "b"], ["a", "a", "b", "b", "b"], query=[4])[4]
        >>> v.likely, v.disputes, v.rank
        ('a', True, 2)
        >>> confident_votes(lp, ["a", "b"], ["a", "a", "b", "b", "b"], query=[2])[2].disputes
        False
    """
    import numpy as np

    lp = np.asarray(logprobs, dtype=float)
    if lp.ndim != 2 or lp.shape[1] != len(labels):
        raise ValueError(f"expected one log-likelihood per label ({len(labels)}) in each row")
    probs = np.exp(lp - lp.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    col = {lab: j for j, lab in enumerate(labels)}
    thresholds = np.full(len(labels), np.inf)  # a class nobody carries: the model cannot be "confident" in it
    for lab, j in col.items():
        rows = [i for i, g in enumerate(given) if g == lab]
        if rows:
            thresholds[j] = float(probs[rows, j].mean())
    out = {}
    for i in query:
        g = given[i]
        if g is None or g not in col:
            continue
        row = probs[i]
        above = [j for j in range(len(labels)) if row[j] >= thresholds[j]]
        best = max(above, key=lambda j: row[j]) if above else None
        out[i] = ModelVote(
            given=g,
            given_prob=float(row[col[g]]),
            threshold=float(thresholds[col[g]]),
            likely=labels[best] if best is not None else None,
            likely_prob=float(row[best]) if best is not None else 0.0,
            rank=int((row > row[col[g]]).sum()) + 1,
        )
    return out
