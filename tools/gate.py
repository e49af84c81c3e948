"""The promotion gate: is the candidate better on the failures, and no worse on what worked?

Candidate and incumbent are compared on the *same* examples, measured with the *same* backend and
decoding settings (a difference there would make the comparison meaningless, so it fails the gate
with that reason rather than passing or failing on noise). The verdict is a value with reasons —
never an exception — so the agent can route on it and the report can show it.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kaizen.tools.evaluate.metrics import mcnemar_exact


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="Candidate's target score must reach this.")
    min_gain: float = Field(
        0.0, ge=-1.0, le=1.0, description="Candidate minus incumbent on the target set must reach this."
    )
    max_new_regressions: int = Field(
        2,
        ge=0,
        description="Right→wrong flips always allowed on a regression suite "
        "(the absolute floor; small suites).",
    )
    max_regression_rate: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Right→wrong flips allowed as a share of a "
        "regression suite's size (large suites); the larger of this and the floor applies.",
    )
    alpha: float = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="Significance of the one-sided paired test: a candidate whose "
        "newly-wrong outnumber its newly-right on a regression suite with p < alpha is refused.",
    )
    require_strict_gain: bool = Field(
        True, description="A tie on the target set (no example fixed) does not pass."
    )


PRESETS: dict[str, GateConfig] = {
    # Repair must fix something and may break at most ε = 2 passing examples (Pioneer Agent's gate).
    "repair": GateConfig(min_gain=0.0, max_new_regressions=2, require_strict_gain=True),
    # Cold start: never worse than the base on the held-out set.
    "cold-start": GateConfig(
        min_gain=0.0,
        max_new_regressions=1_000_000,
        max_regression_rate=1.0,
        alpha=1e-9,
        require_strict_gain=False,
    ),
    "demo": GateConfig(min_gain=0.0, max_new_regressions=2, require_strict_gain=True),
}


def gate_config(preset: str, overrides: Any = None) -> GateConfig:
    """The preset for a workflow with the non-null values of kaizen.yaml's ``gate:`` section applied."""
    base = PRESETS[preset]
    if overrides is None:
        return base
    upd = {k: v for k, v in overrides.model_dump().items() if k in GateConfig.model_fields and v is not None}
    return base.model_copy(update=upd)


class SuiteComparison(BaseModel):
    """Incumbent vs candidate on one suite, example by example."""

    suite: str
    n: int
    incumbent_score: float
    candidate_score: float
    newly_right: list[str]
    newly_wrong: list[str]
    p_value: float

    @property
    def gain(self) -> float:
        return self.candidate_score - self.incumbent_score


class Verdict(BaseModel):
    passed: bool
    target_ok: bool = True
    regressions_ok: bool = True
    reasons: list[str]
    target: SuiteComparison | None
    regressions: list[SuiteComparison]
    config: GateConfig

    @property
    def new_regressions(self) -> int:
        return sum(len(s.newly_wrong) for s in self.regressions)


def compare(
    suite: str,
    incumbent: dict[str, bool],
    candidate: dict[str, bool],
    incumbent_score: float | None = None,
    candidate_score: float | None = None,
) -> SuiteComparison:
    """Pair two runs on the examples both saw; scores default to accuracy on those examples."""
    ids = sorted(set(incumbent) & set(candidate))
    inc = [incumbent[i] for i in ids]
    cand = [candidate[i] for i in ids]
    test = mcnemar_exact(inc, cand) if ids else {"p_value": 1.0}
    acc = lambda xs: sum(xs) / len(xs) if xs else 0.0
    return SuiteComparison(
        suite=suite,
        n=len(ids),
        incumbent_score=acc(inc) if incumbent_score is None else incumbent_score,
        candidate_score=acc(cand) if candidate_score is None else candidate_score,
        newly_right=[i for i, a, b in zip(ids, inc, cand, strict=True) if not a and b],
        newly_wrong=[i for i, a, b in zip(ids, inc, cand, strict=True) if a and not b],
        p_value=float(test["p_value"]),
    )


def paired_worse_p(newly_wrong: int, newly_right: int) -> float:
    """One-sided exact sign test on the discordant pairs: P(≥ newly_wrong of them break | no real difference).

    >>> round(paired_worse_p(4, 10), 3)  # more fixed than broken: nowhere near significantly worse
    0.971
    >>> round(paired_worse_p(6, 0), 4)
    0.0156
    """
    from scipy.stats import binom

    n = newly_wrong + newly_right
    return 1.0 if n == 0 else float(binom.sf(newly_wrong - 1, n, 0.5))


def rate_upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound of the right→wrong rate k/n.

    >>> round(rate_upper_bound(0, 100), 4)
    0.0295
    """
    from scipy.stats import beta

    if n == 0:
        return 1.0
    return 1.0 if k >= n else float(beta.ppf(confidence, k + 1, n - k))


def allowed_regressions(config: GateConfig, n: int) -> int:
    """The floor ε, or the rate × the suite's size when that is larger.

    >>> allowed_regressions(GateConfig(), 12), allowed_regressions(GateConfig(), 82), allowed_regressions(GateConfig(), 2000)
    (2, 4, 100)
    """
    return max(config.max_new_regressions, math.floor(config.max_regression_rate * n + 1e-9))


def check_regressions(config: GateConfig, s: SuiteComparison) -> tuple[bool, str]:
    """One regression suite: within the allowed count *and* not significantly worse (paired, one-sided)."""
    k, r = len(s.newly_wrong), len(s.newly_right)
    allowed = allowed_regressions(config, s.n)
    p = paired_worse_p(k, r)
    bound = rate_upper_bound(k, s.n)
    detail = f"{k} newly wrong, {r} newly right of {s.n} (allowed {allowed}; rate ≤ {bound:.1%} at 95 %; paired p={p:.3g})"
    if k > allowed:
        return False, f"{s.suite}: {detail}: more than allowed"
    if p < config.alpha:
        return False, f"{s.suite}: {detail}: significantly worse (p < {config.alpha})"
    return True, f"{s.suite}: {detail}"


def decide(
    config: GateConfig,
    target: SuiteComparison | None,
    regressions: list[SuiteComparison],
    decoding: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> Verdict:
    """Apply the thresholds; every failed check adds a reason, and so does every passed one."""
    reasons: list[str] = []
    ok = True
    if decoding is not None:
        a, b = ({k: v for k, v in d.items() if k not in ("dtype",)} for d in decoding)
        if a != b:
            ok = False
            reasons.append(f"incomparable: incumbent measured with {a}, candidate with {b}")
    target_ok, target_reasons = check_target(config, target)
    ok = ok and target_ok
    reasons += target_reasons
    regressions_ok = True
    for s in regressions:
        if s.n == 0:
            reasons.append(f"{s.suite}: empty, no regression check possible")
            continue
        passed, why = check_regressions(config, s)
        regressions_ok = regressions_ok and passed
        reasons.append(why)
    return Verdict(
        passed=ok and regressions_ok,
        target_ok=target_ok,
        regressions_ok=regressions_ok,
        reasons=reasons,
        target=target,
        regressions=regressions,
        config=config,
    )


def check_target(config: GateConfig, target: SuiteComparison | None) -> tuple[bool, list[str]]:
    """The target suite: something fixed (a strict gain by default), and the minimum score reached."""
    if target is None or target.n == 0:
        return False, ["no target examples: nothing shows the candidate fixes anything"]
    ok, reasons = True, []
    gain = target.gain
    if gain < config.min_gain or (config.require_strict_gain and gain <= 0 and config.min_gain <= 0):
        ok = False
        need = "> 0" if config.require_strict_gain and config.min_gain <= 0 else f"≥ {config.min_gain:+.3f}"
        reasons.append(f"target gain {gain:+.3f} is below the required {need}")
    else:
        reasons.append(
            f"target {target.incumbent_score:.3f} → {target.candidate_score:.3f} ({gain:+.3f}; "
            f"{len(target.newly_right)} fixed, {len(target.newly_wrong)} broken; McNemar p={target.p_value:.3g})"
        )
    if target.candidate_score < config.min_score:
        ok = False
        reasons.append(f"target score {target.candidate_score:.3f} is below min_score {config.min_score:.3f}")
    return ok, reasons
