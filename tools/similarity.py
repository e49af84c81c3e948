"""Text similarity for near-duplicates, decontamination and off-domain checks (scikit-learn TF-IDF).

Character n-grams (3–5, within word boundaries) rather than words: production inputs are full of
typos, and "transfr money" must still be near "transfer money".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def normalize_text(text: str) -> str:
    return " ".join(text.casefold().split())


class TextIndex:
    """A TF-IDF index over a fixed list of texts; cosine similarities on demand."""

    def __init__(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.texts = list(texts)
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)
        corpus = [normalize_text(t) or " " for t in self.texts]
        self.matrix = self.vectorizer.fit_transform(corpus) if corpus else None

    def similarity(self, queries: Sequence[str]) -> Any:
        """Dense (len(queries), len(texts)) cosine-similarity matrix."""
        import numpy as np

        if self.matrix is None or not queries:
            return np.zeros((len(queries), len(self.texts)))
        q = self.vectorizer.transform([normalize_text(t) or " " for t in queries])
        return (q @ self.matrix.T).toarray()

    def self_similarity(self) -> Any:
        """(n, n) similarities among the indexed texts, with the diagonal zeroed."""
        import numpy as np

        if self.matrix is None:
            return np.zeros((0, 0))
        sims = (self.matrix @ self.matrix.T).toarray()
        np.fill_diagonal(sims, 0.0)
        return sims


def near_duplicates(candidates: Sequence[str], references: Sequence[str], threshold: float = 0.9) -> list[int]:
    """Indices of ``candidates`` whose text is (nearly) the same as any reference text."""
    if not candidates or not references:
        return []
    exact = {normalize_text(r) for r in references}
    sims = TextIndex(references).similarity(candidates)
    return [i for i, c in enumerate(candidates) if normalize_text(c) in exact or sims[i].max() >= threshold]
