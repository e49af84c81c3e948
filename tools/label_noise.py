"""Evidence that a piece of feedback is wrong: kNN label consensus on sentence embeddings.

A correction says "this input means label L". If the inputs most similar to it (by meaning, not by
spelling) almost all carry another label, and hardly any carries L, the correction is suspect — the
training-free SimiFeat idea (RESEARCH.md, "Label-noise detection that runs offline"). Each verdict keeps
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
    neighbours (cosine on unit vectors, itself excluded). Similarities below 0 count as 0."""
    import numpy as np

    labelled = [i for i, lab in enumerate(labels) if lab is not None]
    if len(labelled) < 2:
        return {}
    emb = np.asarray(embeddings)
    rows = [i for i in (query if query is not None else labelled) if labels[i] is not None]
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
            own_share=votes.get(str(labels[i]), 0.0) / total,
            top_label=top,
            top_share=w / total,
            neighbours=[
                {"index": labelled[j], "label": labels[labelled[j]], "similarity": round(float(row[j]), 3)}
                for j in order
            ],
        )
    return out
