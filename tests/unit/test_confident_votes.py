"""Confident learning on label log-likelihoods: per-class thresholds, disputes, ranks, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kaizen.tools.errors import DataError
from kaizen.tools.label_noise import confident_votes


def _lp(*rows: tuple[float, ...]) -> list[list[float]]:
    return [[math.log(p) for p in row] for row in rows]


def test_thresholds_are_per_class_so_a_rarely_confident_class_is_not_held_to_a_common_ones_standard() -> None:
    # class b is never predicted with much confidence (0.4 on its own examples); a 0.35 for b is normal for b
    lp = _lp(
        (0.9, 0.1, 0.0 + 1e-9), (0.95, 0.05, 1e-9), (0.55, 0.4, 0.05), (0.6, 0.4, 1e-9), (0.6, 0.35, 0.05)
    )
    given = ["a", "a", "b", "b", "b"]
    v = confident_votes(lp, ["a", "b", "c"], given, query=[4])[4]
    assert v.threshold == pytest.approx((0.4 + 0.4 + 0.35) / 3, abs=1e-6)
    assert v.rank == 2 and v.likely is None and not v.disputes  # 0.6 < a's 0.925: not confident in a either


def test_a_label_the_model_is_confidently_against_is_disputed() -> None:
    lp = _lp((0.9, 0.1), (0.8, 0.2), (0.3, 0.7), (0.2, 0.8), (0.97, 0.03))
    v = confident_votes(lp, ["a", "b"], ["a", "a", "b", "b", "b"], query=[4])[4]
    assert v.disputes and v.likely == "a" and v.rank == 2
    assert v.given_prob == pytest.approx(0.03) and v.threshold == pytest.approx((0.7 + 0.8 + 0.03) / 3)


def test_unlabelled_or_unknown_queries_get_no_vote_and_a_class_nobody_carries_is_never_likely() -> None:
    lp = _lp((0.5, 0.3, 0.2), (0.1, 0.1, 0.8))
    votes = confident_votes(lp, ["a", "b", "c"], ["a", None], query=[0, 1])
    assert set(votes) == {0}
    assert votes[0].likely == "a"  # b and c: no example carries them, so no threshold to clear


def test_rows_must_match_the_label_set() -> None:
    with pytest.raises(ValueError, match="one log-likelihood per label"):
        confident_votes([[0.0, 0.0]], ["a", "b", "c"], ["a"], query=[0])


def test_model_evidence_names_what_the_scenario_folder_lacks(tmp_path: Path) -> None:
    from kaizen.workflows.bench.model_evidence import model_evidence

    (tmp_path / "scenario.json").write_text("{}")
    with pytest.raises(DataError, match=r"logs\.jsonl.*answer_key\.jsonl.*v1 not found"):
        model_evidence(tmp_path)
