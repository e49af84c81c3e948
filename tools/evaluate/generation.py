"""Generation: ROUGE-1/2/L against reference texts, with a tokenizer that keeps non-English letters."""

from __future__ import annotations

from typing import Any

from kaizen.tools.evaluate.common import TOKEN_RE, check_expected, check_lengths


class _UnicodeTokenizer:
    """ROUGE's default tokenisation (lower-case, alphanumeric runs, Porter stem words > 3 chars),
    except that non-ASCII letters are kept, so non-English text does not score as empty."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        toks = TOKEN_RE.findall((text or "").lower())
        return [self._stemmer.stem(t) if len(t) > 3 else t for t in toks]


def generation_metrics(outputs: list[str], expected: list[str]) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F-measure (``rouge_score``, with stemming) against reference texts.

    Args:
        outputs: Raw model outputs.
        expected: Reference texts.

    Returns:
        ``rouge1``, ``rouge2``, ``rougeL`` (means), ``rougeL_per_example`` and ``correct``
        (ROUGE-L F ≥ 0.5).

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    from rouge_score import rouge_scorer

    check_lengths(outputs, expected)
    check_expected("generation", expected, lambda e: isinstance(e, str), "a string (the reference text)")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_UnicodeTokenizer())
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    per_l: list[float] = []
    for out, ref in zip(outputs, expected, strict=True):
        scores = scorer.score(str(ref), out or "")
        for k in sums:
            sums[k] += scores[k].fmeasure
        per_l.append(float(scores["rougeL"].fmeasure))
    n = len(outputs)
    result: dict[str, Any] = {k: (v / n if n else 0.0) for k, v in sums.items()}
    result["rougeL_per_example"] = per_l
    result["correct"] = [x >= 0.5 for x in per_l]
    return result
