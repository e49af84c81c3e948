"""Scoring model outputs against expected answers, one family of metrics per task kind.

Everything here is a pure function of (outputs, expected) — no model, no torch, no database — so
the same code scores offline evaluations, gates a candidate against the incumbent, and backs the
GRPO rewards in ``kaizen.tools.train.rewards``. ``compute_metrics`` is the single entry point callers
use: it checks that the expected values fit the task kind (raising ``DataError`` that names the
offending example) and always returns ``score`` (the headline metric), ``metric`` (its name) and
``correct`` (one bool per example, what ``mcnemar_exact`` compares between two models).

Headline metric per kind: classification → ``accuracy``, extraction → ``field_f1``,
math → ``exact_match``, generation → ``rougeL``, code → ``pass@1``.

One module per family — ``classification``, ``extraction``, ``math_answers``, ``generation``,
``sandbox`` (code) — on ``common`` (the checks and patterns they share); this module dispatches
and compares, and re-exports the families' public functions for callers.
"""

from __future__ import annotations

from typing import Any

from kaizen.tools.errors import ConfigError, DataError
from kaizen.tools.evaluate.classification import INVALID, classification_metrics, normalize_label
from kaizen.tools.evaluate.common import check_lengths
from kaizen.tools.evaluate.extraction import extraction_metrics, parse_json_object
from kaizen.tools.evaluate.generation import generation_metrics
from kaizen.tools.evaluate.math_answers import extract_final_answer, math_metrics
from kaizen.tools.evaluate.sandbox import code_metrics, extract_code, run_python_sandboxed
from kaizen.tools.schema import DEFAULT_METRIC

__all__ = [
    "INVALID",
    "classification_metrics",
    "code_metrics",
    "compute_metrics",
    "extract_code",
    "extract_final_answer",
    "extraction_metrics",
    "generation_metrics",
    "math_metrics",
    "mcnemar_exact",
    "normalize_label",
    "parse_json_object",
    "run_python_sandboxed",
]


def compute_metrics(
    kind: str,
    outputs: list[str],
    expected: list[Any],
    labels: list[str] | None = None,
    *,
    metric: str | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Score ``outputs`` for a task of the given kind.

    Args:
        kind: classification | extraction | generation | math | code.
        outputs: Raw model outputs (``None`` counts as an empty output).
        expected: Expected values, one per output, of the type the kind needs: a label string
            (classification), a dict of fields (extraction), a reference text (generation), a
            number or ``#### <n>`` answer (math), ``{"tests": "..."}`` (code).
        labels: The label set (classification only).
        metric: Headline metric to report as ``score`` (a numeric key of the kind's result, e.g.
            ``macro_f1``); defaults to the kind's own (accuracy, field_f1, exact_match, rougeL,
            pass@1).
        timeout_s: Per-example limit (code only).

    Returns:
        The kind's metrics plus ``score`` (the headline value), ``metric`` (its name) and
        ``correct`` (list[bool]).

    Raises:
        ConfigError: When ``kind`` is unknown or ``metric`` is not one the kind reports.
        DataError: When lengths differ, an output is not a string, or an expected value has the
            wrong type for the kind (the message names the example index).
    """
    if kind not in DEFAULT_METRIC:
        raise ConfigError(f"unknown task kind {kind!r}; use one of {', '.join(DEFAULT_METRIC)}")
    outputs, expected = list(outputs), list(expected)
    check_lengths(outputs, expected)
    bad = next((i for i, o in enumerate(outputs) if o is not None and not isinstance(o, str)), None)
    if bad is not None:
        raise DataError(f"output {bad} is a {type(outputs[bad]).__name__}; outputs must be strings")
    outputs = [o or "" for o in outputs]
    if kind == "classification":
        result = classification_metrics(outputs, expected, labels or [])
    elif kind == "extraction":
        result = extraction_metrics(outputs, expected)
    elif kind == "math":
        result = math_metrics(outputs, expected)
    elif kind == "generation":
        result = generation_metrics(outputs, expected)
    else:
        result = code_metrics(outputs, expected, timeout_s=timeout_s)
    name = metric or DEFAULT_METRIC[kind]
    value = result.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        numeric = (k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        known = ", ".join(numeric)
        raise ConfigError(f"metric {name!r} is not reported for {kind} tasks; use one of {known}")
    return {**result, "score": float(value), "metric": name}


def mcnemar_exact(incumbent_correct: list[bool], candidate_correct: list[bool]) -> dict[str, Any]:
    """Exact McNemar test of two models scored on the same examples.

    Only discordant pairs matter: ``newly_right`` (incumbent wrong, candidate right) and
    ``newly_wrong`` (the reverse). The two-sided p-value is a binomial test of ``newly_right``
    out of all discordant pairs against 0.5.

    Args:
        incumbent_correct: Per-example correctness of the current model.
        candidate_correct: Per-example correctness of the candidate, same order.

    Returns:
        ``newly_right``, ``newly_wrong`` and ``p_value`` (1.0 when there are no discordant pairs).

    Raises:
        DataError: When the lists differ in length.
    """
    if len(incumbent_correct) != len(candidate_correct):
        raise DataError(
            f"McNemar needs the same examples for both models: got {len(incumbent_correct)} "
            f"and {len(candidate_correct)} results"
        )
    newly_right = sum(1 for a, b in zip(incumbent_correct, candidate_correct, strict=True) if not a and b)
    newly_wrong = sum(1 for a, b in zip(incumbent_correct, candidate_correct, strict=True) if a and not b)
    n = newly_right + newly_wrong
    if n == 0:
        p = 1.0
    else:
        from scipy.stats import binomtest

        p = float(binomtest(newly_right, n, 0.5, alternative="two-sided").pvalue)
    return {"newly_right": newly_right, "newly_wrong": newly_wrong, "p_value": min(1.0, p)}
