"""Text similarity for near-duplicates, decontamination and off-domain checks (scikit-learn TF-IDF).

Character n-grams (3–5, within word boundaries) by default: production inputs are full of typos,
and "transfr money" must still be near "transfer money". Character n-grams also match function
words, though ("what … does … take" is near many banking requests), so the off-domain check adds
a content-word index (``analyzer="word"``: stop words and numbers removed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

# Added to scikit-learn's English stop words: chat fillers that it keeps ("does", "want", "need" …)
# and that say nothing about what a request is about.
EXTRA_STOP_WORDS = frozenset(
    {
        "does",
        "did",
        "doing",
        "doesn",
        "don",
        "want",
        "need",
        "like",
        "know",
        "tell",
        "let",
        "help",
        "ok",
        "okay",
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "pls",
        "im",
    }
)


_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str) -> str:
    """Casefolded, punctuation to spaces, whitespace collapsed: "Declined?!" and "declined" match.

    Punctuation n-grams are rare, so their IDF is high: left in, a trailing "!" alone pulls the
    similarity of two otherwise identical requests below the near-duplicate threshold.
    """
    return " ".join(_PUNCT.sub(" ", text.casefold()).split())


class TextIndex:
    """A TF-IDF index over a fixed list of texts; cosine similarities on demand.

    ``analyzer="char"``: character 3–5-grams (typo-tolerant). ``analyzer="word"``: the set of
    content words (no stop words, no numbers); a text without any has an all-zero row (see
    ``has_terms``).
    """

    def __init__(self, texts: Sequence[str], analyzer: Literal["char", "word"] = "char"):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

        self.texts = list(texts)
        if analyzer == "char":
            self.vectorizer = TfidfVectorizer(
                analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1
            )
        else:
            # Binary, no IDF: the cosine of the two sets of content words. IDF would make the
            # domain's own vocabulary ("account", "card") count for least.
            self.vectorizer = TfidfVectorizer(
                analyzer="word",
                stop_words=sorted(ENGLISH_STOP_WORDS | EXTRA_STOP_WORDS),
                token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
                binary=True,
                use_idf=False,
                min_df=1,
            )
        corpus = [normalize_text(t) or " " for t in self.texts]
        try:
            self.matrix = self.vectorizer.fit_transform(corpus) if corpus else None
        except ValueError:  # empty vocabulary: not one content word in the whole corpus
            self.matrix = None

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
            return np.zeros((len(self.texts), len(self.texts)))
        sims = (self.matrix @ self.matrix.T).toarray()
        np.fill_diagonal(sims, 0.0)
        return sims

    def has_terms(self) -> Any:
        """Boolean array: which indexed texts have at least one term of the vocabulary."""
        import numpy as np

        if self.matrix is None:
            return np.zeros(len(self.texts), dtype=bool)
        return np.asarray(self.matrix.getnnz(axis=1) > 0)


def near_duplicates(
    candidates: Sequence[str], references: Sequence[str], threshold: float = 0.9
) -> list[int]:
    """Indices of ``candidates`` whose text is (nearly) the same as any reference text."""
    if not candidates or not references:
        return []
    exact = {normalize_text(r) for r in references}
    sims = TextIndex(references).similarity(candidates)
    return [i for i, c in enumerate(candidates) if normalize_text(c) in exact or sims[i].max() >= threshold]
