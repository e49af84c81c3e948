"""The promotion gate: pairing, thresholds, presets and overrides, and its edge cases (ties, empty
sets, incomparable measurements). Pure values: no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaizen.tools.config import GateSettings, Settings, load_settings
from kaizen.tools.gate import PRESETS, GateConfig, SuiteComparison, Verdict, compare, decide, gate_config

REPAIR = gate_config("repair")
DECODING = {
    "backend": "transformers",
    "greedy": True,
    "dtype": "torch.float32",
    "mode": "generate",
    "max_new_tokens": 12,
}


def results(right: int, wrong: int, prefix: str = "x") -> dict[str, bool]:
    return {f"{prefix}{i}": i < right for i in range(right + wrong)}


def target(fixed: int = 3, broken: int = 0, n: int = 10, already: int = 0) -> SuiteComparison:
    """A target suite of failures: the incumbent gets ``already`` right, the candidate fixes ``fixed``."""
    inc = {f"t{i}": i < already for i in range(n)}
    cand = dict(inc)
    for i in range(already, already + fixed):
        cand[f"t{i}"] = True
    for i in range(broken):
        cand[f"t{i}"] = False
    return compare("target", inc, cand)


def regression(k: int, n: int = 20, suite: str = "regression") -> SuiteComparison:
    """A regression suite of passes, ``k`` of which the candidate gets wrong."""
    inc = {f"r{i}": True for i in range(n)}
    cand = {f"r{i}": i >= k for i in range(n)}
    return compare(suite, inc, cand)


# --------------------------------------------------------------------------------------- compare
def test_compare_pairs_only_shared_ids() -> None:
    inc = {"a": True, "b": False, "c": True, "only-inc": False}
    cand = {"a": True, "b": True, "c": False, "only-cand": True}
    s = compare("target", inc, cand)
    assert s.n == 3
    assert s.newly_right == ["b"] and s.newly_wrong == ["c"]
    assert s.incumbent_score == pytest.approx(2 / 3) and s.candidate_score == pytest.approx(2 / 3)
    assert s.gain == pytest.approx(0.0)


def test_compare_newly_right_and_wrong_and_mcnemar() -> None:
    inc = {f"e{i}": i < 5 for i in range(20)}  # 5 right
    cand = {f"e{i}": i >= 2 and i < 15 for i in range(20)}  # e0, e1 broken; e5..e14 fixed
    s = compare("target", inc, cand)
    assert s.newly_right == sorted(f"e{i}" for i in range(5, 15))
    assert s.newly_wrong == ["e0", "e1"]
    assert s.incumbent_score == 0.25 and s.candidate_score == 0.65
    # exact McNemar: 10 vs 2 discordant pairs, two-sided binomial(12, 0.5)
    from scipy.stats import binomtest

    assert s.p_value == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    assert 0.0 < s.p_value < 0.05


def test_compare_uses_given_scores_when_provided() -> None:
    s = compare("target", {"a": False}, {"a": True}, incumbent_score=0.1, candidate_score=0.7)
    assert (s.incumbent_score, s.candidate_score) == (0.1, 0.7)
    assert s.gain == pytest.approx(0.6)


def test_compare_with_nothing_shared_is_empty_not_an_error() -> None:
    s = compare("target", {"a": True}, {"b": True})
    assert s.n == 0 and s.newly_right == [] and s.newly_wrong == [] and s.p_value == 1.0
    assert compare("regression", {}, {}).n == 0


def test_no_discordant_pairs_gives_p_value_one() -> None:
    assert compare("target", results(3, 2), results(3, 2)).p_value == 1.0


# ------------------------------------------------------------------------------------- decide
def test_a_real_fix_with_no_regressions_passes_and_reports_mcnemar() -> None:
    t = target(fixed=6)
    v = decide(REPAIR, t, [regression(0)], (DECODING, DECODING))
    assert isinstance(v, Verdict) and v.passed, v.reasons
    assert v.new_regressions == 0
    line = next(r for r in v.reasons if r.startswith("target"))
    assert "6 fixed" in line and "McNemar p=" in line and f"{t.p_value:.3g}" in line
    assert v.target is t and v.config == REPAIR


def test_tie_on_target_fails_with_strict_gain() -> None:
    v = decide(REPAIR, target(fixed=0), [regression(0)])
    assert not v.passed
    assert any("target gain +0.000" in r and "> 0" in r for r in v.reasons), v.reasons


def test_tie_from_fixing_and_breaking_equally_also_fails() -> None:
    t = target(fixed=2, broken=2, already=2)
    assert t.gain == 0 and len(t.newly_right) == 2 and len(t.newly_wrong) == 2
    assert not decide(REPAIR, t, [regression(0)]).passed


def test_tie_on_target_passes_in_the_cold_start_preset() -> None:
    v = decide(gate_config("cold-start"), target(fixed=0), [regression(0)])
    assert v.passed, v.reasons


def test_a_loss_on_target_fails_even_in_cold_start() -> None:
    v = decide(gate_config("cold-start"), target(fixed=0, broken=1, already=3), [])
    assert not v.passed


def test_min_gain_and_min_score() -> None:
    cfg = GateConfig(min_gain=0.5, min_score=0.0)
    assert not decide(cfg, target(fixed=3), []).passed  # +0.3 < 0.5
    assert decide(cfg, target(fixed=6), []).passed  # +0.6
    cfg = GateConfig(min_score=0.9)
    v = decide(cfg, target(fixed=6), [])
    assert not v.passed and any("min_score" in r for r in v.reasons)


def test_empty_target_fails_with_no_target_examples() -> None:
    for t in (None, compare("target", {}, {})):
        v = decide(REPAIR, t, [regression(0)])
        assert not v.passed
        assert any(r.startswith("no target examples") for r in v.reasons), v.reasons
    assert not decide(gate_config("cold-start"), None, []).passed


def test_empty_regression_suite_is_noted_but_not_a_failure_by_itself() -> None:
    empty = compare("regression", {}, {})
    v = decide(REPAIR, target(fixed=4), [empty])
    assert v.passed, v.reasons
    assert any("regression: empty" in r for r in v.reasons)
    assert v.new_regressions == 0


@pytest.mark.parametrize("preset", ["repair", "demo"])
def test_regressions_at_the_maximum_pass_and_one_more_fails(preset: str) -> None:
    cfg = gate_config(preset)
    k = cfg.max_new_regressions
    assert k == 2
    ok = decide(cfg, target(fixed=5), [regression(k)])
    assert ok.passed and ok.new_regressions == k, ok.reasons
    bad = decide(cfg, target(fixed=5), [regression(k + 1)])
    assert not bad.passed and bad.new_regressions == k + 1
    assert any("more than allowed" in r for r in bad.reasons)


def test_max_new_regressions_is_checked_on_each_suite() -> None:
    # 2 + 2 on two suites: each within the limit (the previous promotion's suites are checked too)
    v = decide(REPAIR, target(fixed=5), [regression(2), regression(2, suite="previous/regression")])
    assert v.passed and v.new_regressions == 4
    v = decide(REPAIR, target(fixed=5), [regression(0), regression(3, suite="previous/regression")])
    assert not v.passed and any(r.startswith("previous/regression: 3 newly wrong") for r in v.reasons)


def test_zero_tolerance() -> None:
    cfg = REPAIR.model_copy(update={"max_new_regressions": 0, "max_regression_rate": 0.0})
    assert decide(cfg, target(fixed=5), [regression(0)]).passed
    assert not decide(cfg, target(fixed=5), [regression(1)]).passed


def test_decoding_mismatch_is_incomparable() -> None:
    other = DECODING | {"max_new_tokens": 32}
    v = decide(REPAIR, target(fixed=6), [regression(0)], (DECODING, other))
    assert not v.passed
    assert any(r.startswith("incomparable") for r in v.reasons), v.reasons
    v = decide(REPAIR, target(fixed=6), [regression(0)], (DECODING, DECODING | {"backend": "vllm"}))
    assert not v.passed and any(r.startswith("incomparable") for r in v.reasons)


def test_dtype_difference_alone_is_not_incomparable() -> None:
    v = decide(REPAIR, target(fixed=6), [regression(0)], (DECODING, DECODING | {"dtype": "torch.bfloat16"}))
    assert v.passed, v.reasons
    assert not any("incomparable" in r for r in v.reasons)


def test_every_check_leaves_a_reason() -> None:
    v = decide(REPAIR, target(fixed=5), [regression(1), compare("old", {}, {})], (DECODING, DECODING))
    assert len(v.reasons) == 3  # target, regression, empty old suite
    v = decide(REPAIR, None, [regression(5)], (DECODING, DECODING | {"greedy": False}))
    assert not v.passed and len(v.reasons) == 3  # incomparable, no target, too many regressions


def test_verdict_is_json_serialisable() -> None:
    v = decide(REPAIR, target(fixed=3), [regression(1)])
    again = Verdict.model_validate_json(v.model_dump_json())
    assert (
        again.passed == v.passed
        and again.new_regressions == 1
        and again.target.newly_right == v.target.newly_right
    )


# ---------------------------------------------------------------------------- presets, config
def test_repair_preset_defaults() -> None:
    cfg = gate_config("repair", Settings().gate)
    assert cfg == PRESETS["repair"]
    assert (
        cfg.max_new_regressions == 2
        and cfg.min_gain == 0.0
        and cfg.min_score == 0.0
        and cfg.require_strict_gain
    )
    assert gate_config("repair", None) == cfg
    cold = gate_config("cold-start", Settings().gate)
    assert not cold.require_strict_gain


def test_kaizen_yaml_overrides_apply(tmp_path: Path) -> None:
    p = tmp_path / "kaizen.yaml"
    p.write_text("gate:\n  max_new_regressions: 0\n  min_score: 0.6\n")
    cfg = gate_config("repair", load_settings(p).gate)
    assert cfg.max_new_regressions == 0 and cfg.min_score == 0.6
    assert cfg.min_gain == PRESETS["repair"].min_gain and cfg.require_strict_gain  # unset: preset
    assert PRESETS["repair"].max_new_regressions == 2  # the preset itself is untouched
    # require_approval lives in the same yaml section but is not a gate threshold
    assert "require_approval" not in cfg.model_dump()


def test_overrides_apply_to_other_presets_too() -> None:
    cfg = gate_config("cold-start", GateSettings(min_gain=0.05))
    assert cfg.min_gain == 0.05 and not cfg.require_strict_gain


def test_unknown_preset_is_an_error() -> None:
    with pytest.raises(KeyError):
        gate_config("nope")


def test_gate_config_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError):
        GateConfig(max_regressions=1)  # type: ignore[call-arg]


# ---------------------------------------------------------------- the gate at every suite size
def flips(wrong: int, right: int, n: int, suite: str = "regression") -> SuiteComparison:
    """A regression suite of ``n`` where ``wrong`` flip right→wrong and ``right`` flip wrong→right."""
    inc = {f"r{i}": i < n - right for i in range(n)}  # the last `right` items were wrong before
    cand = {k: (not v) if (int(k[1:]) < wrong or int(k[1:]) >= n - right) else v for k, v in inc.items()}
    return compare(suite, inc, cand)


def test_small_suite_keeps_the_absolute_floor() -> None:
    # 12 examples: the rate allows 0, the floor ε = 2 still applies; 3 breaks fail.
    assert decide(REPAIR, target(fixed=5), [flips(2, 0, 12)]).passed
    assert not decide(REPAIR, target(fixed=5), [flips(3, 0, 12)]).passed


def test_net_better_mid_size_suite_passes_where_the_absolute_count_refused() -> None:
    """The issue's case: 82 examples, 10 newly right and 4 newly wrong (0.88 → 0.95) is not a regression."""
    v = decide(REPAIR, target(fixed=5), [flips(4, 10, 82)])
    assert v.passed, v.reasons
    assert any("rate ≤" in r and "paired p=" in r for r in v.reasons)


def test_large_suite_uses_the_rate_but_refuses_a_significant_loss() -> None:
    # 2,000 examples: 60 newly wrong is within 5 %, and with 55 newly right it is a wash → passes.
    assert decide(REPAIR, target(fixed=5), [flips(60, 55, 2000)]).passed
    # The same 60 breaks with only 20 fixes is significantly worse → refused although under the rate.
    v = decide(REPAIR, target(fixed=5), [flips(60, 20, 2000)])
    assert not v.passed and any("significantly worse" in r for r in v.reasons)
    # More than the rate allows is refused whatever the fixes.
    assert not decide(REPAIR, target(fixed=5), [flips(101, 200, 2000)]).passed


def test_paired_test_and_bound_edge_cases() -> None:
    from kaizen.tools.gate import paired_worse_p, rate_upper_bound

    assert paired_worse_p(0, 0) == 1.0 and paired_worse_p(0, 5) == 1.0
    assert paired_worse_p(5, 0) < 0.05 < paired_worse_p(4, 0)
    assert rate_upper_bound(0, 0) == 1.0 and rate_upper_bound(3, 3) == 1.0
    assert 0 < rate_upper_bound(1, 1000) < 0.01
