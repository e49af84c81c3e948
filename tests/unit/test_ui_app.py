"""The dashboard's pages and JSON twins, on a workspace written through the real store (no model, no training).

The workspace holds what the loop leaves behind: traces over three days with feedback (one corrected twice),
a lineage base → v1 → v2 with eval results on a shared suite, two skill versions, a finished run with its
report, a run waiting for approval and a run that is training right now (its lock held, ``metrics.jsonl``
growing). The real ``repair.decide`` needs a LangGraph checkpoint, so here a recorder stands in for the
injected ``decide`` to test the HTTP contract (token, reason, who); tests/unit/test_approval.py drives the real
one (``kaizen ui``'s injected ``decide_run``) and tests/integration/test_ui_e2e.py approves a real repair
through the page.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kaizen.tools import lock
from kaizen.tools.logs import parse_traces
from kaizen.tools.schema import Skill, TaskSpec
from kaizen.tools.skills import save_skill
from kaizen.tools.store import Store
from kaizen.tools.store.tables import EvalResultRow, ModelVersionRow, RunRow
from kaizen.tools.workspace import Workspace, find_workspace, init_workspace
from kaizen.workflows.report.build import write_report
from kaizen.workflows.ui.app import create_app
from kaizen.workflows.ui.dashboard import COOKIE

TOKEN = "s3cret-token"
DAY0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
XSS = "<script>alert('x')</script>[/INST]"


def _trace(
    i: int, text: str, output: str, fb: dict[str, Any] | None, day: int, version: str = "v1"
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": f"t{i:02d}",
        "timestamp": (DAY0 + timedelta(days=day, minutes=i)).isoformat(),
        "model_version": version,
        "messages": [{"role": "user", "content": text}],
        "output": output,
    }
    if fb:
        rec["feedback"] = fb
    return rec


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_workspace(root: Path) -> Workspace:
    ws, _ = init_workspace(root)
    ws = find_workspace(root)
    store = ws.store
    store.add_task(TaskSpec(name="intents", kind="classification", labels=["balance", "transfer"]))
    fail = {"verdict": "fail", "correction": "balance"}
    rows = [_trace(i, f"what is my balance {i}", "transfer", fail, day=i % 3) for i in range(6)]  # 6 failures
    rows += [
        _trace(10 + i, f"send money to bob {i}", "transfer", {"verdict": "pass"}, day=i % 3, version="v0")
        for i in range(8)
    ]
    rows += [
        _trace(
            20, "what size wipers fit my car", "balance", {"verdict": "fail", "correction": "transfer"}, day=2
        )
    ]
    rows += [_trace(21, XSS, XSS, None, day=2)]  # unlabeled, hostile text
    logs = root / "logs.jsonl"
    _jsonl(logs, rows)
    store.import_traces(parse_traces(logs).traces, path=str(logs), default_task="intents")
    fb = root / "fb.jsonl"  # t00 is corrected again: the latest feedback counts
    _jsonl(fb, [{"trace_id": "t00", "verdict": "pass", "reason": "second look"}])
    from kaizen.tools.logs import parse_feedback

    store.add_feedback(parse_feedback(fb).items, path=str(fb))

    for name, parent in (("v1", "base"), ("v2", "v1")):
        store.add_model_version(
            ModelVersionRow(
                name=name,
                kind="adapter",
                base_ref="base",
                adapter_path=f"/nowhere/{name}",
                parent=parent,
                task="intents",
                data_hash=f"hash-{name}",
                recipe={"kind": "sft", "epochs": 3, "learning_rate": 0.001, "lora": {"r": 16}},
                metrics={"steps": 12, "train_loss": 0.42},
            )
        )
    from kaizen.tools import registry

    registry.promote(store, "intents", "v1", actor="test")
    store.set_aliases("intents", {"candidate": ("v2", None)}, action="set", actor="test")
    evals = root / "evals"
    for version, correct in (("v1", [True, False, False, True]), ("v2", [True, True, True, False])):
        out = evals / f"{version}.jsonl"
        _jsonl(out, [{"id": f"e{k}", "correct": c, "output": "x"} for k, c in enumerate(correct)])
        store.add_eval_result(
            EvalResultRow(
                task="intents",
                model_version=version,
                dataset_id="ds-target",
                suite="target",
                metric="accuracy",
                score=sum(correct) / 4,
                n=4,
                backend="transformers",
                outputs_path=str(out),
                run_id="done00000001",
            )
        )
    store.add_eval_result(
        EvalResultRow(
            task="intents",
            model_version="v2",
            dataset_id="ds-only-v2",
            suite="extra1",
            metric="accuracy",
            score=1.0,
            n=2,
            backend="transformers",
            outputs_path="",
        )
    )
    s1 = save_skill(store, "intents", Skill(name="intents", instructions="Reply with one label."))
    save_skill(
        store,
        "intents",
        Skill(name="intents", instructions="Reply with exactly one label.\nNo punctuation."),
        parent=s1.version,
    )

    # A finished run with a report (diagnosis: one cluster, one suspect).
    runs = ws.artifacts / "runs"
    done = runs / "done00000001"
    (done / "diagnosis.json").parent.mkdir(parents=True, exist_ok=True)
    (done / "diagnosis.json").write_text(
        json.dumps(
            {
                "clusters": [
                    {
                        "key": "balance ← transfer",
                        "kind": "confusion",
                        "fixable": True,
                        "count": 6,
                        "trace_ids": [f"t{i:02d}" for i in range(6)],
                        "hypothesis": "answers transfer for balance questions",
                    }
                ],
                "suspects": [
                    {"trace_id": "t20", "kind": "off_domain_input", "evidence": {"best_similarity": 0.05}}
                ],
            }
        )
    )
    summary = {
        "run_id": "done00000001",
        "status": "not_promoted",
        "promoted": False,
        "incumbent": "v1",
        "candidate": "v2",
        "verdict": {
            "passed": False,
            "reasons": ["regression: 3 newly wrong of 8 exceeds max_new_regressions=2"],
        },
        "iterations": 2,
        "before": {"target": 0.5},
        "after": {"target": 0.75},
        "new_regressions": 3,
        "fixed": 2,
        "excluded_suspect": ["t20"],
    }
    t = 1_740_000_000.0
    events = [
        {"t": t + 1, "phase": "observe"},
        {"t": t + 3, "phase": "diagnose"},
        {"t": t + 9, "phase": "gate", "passed": False, "reasons": summary["verdict"]["reasons"]},
    ]
    json_path, _ = write_report(
        done,
        {
            "run": {"id": "done00000001", "task": "intents", "status": "not_promoted", "config": {}},
            "summary": summary,
            "events": events,
            "incumbent": "v1",
            "started_at": t,
            "suspect_traces": {
                "t20": {"input": "what size wipers fit my car", "output": "balance", "correction": "transfer"}
            },
            "path": [{"iteration": 1, "recipe": "lora", "target": 0.75}],
        },
    )
    store.save_run(
        RunRow(
            id="done00000001",
            task="intents",
            workflow="repair",
            status="not_promoted",
            thread_id="done00000001",
            summary=summary,
            events=events,
            report_path=str(json_path),
        )
    )
    # A run waiting for approval.
    wait = dict(
        summary,
        run_id="wait00000001",
        status=None,
        verdict={"passed": True, "reasons": ["target 0.500 → 0.750"]},
    )
    store.save_run(
        RunRow(
            id="wait00000001",
            task="intents",
            workflow="repair",
            status="awaiting_approval",
            thread_id="wait00000001",
            summary=wait,
        )
    )
    # A run training right now: its lock held by this process, metrics.jsonl growing.
    live = runs / "live00000001"
    (live / "data").mkdir(parents=True)
    (live / "diagnosis.json").write_text("{}")
    (live / "data" / "target.jsonl").write_text("")
    _jsonl(
        live / "iter-1" / "job" / "metrics.jsonl",
        [{"step": k, "max_steps": 30, "loss": 3.0 - 0.1 * k, "entropy": 5.0 - 0.05 * k} for k in range(1, 4)],
    )
    store.save_run(
        RunRow(
            id="live00000001", task="intents", workflow="repair", status="running", thread_id="live00000001"
        )
    )
    lock.acquire(store, "intents", "live00000001")
    return ws


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return build_workspace(tmp_path)


class Recorder:
    """Stands in for the injected ``decide`` (see the module docstring): records the call, moves the run like
    decide and keeps the decision (reason included) in the run record, as decide does."""

    def __init__(self, ws: Workspace) -> None:
        self.ws, self.calls = ws, []

    def __call__(self, run_id: str, approved: bool, who: str, reason: str) -> RunRow:
        self.calls.append((run_id, approved, who, reason))
        run = self.ws.store.get_run(run_id)
        run.status = "promoted" if approved else "rejected"
        run.summary = run.summary | {
            "approval": {"approved": approved, "by": who, "at": 1.0, "reason": reason}
        }
        return self.ws.store.save_run(run)


@pytest.fixture
def client(ws: Workspace) -> TestClient:
    rec = Recorder(ws)
    c = TestClient(create_app(ws, token=TOKEN, decide=rec, poll_ms=200))
    c.recorder = rec  # type: ignore[attr-defined]
    return c


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """One workspace for the tests that only read (built once: the report's figures take a moment)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KAIZEN_HOME", raising=False)
        mp.delenv("KAIZEN_DB_URL", raising=False)
        ws = build_workspace(tmp_path_factory.mktemp("ui-ro"))
    return TestClient(create_app(ws, token=TOKEN, decide=Recorder(ws), poll_ms=200))


def test_overview_and_tasks_report_what_the_store_holds(reader: TestClient) -> None:
    (task,) = reader.get("/api/tasks").json()
    assert task["name"] == "intents"
    assert task["aliases"]["production"]["model_version"] == "v1"
    assert task["aliases"]["previous"]["model_version"] == "base"
    assert task["aliases"]["candidate"]["model_version"] == "v2"
    # 16 traces: t00 now passes (latest feedback), so 6 failures (t01..t05, t20), 9 passes, 1 unlabeled.
    assert task["counts"] == {
        "traces": 16,
        "passes": 9,
        "failures": 6,
        "unlabeled": 1,
        "failure_rate": round(6 / 15, 4),
    }
    assert task["awaiting_approval"] == ["wait00000001"] and task["running"] == ["live00000001"]
    t = reader.get("/api/tasks/intents").json()
    fr = t["failure_rate"]
    assert fr["by"] == "day" and [p["n"] for p in fr["points"]] == [5, 5, 5]
    assert sum(p["failures"] for p in fr["points"]) == 6
    assert [e["action"] for e in t["alias_history"]][:2] == ["set", "promote"]
    assert {r["id"] for r in t["runs"]} == {"done00000001", "wait00000001", "live00000001"}
    page = reader.get("/tasks/intents")
    assert page.status_code == 200 and "<svg" in page.text and "Failure rate over time" in page.text
    assert reader.get("/").status_code == 200


def test_runs_list_and_run_page_show_the_report(reader: TestClient) -> None:
    runs = {r["id"]: r for r in reader.get("/api/runs").json()}
    assert runs["done00000001"]["status"] == "not_promoted" and runs["done00000001"]["iterations"] == 2
    assert runs["done00000001"]["passed"] is False
    assert [r["id"] for r in reader.get("/api/runs?status=awaiting_approval").json()] == ["wait00000001"]
    run = reader.get("/api/runs/done00000001").json()
    report = run["report"]
    assert report["gate"][0]["reasons"] == ["regression: 3 newly wrong of 8 exceeds max_new_regressions=2"]
    assert report["suspects"]["items"][0]["trace_id"] == "t20"
    assert run["live"]["final"] and not run["live"]["live"]
    page = reader.get("/runs/done00000001").text
    for text in (
        "exceeds max_new_regressions=2",
        "Excluded feedback (1)",
        "off domain input",
        "what size wipers fit my car",
        "Time per phase",
        'id="path"',
    ):
        assert text in page, text
    assert "data-refresh-url" not in page  # a finished run is not polled
    assert reader.get("/runs/done00000001/report.html").status_code == 200
    assert (
        reader.get("/runs/nope").status_code == 404 and reader.get("/api/runs/nope").json()["status"] == 404
    )


def test_a_live_run_is_polled_and_its_progress_follows_the_files(client: TestClient, ws: Workspace) -> None:
    p = client.get("/api/runs/live00000001/progress").json()
    assert (
        p["live"] and p["phase"] == "train" and p["training"]["step"] == 3 and p["lock"]["pid"] == os.getpid()
    )
    assert [x["state"] for x in p["phases"]] == ["done", "done", "active", "pending", "pending"]
    frag = client.get("/runs/live00000001/fragment").text
    assert 'data-refresh-url="/runs/live00000001/fragment"' in frag and 'id="live-step">3<' in frag
    with (ws.artifacts / "runs" / "live00000001" / "iter-1" / "job" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "max_steps": 30, "loss": 2.5, "entropy": 4.7}) + "\n")
        f.write('{"step": 5, "loss"')  # a line being written: skipped, not an error
    assert client.get("/api/runs/live00000001/progress").json()["training"]["step"] == 4
    curves = client.get("/api/runs/live00000001").json()["training"]
    assert curves[0]["step"] == [1, 2, 3, 4] and curves[0]["entropy"][-1] == 4.7
    run = ws.store.get_run("live00000001")
    run.status = "awaiting_approval"
    ws.store.save_run(run)
    frag = client.get("/runs/live00000001/fragment").text
    assert "data-refresh-url" not in frag and 'data-run-status="awaiting_approval"' in frag  # polling stops


def test_trace_filters(reader: TestClient) -> None:
    def ids(**params: Any) -> list[str]:
        body = reader.get("/api/traces", params={"task": "intents", **params}).json()
        assert body["total"] == len(body["items"]) or params.get("limit")
        return sorted(x["id"] for x in body["items"])

    assert ids(verdict="fail") == ["t01", "t02", "t03", "t04", "t05", "t20"]
    assert ids(verdict="unlabeled") == ["t21"]
    assert len(ids(verdict="pass")) == 9
    assert ids(cluster="balance ← transfer") == [f"t{i:02d}" for i in range(6)]
    assert ids(suspect="any") == ["t20"] and ids(suspect="off_domain_input") == ["t20"]
    assert ids(model_version="v0") == [f"t{10 + i}" for i in range(8)]
    assert ids(since="2025-03-03", verdict="fail") == ["t02", "t05", "t20"]
    assert ids(until="2025-03-01", verdict="fail") == ["t03"]  # a date means the whole day
    assert ids(q="wipers") == ["t20"]
    page = reader.get("/api/traces", params={"limit": 5, "offset": 5}).json()
    assert page["total"] == 16 and len(page["items"]) == 5
    assert reader.get("/api/traces", params={"verdict": "maybe"}).status_code == 400
    assert reader.get("/api/traces", params={"since": "yesterday"}).status_code == 400
    html = reader.get(
        "/traces", params={"task": "intents", "cluster": "balance ← transfer", "verdict": "fail"}
    ).text
    assert "5 matches" in html
    detail = reader.get("/api/traces/t00").json()
    assert [f["verdict"] for f in detail["feedback"]] == ["fail", "pass"]
    assert detail["clusters"][0]["key"] == "balance ← transfer"
    assert reader.get("/api/traces/t20").json()["suspect"][0]["kind"] == "off_domain_input"
    assert reader.get("/traces/t00").status_code == 200 and reader.get("/api/traces/none").status_code == 404


def test_text_from_logs_is_escaped_everywhere(reader: TestClient) -> None:
    for url in ("/traces?task=intents", "/traces/t21"):
        page = reader.get(url).text
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page


def test_models_lineage_and_diff(reader: TestClient) -> None:
    m = reader.get("/api/models", params={"task": "intents"}).json()
    by = {v["name"]: v for v in m["versions"]}
    assert {(e["from"], e["to"]) for e in m["edges"]} == {("base", "v1"), ("v1", "v2")}
    assert by["v1"]["aliases"] == ["production"] and by["v2"]["aliases"] == ["candidate"]
    assert by["v2"]["data_hash"] == "hash-v2" and "LoRA r16" in by["v2"]["recipe_short"]
    d = reader.get("/api/models/diff", params={"a": "v1", "b": "v2", "task": "intents"}).json()
    (row,) = d["shared"]
    assert (row["a"], row["b"], row["delta"]) == (0.5, 0.75, 0.25)
    assert row["flips"] == {"newly_right": ["e1", "e2"], "newly_wrong": ["e3"]}
    assert d["not_shared"] == ["extra1"]
    page = reader.get("/models", params={"task": "intents"}).text
    assert 'class="lineage"' in page and 'id="v-v2"' in page
    assert "+0.250" in reader.get("/models/diff", params={"a": "v1", "b": "v2"}).text
    assert reader.get("/api/models/diff", params={"a": "v1", "b": "nope"}).status_code == 404


def test_skills_and_diff(reader: TestClient) -> None:
    s = reader.get("/api/skills", params={"task": "intents"}).json()
    assert [v["version"] for v in s["versions"]] == [1, 2] and s["versions"][1]["parent"] == 1
    d = reader.get("/api/skills/diff", params={"task": "intents", "a": 1, "b": 2}).json()["diff"]
    assert (
        "-  Reply with one label." in d
        and "+  Reply with exactly one label." in d
        and "+  No punctuation." in d
    )
    assert "No punctuation." in reader.get("/skills/diff?task=intents&a=1&b=2").text
    assert reader.get("/skills?task=intents").status_code == 200


def test_approving_needs_the_token_and_a_reason(client: TestClient, ws: Workspace) -> None:
    url = "/api/runs/wait00000001/approve"
    assert client.post(url, json={"reason": "fine"}).status_code == 401
    assert client.post(url, json={"reason": "fine"}, headers={"X-Kaizen-Token": "wrong"}).status_code == 403
    assert client.post(url, json={}, headers={"X-Kaizen-Token": TOKEN}).status_code == 400
    assert client.recorder.calls == []  # type: ignore[attr-defined]
    assert ws.store.get_run("wait00000001").status == "awaiting_approval"
    r = client.post(
        url,
        json={"reason": "target up, nothing broken", "by": "ana"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200, r.text
    assert client.recorder.calls == [  # type: ignore[attr-defined]
        ("wait00000001", True, "ana (kaizen ui)", "target up, nothing broken")
    ]
    assert r.json()["run"]["status"] == "promoted"
    assert r.json()["decision"]["reason"] == "target up, nothing broken"
    # The reason went to decide, which keeps it in the run record: the dashboard writes nothing of its own.
    assert not list((ws.root / ".kaizen").rglob("approvals.jsonl"))
    again = client.post(url, json={"reason": "twice"}, headers={"X-Kaizen-Token": TOKEN})
    assert again.status_code == 409 and "not awaiting approval" in again.json()["error"]
    run = client.get("/api/runs/wait00000001").json()
    assert (
        run["approvals"][-1]["reason"] == "target up, nothing broken"
        and run["approvals"][-1]["by"] == "ana (kaizen ui)"
        and run["approvals"][-1]["source"] == "run"
    )
    assert (
        client.post(
            "/api/runs/done00000001/reject", json={"reason": "x"}, headers={"X-Kaizen-Token": TOKEN}
        ).status_code
        == 409
    )


def test_the_token_url_sets_a_cookie_that_same_origin_pages_use(client: TestClient, ws: Workspace) -> None:
    r = client.get(f"/approvals?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/approvals"
    assert (
        "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    )
    assert client.cookies.get(COOKIE) == TOKEN
    page = client.get("/approvals").text
    assert (
        'data-decide="/api/runs/wait00000001"' in page and 'name="token"' not in page
    )  # no token field needed
    evil = client.post(
        "/api/runs/wait00000001/reject", json={"reason": "csrf"}, headers={"Origin": "http://evil.example"}
    )
    assert evil.status_code == 403 and ws.store.get_run("wait00000001").status == "awaiting_approval"
    ok = client.post(
        "/api/runs/wait00000001/reject", json={"reason": "not now"}, headers={"Origin": "http://testserver"}
    )
    assert ok.status_code == 200 and ok.json()["run"]["status"] == "rejected"
    bad = TestClient(client.app)
    assert bad.get("/?token=wrong", follow_redirects=False).headers.get("set-cookie") is None


def test_without_a_decide_function_approvals_are_refused(ws: Workspace) -> None:
    c = TestClient(create_app(ws, token=TOKEN))
    r = c.post("/api/runs/wait00000001/approve", json={"reason": "x"}, headers={"X-Kaizen-Token": TOKEN})
    assert r.status_code == 409 and ws.store.get_run("wait00000001").status == "awaiting_approval"
    with pytest.raises(ValueError):
        create_app(ws, token="")


def test_the_dashboard_store_cannot_write_and_does_not_block_writers(ws: Workspace) -> None:
    ro = Store.open_read_only(ws.db_url)
    with pytest.raises(Exception, match="readonly|read-only|read only"):
        ro.save_run(RunRow(id="x", task="intents", workflow="repair", status="running", thread_id="x"))
    # A read transaction held open by the dashboard: a writer (a repair saving its run) still commits at once.
    with ro.session() as s:
        assert s.get(RunRow, "done00000001") is not None
        db = str(ws.state / "kaizen.db")
        writer = sqlite3.connect(
            db, timeout=0.5
        )  # no waiting: a blocked write would fail within half a second
        writer.execute("UPDATE run SET status = 'promoted' WHERE id = 'done00000001'")
        writer.commit()
        writer.close()
    assert Store(ws.db_url).get_run("done00000001").status == "promoted"


def test_every_page_renders(reader: TestClient) -> None:
    for url in (
        "/",
        "/tasks/intents",
        "/runs",
        "/runs?status=running",
        "/runs/wait00000001",
        "/runs/live00000001",
        "/models",
        "/traces",
        "/skills",
        "/approvals",
        "/api/health",
        "/api/approvals",
        "/static/kaizen.js",
        "/static/kaizen.css",
    ):
        r = reader.get(url)
        assert r.status_code == 200, (url, r.text[-500:])
    assert reader.get("/nowhere").status_code == 404
    assert [x["id"] for x in reader.get("/api/approvals").json()] == ["wait00000001"]
