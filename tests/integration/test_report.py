"""The run report: report.json and a self-contained report.html rendered from it.

A synthetic but realistic run directory is written in the formats the nodes write (diagnosis.json,
data/*.jsonl, iter-N/{train_stats.json, job/metrics.jsonl, job/result.json},
evals/<version>--<suite>.json[l]), with real gate verdicts and real confusion matrices. No model,
no training: the report only reads artifacts.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kaizen.agent.state import Diagnosis, FailureCluster, SuspectFlag
from kaizen.tools.evaluate.metrics import classification_metrics
from kaizen.tools.gate import PRESETS, compare, decide
from kaizen.workflows.repair.job import summarize
from kaizen.workflows.report.build import fmt_rate, fmt_score, write_report

LABELS = ["balance", "transfer", "card_declined", "freeze_account"]
INC, C1, C2 = "v1", "intents-abc12345-i1", "intents-abc12345-i2"
T0 = 1_700_000_000.0

# Target: 6 held-out failures in two clusters. (text, expected, v1 output, i1 output, i2 output)
TARGET = [
    (
        "t1",
        "why was my card declined at the store",
        "card_declined",
        "balance",
        "card_declined",
        "card_declined",
        "card_declined ← balance",
    ),
    (
        "t2",
        "my visa got rejected at the gas station",
        "card_declined",
        "balance",
        "balance",
        "card_declined",
        "card_declined ← balance",
    ),
    (
        "t3",
        "<script>alert('x')</script> the cashier said my card & pin were denied",
        "card_declined",
        "balance",
        "card_declined",
        "card_declined",
        "card_declined ← balance",
    ),
    (
        "t4",
        "why did my debit card not go through",
        "card_declined",
        "balance",
        "balance",
        "card_declined",
        "card_declined ← balance",
    ),
    (
        "t5",
        "please lock my account, it was hacked",
        "freeze_account",
        "I can help with that!",
        "freeze_account",
        "freeze_account",
        "(singleton clusters)",
    ),
    (
        "t6",
        "send 200 dollars from checking to savings",
        "transfer",
        "transfer",
        "balance",
        "balance",
        "(singleton clusters)",
    ),
]
# Regression: 8 held-out passes. i1 breaks three (the gate fails it), i2 breaks one.
REGRESSION = [
    ("r1", "what is my checking account balance", "balance", "balance", "balance", "balance"),
    ("r2", "how much money do i have in savings", "balance", "balance", "card_declined", "balance"),
    ("r3", "transfer money to my mom's account", "transfer", "transfer", "transfer", "transfer"),
    ("r4", "move 50 bucks into my savings account", "transfer", "transfer", "balance", "transfer"),
    (
        "r5",
        "freeze my debit card right now",
        "freeze_account",
        "freeze_account",
        "freeze_account",
        "freeze_account",
    ),
    (
        "r6",
        "block all transactions on my account",
        "freeze_account",
        "freeze_account",
        "transfer",
        "freeze_account",
    ),
    (
        "r7",
        "the terminal declined my card twice",
        "card_declined",
        "card_declined",
        "card_declined",
        "balance",
    ),
    (
        "r8",
        "my mastercard was refused when i tried to pay",
        "card_declined",
        "card_declined",
        "card_declined",
        "card_declined",
    ),
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _item(i: str, text: str, expected: str, reason: str) -> dict[str, Any]:
    return {
        "id": i,
        "messages": [{"role": "user", "content": text}],
        "expected": expected,
        "metadata": {"trace_id": i, "provenance": "trace", "reason": reason},
    }


def _eval(run: Path, version: str, suite: str, rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Write evals/<version>--<suite>.json(l) as evaluate does; rows are (id, expected, output)."""
    m = classification_metrics([o for _, _, o in rows], [e for _, e, _ in rows], LABELS)
    outputs = run / "evals" / f"{version}--{suite}.jsonl"
    _jsonl(
        outputs,
        [
            {"id": i, "output": o, "expected": e, "correct": c}
            for (i, e, o), c in zip(rows, m["correct"], strict=True)
        ],
    )
    rec = {
        "score": m["accuracy"],
        "n": len(rows),
        "correct": {i: c for (i, _, _), c in zip(rows, m["correct"], strict=True)},
        "decoding": {
            "backend": "transformers",
            "greedy": True,
            "dtype": "torch.float32",
            "mode": "generate",
            "max_new_tokens": 12,
        },
        "metric": "accuracy",
        "outputs_path": str(outputs),
        "confusion": m["confusion"],
    }
    (run / "evals" / f"{version}--{suite}.json").write_text(json.dumps(rec))
    return rec


def _gate(evals: dict[str, Any], cand: str, iteration: int) -> dict[str, Any]:
    """The gate node's summary, computed by the real gate."""

    def cmp(suite: str):  # noqa: ANN202
        a, b = evals[f"{INC}/{suite}"], evals[f"{cand}/{suite}"]
        return compare(suite, a["correct"], b["correct"], a["score"], b["score"])

    target, regressions = cmp("target"), [cmp("regression")]
    v = decide(PRESETS["repair"], target, regressions)
    return {
        "passed": v.passed,
        "reasons": v.reasons,
        "new_regressions": v.new_regressions,
        "max_new_regressions": 2,
        "target_before": target.incumbent_score,
        "target_after": target.candidate_score,
        "target_gain": target.gain,
        "fixed": target.newly_right,
        "broken": {s.suite: s.newly_wrong for s in regressions},
        "candidate": cand,
        "iteration": iteration,
        "detail": v.model_dump(),
    }


def make_run(root: Path, *, trained: bool = True) -> tuple[Path, dict[str, Any]]:
    """A run directory and the report dict ``repair._write_report`` would pass; 2 iterations, i2 promoted."""
    run = root / ".kaizen" / "artifacts" / "runs" / "abc123456789"
    data = run / "data"
    _jsonl(
        data / "target.jsonl",
        [_item(i, x, e, f"target-eval: failure in cluster {k}") for i, x, e, *_, k in TARGET],
    )
    _jsonl(
        data / "regression.jsonl",
        [
            _item(i, x, e, f"regression: passing example of label {e!r} (stratified)")
            for i, x, e, *_ in REGRESSION
        ],
    )
    _jsonl(
        data / "train_failures.jsonl",
        [
            _item(
                "f1",
                "my card got declined at the mall",
                "card_declined",
                "train: failure in cluster card_declined ← balance",
            )
        ],
    )
    _jsonl(data / "replay_pool.jsonl", [_item("p1", "how much is in checking", "balance", "replay")])
    diag = Diagnosis(
        task="intents",
        n_traces=40,
        n_labeled=36,
        n_unlabeled=4,
        n_failures=14,
        n_passes=22,
        clusters=[
            FailureCluster(
                key="card_declined ← balance",
                kind="confusion",
                fixable=True,
                count=9,
                trace_ids=["t1", "t2", "t3", "t4", "f1"],
                hypothesis="the model answers 'balance' where 'card_declined' is right",
            ),
            FailureCluster(
                key="freeze_account ← off-label output",
                kind="off_label",
                fixable=True,
                count=1,
                trace_ids=["t5"],
                hypothesis="the model replies outside the label set",
            ),
            FailureCluster(
                key="suspect:disagrees_with_similar_inputs",
                kind="suspect",
                fixable=False,
                count=1,
                trace_ids=["s1"],
            ),
            FailureCluster(
                key="suspect:off_domain_input", kind="suspect", fixable=False, count=1, trace_ids=["s2"]
            ),
        ],
        suspects=[
            SuspectFlag(
                trace_id="s1",
                kind="disagrees_with_similar_inputs",
                evidence={
                    "correction": "transfer",
                    "majority": "balance",
                    "share": 0.86,
                    "neighbours": [
                        {"trace_id": "r1", "label": "balance", "similarity": 0.71},
                        {"trace_id": "r2", "label": "balance", "similarity": 0.52},
                        {"trace_id": "r4", "label": "transfer", "similarity": 0.2},
                    ],
                },
            ),
            SuspectFlag(
                trace_id="s2",
                kind="off_domain_input",
                evidence={"input": "what time does the louvre open", "best_similarity": 0.07},
            ),
        ],
    )
    (run / "diagnosis.json").write_text(json.dumps(diag.model_dump(), indent=2))
    splits = {n: str(data / f"{n}.jsonl") for n in ("target", "regression", "train_failures", "replay_pool")}
    events: list[dict[str, Any]] = [
        {"t": T0 + 1.0, "phase": "observe", "traces": 40, "labeled": 36, "incumbent": INC},
        {"t": T0 + 3.5, "phase": "diagnose", "failures": 14, "clusters": 4, "suspects": 2, "unlabeled": 4},
    ]
    evals: dict[str, Any] = {}
    state: dict[str, Any] = {
        "run_id": "abc123456789",
        "incumbent": INC,
        "iteration": 0,
        "evals": evals,
        "excluded_suspect": ["s1", "s2"],
        "train_tokens_used": 0,
        "status": "not_promoted",
    }
    if trained:
        for s, rows in (
            ("target", [(i, e, o) for i, _, e, o, *_ in TARGET]),
            ("regression", [(i, e, o) for i, _, e, o, *_ in REGRESSION]),
        ):
            evals[f"{INC}/{s}"] = _eval(run, INC, s, rows)
        t = T0 + 3.5
        for it, cand, col in ((1, C1, 4), (2, C2, 5)):
            d = run / f"iter-{it}"
            _jsonl(
                d / "train.jsonl", [_item("f1", "my card got declined at the mall", "card_declined", "train")]
            )
            (d / "train_stats.json").write_text(
                json.dumps(
                    {
                        "n": 20 + it,
                        "failures": 15,
                        "replay": 5 + it,
                        "prior": 0,
                        "dropped_contaminated": 1,
                        "replay_pool_contaminated": 0,
                        "dropped_for_balance": 0,
                        "failure_weight": 1,
                        "labels": {"card_declined": 10, "balance": 6, "transfer": 3, "freeze_account": 2},
                    }
                )
            )
            metrics = [
                {
                    "step": k,
                    "max_steps": 4,
                    "elapsed_s": 10.0 * k,
                    "loss": round(1.5 / (k + it), 4),
                    "grad_norm": 1.2,
                    "learning_rate": 5e-4,
                    "num_tokens": 300.0 * k,
                    "epoch": k / 2,
                    "tokens_per_s": 30.0,
                }
                for k in range(1, 5)
            ]
            metrics.append(
                {
                    "step": 4,
                    "max_steps": 4,
                    "elapsed_s": 41.0,
                    "train_runtime": 40.0,
                    "train_loss": 0.5,
                    "epoch": 2.0,
                }
            )
            _jsonl(d / "job" / "metrics.jsonl", metrics)
            (d / "job" / "result.json").write_text(
                json.dumps(
                    {
                        "kind": "sft",
                        "steps": 4,
                        "train_tokens": 1200,
                        "train_runtime_s": 40.0,
                        "tokens_per_s": 30.0,
                        "train_loss": 0.5,
                        "device": "cpu",
                        "dtype": "fp32",
                    }
                )
            )
            for s, rows in (
                ("target", [(r[0], r[2], r[col]) for r in TARGET]),
                ("regression", [(r[0], r[2], r[col]) for r in REGRESSION]),
            ):
                evals[f"{cand}/{s}"] = _eval(run, cand, s, rows)
            verdict = _gate(evals, cand, it)
            events += [
                {"t": t + 0.5, "phase": "plan", "iteration": it, "rationale": ["fix the clusters"]},
                {
                    "t": t + 1.5,
                    "phase": "synthesize",
                    "iteration": it,
                    "n": 20 + it,
                    "target": 6,
                    "regression": 8,
                },
                {
                    "t": t + 45.5,
                    "phase": "train",
                    "iteration": it,
                    "version": cand,
                    "steps": 4,
                    "train_tokens": 1200,
                    "tokens_per_s": 30.0,
                    "seconds": 40.0,
                    "metrics_path": str(d / "job" / "metrics.jsonl"),
                },
                {"t": t + 65.5, "phase": "evaluate", "iteration": it, "scores": {}},
                {"t": t + 66.0, "phase": "gate", "passed": verdict["passed"], "reasons": verdict["reasons"]},
            ]
            t += 66.0
            state |= {"iteration": it, "candidate": cand, "verdict": verdict, "train_tokens_used": 1200 * it}
            if verdict["passed"]:
                state["best"] = verdict
        events.append({"t": t + 1.0, "phase": "promote", "promoted": True, "version": C2})
        state |= {"promoted": True, "status": "promoted"}
    else:
        events.append(
            {"t": T0 + 4.0, "phase": "rollback", "incumbent": INC, "last_candidate": None, "reasons": []}
        )
    state["events"] = events
    report = {
        "run": {
            "id": "abc123456789",
            "task": "intents",
            "status": state["status"],
            "config": {"preset": "demo"},
        },
        "summary": summarize(state),
        "verdict": state.get("verdict"),
        "best": state.get("best"),
        "diagnosis_path": str(run / "diagnosis.json"),
        "splits": splits,
        "events": events,
        "incumbent": INC,
        "started_at": T0,
        "suspect_traces": {
            "s1": {
                "input": "how much is in my savings",
                "output": "balance",
                "correction": "transfer",
                "verdict": "fail",
            },
            "s2": {
                "input": "what time does the louvre open",
                "output": "balance",
                "correction": "transfer",
                "verdict": "fail",
            },
        },
    }
    return run, report


class _Page(HTMLParser):
    """The page's images and every element tagged ``data-k`` (the numbers the tests compare)."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.values: dict[str, str] = {}
        self.links: list[str] = []
        self._open: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag in ("link", "script") or (
            tag != "a"
            and any((v or "").startswith(("http:", "https:", "//")) for k, v in attrs if k in ("src", "href"))
        ):
            self.links.append(tag)
        if "data-k" in a:
            self._open.append((tag, a["data-k"] or "", []))

    def handle_data(self, data: str) -> None:
        for _, _, buf in self._open:
            buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, key, buf = self._open.pop()
            self.values[key] = "".join(buf).strip()


def _parse(html_path: Path) -> _Page:
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    page.close()
    return page


def _assert_images_are_inline_pngs(page: _Page) -> None:
    for img in page.imgs:
        src = img.get("src") or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 1000
        assert img.get("alt")


def test_full_run_report_renders_with_the_numbers_of_report_json(tmp_path: Path) -> None:
    run, report = make_run(tmp_path)
    json_path, html_path = write_report(run, report)
    assert json_path == run / "report.json" and html_path == run / "report.html"
    r = json.loads(json_path.read_text())
    assert r["report_errors"] == []
    # The given fields are kept; the sections are added.
    for k in ("run", "summary", "verdict", "best", "diagnosis_path", "splits", "events"):
        assert k in r
    assert "suspect_traces" not in r

    # Before/after per suite, for the incumbent and every candidate.
    suites = {s["suite"]: s for s in r["suites"]}
    assert list(suites) == ["target", "regression"]
    assert r["versions"] == {
        "incumbent": INC,
        "candidates": [C1, C2],
        "compared": C2,
        "by_iteration": {"1": C1, "2": C2},
    }
    assert suites["target"]["scores"] == pytest.approx({INC: 1 / 6, C1: 3 / 6, C2: 5 / 6})
    assert suites["regression"]["scores"] == pytest.approx({INC: 1.0, C1: 5 / 8, C2: 7 / 8})
    assert (suites["target"]["fixed"], suites["target"]["broken"]) == (5, 1)
    assert (suites["regression"]["fixed"], suites["regression"]["broken"]) == (0, 1)
    assert r["summary"]["before"]["target"] == suites["target"]["before"]
    assert r["summary"]["after"]["regression"] == suites["regression"]["after"]

    # Per-cluster fix rates on the target set (cluster from metadata.reason).
    clusters = {c["cluster"]: c for c in r["clusters"]}
    assert clusters["card_declined ← balance"]["n"] == 4
    assert clusters["card_declined ← balance"]["candidates"][C1]["fix_rate"] == pytest.approx(2 / 4)
    assert clusters["card_declined ← balance"]["candidates"][C2]["fix_rate"] == pytest.approx(1.0)
    assert clusters["card_declined ← balance"]["hypothesis"].startswith("the model answers")
    single = clusters["(singleton clusters)"]["candidates"][C2]
    assert (single["fixed"], single["broken"], single["wrong_before"]) == (1, 1, 1)

    # Flipped examples with the input, expected and both outputs.
    fixed, broken = r["flipped"]["fixed"], r["flipped"]["broken"]
    assert len(fixed) == 5 and len(broken) == 2
    t5 = next(x for x in fixed if x["id"] == "t5")
    assert t5 == {
        "suite": "target",
        "id": "t5",
        "input": "please lock my account, it was hacked",
        "expected": "freeze_account",
        "before": "I can help with that!",
        "after": "freeze_account",
    }
    assert {(x["suite"], x["id"]) for x in broken} == {("target", "t6"), ("regression", "r7")}

    # Suspects with evidence; gate reasons per iteration; time per phase; training curves; confusion.
    assert r["suspects"]["count"] == 2 and r["suspects"]["by_kind"] == {
        "disagrees_with_similar_inputs": 1,
        "off_domain_input": 1,
    }
    s1 = r["suspects"]["items"][0]
    assert (
        s1["input"] == "how much is in my savings"
        and s1["evidence"]["majority"] == "balance"
        and "86%" in s1["evidence_summary"]
    )
    assert [(g["iteration"], g["candidate"], g["passed"]) for g in r["gate"]] == [
        ("1", C1, False),
        ("2", C2, True),
    ]
    assert any("regression" in x and "3" in x for x in r["gate"][0]["reasons"])
    phases = {p["phase"]: p for p in r["phases"]["phases"]}
    assert phases["observe"]["seconds"] == pytest.approx(1.0) and phases["diagnose"][
        "seconds"
    ] == pytest.approx(2.5)
    assert phases["train"]["seconds"] == pytest.approx(88.0) and phases["train"]["count"] == 2
    assert phases["evaluate"]["seconds"] == pytest.approx(40.0)
    assert r["phases"]["total_s"] == pytest.approx(r["events"][-1]["t"] - T0)
    assert [t["iteration"] for t in r["training"]] == ["1", "2"]
    assert r["training"][0]["curve"]["step"] == [1, 2, 3, 4] and len(r["training"][1]["curve"]["loss"]) == 4
    assert r["training"][1]["version"] == C2 and r["training"][1]["examples"] == 22
    conf = r["confusion"]
    assert conf["suites"] == ["target", "regression"] and conf["candidate"]["version"] == C2
    assert sum(map(sum, conf["incumbent"]["matrix"])) == 14 == sum(map(sum, conf["candidate"]["matrix"]))
    assert (
        conf["labels"][-1] == "<invalid>"
        and conf["incumbent"]["matrix"][LABELS.index("freeze_account")][-1] == 1
    )
    assert r["headline"]["status"] == "promoted" and C2 in r["headline"]["text"]

    # The page: parses, images inline, numbers equal report.json's.
    page = _parse(html_path)
    html = html_path.read_text()
    assert len(page.imgs) == 5  # scores, confusion (pair + change), training, phases
    _assert_images_are_inline_pngs(page)
    assert page.links == [], "the page must not load anything from elsewhere"
    v = page.values
    for s in ("target", "regression"):
        assert v[f"before.{s}"] == fmt_score(suites[s]["before"]) == fmt_score(r["summary"]["before"][s])
        assert v[f"after.{s}"] == fmt_score(suites[s]["after"]) == fmt_score(r["summary"]["after"][s])
        for ver in (INC, C1, C2):
            assert v[f"suite.{s}.{ver}"] == fmt_score(suites[s]["scores"][ver])
        assert v[f"suite.{s}.fixed"] == str(suites[s]["fixed"]) and v[f"suite.{s}.broken"] == str(
            suites[s]["broken"]
        )
    assert (v["before.target"], v["after.target"]) == ("0.167", "0.833")
    assert v["fixed"] == str(r["summary"]["fixed"]) == "5"
    assert v["new_regressions"] == str(r["summary"]["new_regressions"]) == "1"
    assert v["suspects"] == v["suspects.h"] == str(r["suspects"]["count"]) == "2"
    assert v["flipped.fixed"] == str(len(fixed)) and v["flipped.broken"] == str(len(broken))
    assert v["status"] == "promoted" and v["headline"] == r["headline"]["text"]
    assert [v["gate.0"], v["gate.1"]] == ["FAIL", "PASS"]
    for c in r["clusters"]:
        for ver in (C1, C2):
            assert v[f"cluster.{c['cluster']}.{ver}"] == fmt_rate(c["candidates"][ver]["fix_rate"])
    assert v[f"cluster.card_declined ← balance.{C1}"] == "50%"
    for p in r["phases"]["phases"]:
        assert v[f"phase.{p['phase']}"] == f"{p['seconds']:.1f}"
    # User text is escaped, never markup.
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in html
    assert "card &amp; pin" in html


def test_run_stopped_before_training_still_reports(tmp_path: Path) -> None:
    run, report = make_run(tmp_path, trained=False)
    json_path, html_path = write_report(run, report)
    r = json.loads(json_path.read_text())
    assert r["report_errors"] == []
    assert r["versions"]["candidates"] == [] and r["versions"]["compared"] is None
    assert r["suites"] == [] and r["training"] == [] and r["gate"] == [] and r["confusion"] is None
    assert r["flipped"]["fixed"] == [] and r["suspects"]["count"] == 2
    assert [c["n"] for c in r["clusters"]] == [4, 2] and all(
        c["incumbent_right"] is None for c in r["clusters"]
    )
    assert "No candidate was trained" in r["headline"]["text"]
    page = _parse(html_path)
    _assert_images_are_inline_pngs(page)
    assert len(page.imgs) == 1  # time per phase only
    assert page.values["before.target"] == "n/a" and page.values["suspects"] == "2"


def test_empty_run_dir_and_bare_report_still_render(tmp_path: Path) -> None:
    json_path, html_path = write_report(
        tmp_path / "run", {"run": {"id": "x", "task": "t", "status": "failed"}, "summary": {}}
    )
    r = json.loads(json_path.read_text())
    assert r["report_errors"] == [] and r["headline"]["tone"] == "bad"
    page = _parse(html_path)
    assert page.imgs == [] and page.values["fixed"] == "0" and page.values["status"] == "failed"


def test_rejected_run_with_a_candidate_missing_its_evals(tmp_path: Path) -> None:
    run, report = make_run(tmp_path)
    for p in (run / "evals").glob(f"{C2}--*"):
        p.unlink()
    (run / "iter-2" / "job" / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 0.9}\n{"step": 2, "lo'
    )  # cut off by a kill
    report["run"]["status"] = "rejected"
    json_path, html_path = write_report(run, report)
    r = json.loads(json_path.read_text())
    assert r["report_errors"] == []
    assert r["headline"]["status"] == "rejected" and "rejected" in r["headline"]["text"]
    assert r["training"][1]["curve"]["step"] == [1]
    assert {s["suite"]: s["scores"][C2] for s in r["suites"]} == {"target": None, "regression": None}
    _assert_images_are_inline_pngs(_parse(html_path))


def test_runs_show_open_prints_the_html_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kaizen.tools.schema import TaskSpec
    from kaizen.tools.store.tables import RunRow
    from kaizen.tools.workspace import init_workspace
    from kaizen.workflows.cli.main import main

    ws, _ = init_workspace(tmp_path)
    ws.store.add_task(TaskSpec(name="intents", kind="classification", labels=LABELS))
    run, report = make_run(tmp_path)
    json_path, html_path = write_report(run, report)
    ws.store.save_run(
        RunRow(
            id="abc123456789",
            task="intents",
            workflow="repair",
            status="promoted",
            thread_id="abc123456789",
            summary=report["summary"],
            report_path=str(json_path),
        )
    )
    capsys.readouterr()
    assert main(["--workspace", str(tmp_path), "runs", "show", "abc123456789", "--open"]) == 0
    assert capsys.readouterr().out.strip() == str(html_path)
    assert main(["--workspace", str(tmp_path), "runs", "show", "abc123456789", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["report_html"] == str(html_path) and shown["report_path"] == str(json_path)


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run, report = make_run(tmp_path)
    _, html_path = write_report(run, report)
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            html_path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), proc.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_repair_write_report_writes_both_files_with_suspect_texts(tmp_path: Path) -> None:
    """``repair._write_report`` (what every run calls) passes the state and the suspects' texts through."""
    from types import SimpleNamespace

    from kaizen.tools.store.tables import RunRow
    from kaizen.workflows.repair import job as repair

    run_dir, report = make_run(tmp_path)
    traces = {
        "s1": SimpleNamespace(
            id="s1",
            messages=[{"role": "user", "content": "how much is in my savings"}],
            output="balance",
            correction="transfer",
            verdict="fail",
        )
    }
    ws = SimpleNamespace(
        store=SimpleNamespace(traces=lambda task, ids=None: [traces[i] for i in ids or [] if i in traces]),
        artifact_dir=lambda *parts: tmp_path.joinpath(*parts),
    )
    state = {
        "artifacts": str(run_dir),
        "run_id": "abc123456789",
        "incumbent": INC,
        "started_at": T0,
        "events": report["events"],
        "diagnosis_path": report["diagnosis_path"],
        "splits": report["splits"],
        "excluded_suspect": ["s1", "s2"],
        "status": "promoted",
        "promoted": True,
        "best": report["best"],
        "verdict": report["verdict"],
        "iteration": 2,
    }
    run = RunRow(
        id="abc123456789", task="intents", workflow="repair", status="promoted", thread_id="abc123456789"
    )
    path = Path(repair._write_report(ws, run, state))  # noqa: SLF001
    assert path == run_dir / "report.json" and (run_dir / "report.html").is_file()
    r = json.loads(path.read_text())
    assert r["report_errors"] == [] and r["started_at"] == T0
    items = {x["trace_id"]: x for x in r["suspects"]["items"]}
    assert items["s1"]["input"] == "how much is in my savings" and items["s1"]["output"] == "balance"
    assert (
        items["s2"]["input"] == "what time does the louvre open"
    )  # from the evidence when the store has no text
