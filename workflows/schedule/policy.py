"""The trigger policy of the scheduled loop: is a repair worth running now?

A repair costs minutes to hours of compute and may need a human's approval, so a tick only starts
one when the evidence says so, and always says why (every number the decision used is recorded in
the tick). Checked in this order:

1. **budget** — at most ``max_runs_per_day`` repairs started in the last 24 h;
2. **cooldown** — none within ``cooldown`` of the last one (its effect needs time to show);
3. **nothing new** — no feedback and no traces since the last repair: skip;
4. then any one trigger suffices:
   - *new failures*: failures with feedback since the last repair ≥ ``min_new_failures``;
   - *failure-rate rise*: since the last promotion, the failure rate of the latest ``rate_window``
     labelled traces minus that of the first ``rate_window`` after the promotion (the promoted
     model's own starting level) ≥ ``min_failure_rate_rise``;
   - *drift*: the share of new inputs (since the last repair) with no similar earlier input
     (TF-IDF cosine < ``NOVEL_BELOW``) ≥ ``drift_threshold``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from kaizen.tools.config import ScheduleSettings, duration_s
from kaizen.tools.schema import last_user_text
from kaizen.tools.store import Store

NOVEL_BELOW = 0.2
MAX_REFERENCE = 2000
REPAIR_WORKFLOWS = ("repair", "naive")


class Decision(BaseModel):
    trigger: bool
    reasons: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=UTC))


def _last_repair(store: Store, task: str) -> datetime | None:
    runs = [r for r in store.list_runs(task) if r.workflow in REPAIR_WORKFLOWS]
    return _utc(runs[0].created_at) if runs else None


def _runs_since(store: Store, task: str, since: datetime) -> int:
    return sum(
        1 for r in store.list_runs(task) if r.workflow in REPAIR_WORKFLOWS and _utc(r.created_at) >= since
    )


def _last_promotion(store: Store, task: str) -> datetime | None:
    moves = [
        e
        for e in store.alias_history(task)
        if e.alias == "production" and e.action in ("promote", "rollback")
    ]
    return _utc(moves[-1].created_at) if moves else None


def _feedback_since(store: Store, task: str, since: datetime | None) -> list[tuple[datetime, str]]:
    """(time, verdict) of feedback on the task's traces recorded after ``since``, oldest first."""
    rows = [(_utc(t), v) for t, v in store.feedback_log(task)]
    return [(t, v) for t, v in rows if since is None or t > since]


def _traces_split(store: Store, task: str, since: datetime | None) -> tuple[list[str], list[str]]:
    """(inputs imported before ``since``, inputs imported after it)."""
    rows = store.trace_inputs(task)
    old = [last_user_text(m) for t, m in rows if since is not None and _utc(t) <= since]
    new = [last_user_text(m) for t, m in rows if since is None or _utc(t) > since]
    return old[-MAX_REFERENCE:], new


def failure_rate_rise(verdicts: list[str], window: int) -> tuple[float, float] | None:
    """(rate of the first window, rate of the latest window), or None with fewer than 2 windows."""
    if len(verdicts) < 2 * window:
        return None
    rate = lambda vs: sum(v == "fail" for v in vs) / len(vs)
    return rate(verdicts[:window]), rate(verdicts[-window:])


def novel_share(reference: list[str], new: list[str]) -> float:
    """Share of ``new`` inputs whose nearest reference input has TF-IDF cosine < NOVEL_BELOW."""
    from kaizen.tools.similarity import TextIndex

    ref = [t for t in reference if t.strip()]
    new = [t for t in new if t.strip()]
    if not ref or not new:
        return 0.0
    sims = TextIndex(ref, analyzer="word").similarity(new)
    return float((sims.max(axis=1) < NOVEL_BELOW).mean())


def decide(store: Store, task: str, policy: ScheduleSettings, now: datetime | None = None) -> Decision:
    """Apply the policy to the store's state for ``task``."""
    now = now or datetime.now(UTC)
    last_repair, last_promo = _last_repair(store, task), _last_promotion(store, task)
    m: dict[str, Any] = {"last_repair": last_repair, "last_promotion": last_promo}
    m["repairs_last_24h"] = _runs_since(store, task, now - timedelta(days=1))
    if m["repairs_last_24h"] >= policy.max_runs_per_day:
        return Decision(
            trigger=False,
            reasons=[
                f"budget: {m['repairs_last_24h']} repairs in the last 24 h (max {policy.max_runs_per_day})"
            ],
            metrics=m,
        )
    if last_repair and (now - last_repair).total_seconds() < duration_s(policy.cooldown):
        return Decision(
            trigger=False,
            reasons=[
                f"cooldown: last repair at {last_repair:%Y-%m-%d %H:%M} UTC, cooldown {policy.cooldown}"
            ],
            metrics=m,
        )
    fb = _feedback_since(store, task, last_repair)
    old_inputs, new_inputs = _traces_split(store, task, last_repair)
    m |= {
        "new_feedback": len(fb),
        "new_traces": len(new_inputs),
        "new_failures": sum(v == "fail" for _, v in fb),
    }
    if not fb and not new_inputs:
        return Decision(trigger=False, reasons=["nothing new since the last repair"], metrics=m)
    reasons, fired = [], False
    if m["new_failures"] >= policy.min_new_failures:
        fired = True
        reasons.append(
            f"new failures: {m['new_failures']} since the last repair (≥ {policy.min_new_failures})"
        )
    else:
        reasons.append(f"new failures: {m['new_failures']} (< {policy.min_new_failures})")
    rates = failure_rate_rise([v for _, v in _feedback_since(store, task, last_promo)], policy.rate_window)
    if rates is not None:
        m["failure_rate_after_promotion"], m["failure_rate_now"] = rates
        rise = rates[1] - rates[0]
        hit = rise >= policy.min_failure_rate_rise
        fired |= hit
        reasons.append(
            f"failure rate {rates[0]:.2f} → {rates[1]:.2f} since the last promotion ({rise:+.2f}; trigger at +{policy.min_failure_rate_rise:.2f})"
        )
    if len(new_inputs) >= policy.min_new_for_drift and old_inputs:
        m["drift"] = round(novel_share(old_inputs, new_inputs), 4)
        hit = m["drift"] >= policy.drift_threshold
        fired |= hit
        reasons.append(
            f"drift: {m['drift']:.0%} of {len(new_inputs)} new inputs are unlike any earlier one (trigger at {policy.drift_threshold:.0%})"
        )
    return Decision(trigger=fired, reasons=reasons, metrics=m)
