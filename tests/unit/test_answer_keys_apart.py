"""The truth about a scenario never reaches what kaizen ingests; only the oracle arm reads it.

Covers the demo's shipped logs, the AdaptFT stage logs the benchmark writes, and the oracle overlay.
"""

from __future__ import annotations

import json
from pathlib import Path

from kaizen.tools.answer_key import KeyEntry, load_answer_key, oracle_traces, triage_quality
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store import TraceView

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "support-intents" / "data"
TRUTH_FIELDS = ("noise", "adaptft", "poison", "poisoned", "gold", "perturbations")


def _no_truth(rec: dict) -> list[str]:
    meta = rec.get("metadata") or {}
    return [f for f in TRUTH_FIELDS if f in meta or f in rec]


def test_demo_logs_carry_no_answer_key_fields() -> None:
    recs = [json.loads(x) for x in (DEMO / "logs.jsonl").read_text().splitlines() if x.strip()]
    assert recs and all(not _no_truth(r) for r in recs)
    key = load_answer_key(DEMO / "answer_key.jsonl")
    assert {r["id"] for r in recs} == set(key)
    assert sum(e.bad_feedback for e in key.values()) == 25  # 19 poisoned + 6 off-domain


def test_adaptft_logs_written_for_ingestion_carry_no_truth() -> None:
    from kaizen.workflows.bench.adaptft.feedback import log_records, split_truth
    from kaizen.workflows.bench.adaptft.scenarios import clinc_scenario
    from kaizen.workflows.bench.adaptft.stages import build_stages

    sc = clinc_scenario(v1_per_label=2, seed=11)
    st = build_stages(sc, 60, seed=0)[2]
    recs = log_records(
        sc, st.logs, ["balance"] * len(st.logs), arm="naive", stage=3, seed=0, model_version="v1"
    )
    logs, key = split_truth(sc, recs, st.logs)
    assert all(not _no_truth(r) for r in logs)
    assert [r["id"] for r in logs] == [k["id"] for k in key]
    assert sum("poisoned" in k["noise"] for k in key) == sum(it.poisoned for it in st.logs)
    assert all(
        k["label"] is None
        for k, it in zip(key, st.logs, strict=True)
        if it.poisoned and not it.correct_label_known
    )


def _view(i: str, text: str, out: str, verdict: str | None, corr: str | None = None) -> TraceView:
    return TraceView(
        id=i,
        task="t",
        messages=[{"role": "user", "content": text}],
        output=out,
        verdict=verdict,
        correction=corr,
        reason=None,
        feedback_source="human",
        metadata={},
        timestamp=None,
        model_version="v1",
    )


def test_oracle_overlay_uses_true_labels_and_drops_off_task_inputs() -> None:
    task = TaskSpec(name="t", kind="classification", labels=["a", "b"])
    traces = [
        _view("1", "x", "a", "fail", "b"),  # poisoned: the model was right
        _view("2", "y", "a", None),  # unlabelled, model wrong
        _view("3", "z", "b", "fail", "a"),  # off-domain input with a made-up correction
        _view("4", "w", "b", "pass"),
    ]  # not in the key: kept as logged
    key = {
        "1": KeyEntry(id="1", label="a", noise=["poisoned"]),
        "2": KeyEntry(id="2", label="b", noise=["unlabeled"]),
        "3": KeyEntry(id="3", label=None, noise=["off_domain"]),
    }
    got = {t.id: (t.verdict, t.correction) for t in oracle_traces(task, traces, key)}
    assert got == {"1": ("pass", None), "2": ("fail", "b"), "4": ("pass", None)}
    q = triage_quality({"1", "4"}, key, traces)
    assert (q["bad_feedback"], q["caught"], q["precision"], q["recall"]) == (2, 1, 0.5, 0.5)
