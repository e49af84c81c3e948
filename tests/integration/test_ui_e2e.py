"""``kaizen ui`` end to end: a real (tiny-model) repair watched live in a real browser, then approved through the page.

Once per module: a workspace with the random tiny Llama in production and 20 logged traces, and ``kaizen ui``
started as a subprocess (its printed URL and token are what a user gets). A repair then runs in a thread
while Chromium (Debian's ``chromium`` + ``chromium-driver``, driven through the driver's explicit path — no
Selenium Manager, no download) watches its run page update without a reload and a reader thread keeps
hitting the JSON API: the repair must finish exactly as it would alone. The gate's regression allowance is
raised in kaizen.yaml so the tiny model's candidate (which learns to say "balance") waits for approval,
which the last test gives through the Approvals page; the registry must move.

No browser: the browser tests skip, unless ``KAIZEN_REQUIRE_BROWSER=1`` (CI), which makes that a failure.
Screenshots of every page go to ``$KAIZEN_UI_SCREENSHOTS`` (default: a temporary directory, printed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kaizen.tools import registry
from kaizen.tools.logs import parse_traces
from kaizen.tools.schema import TaskSpec
from kaizen.tools.workspace import Workspace, find_workspace, init_workspace
from kaizen.workflows.bench.clinc import rows

RUN_ID = "uie2e0000001"
CHROMEDRIVER = Path(os.environ.get("KAIZEN_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM = Path(os.environ.get("KAIZEN_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("KAIZEN_REQUIRE_BROWSER") == "1"
WAIT_S = 900  # a shared 2-core machine can be many times slower than an idle one


@dataclass
class Env:
    root: Path
    url: str
    token: str
    proc: subprocess.Popen
    repair: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def ws(self) -> Workspace:
        return find_workspace(self.root)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path.lstrip("/"), timeout=60, trust_env=False, **kw)

    def start_repair(self) -> None:
        """Start the repair in a thread (once); returns when its run record exists."""
        if self.thread is None:

            def work() -> None:
                from kaizen.workflows.repair import job as repair

                try:
                    run = repair.start(
                        self.ws(),
                        "intents",
                        run_id=RUN_ID,
                        max_iterations=1,
                        train_overrides={"max_steps": 30},
                        plan_defaults={"learning_rate": 0.005},
                    )
                    self.repair["status"] = run.status
                except BaseException as e:  # noqa: BLE001 - reported by the tests that wait for it
                    self.repair["error"] = repr(e)

            self.thread = threading.Thread(target=work, name="repair", daemon=True)
            self.thread.start()
        deadline = time.time() + WAIT_S
        while time.time() < deadline and self.get(f"/api/runs/{RUN_ID}").status_code == 404:
            assert self.thread.is_alive() or "error" not in self.repair, self.repair
            time.sleep(0.2)

    def finished_repair(self) -> str:
        self.start_repair()
        assert self.thread is not None
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the repair did not finish"
        assert "error" not in self.repair, self.repair["error"]
        return self.repair["status"]


def _logs(path: Path) -> None:
    """Balance questions the deployed model answered "transfer" (corrected), transfer requests it got right."""
    day0 = datetime(2025, 5, 1, 8, tzinfo=UTC)
    out = []
    for i, (text, gold) in enumerate(rows("train", ["balance", "transfer"], per_label=10, seed=4)):
        fb = {"verdict": "fail", "correction": "balance"} if gold == "balance" else {"verdict": "pass"}
        out.append(
            {
                "timestamp": (day0 + timedelta(days=i % 3, minutes=i)).isoformat(),
                "model_version": "tiny",
                "messages": [{"role": "user", "content": text}],
                "output": "transfer",
                "feedback": fb,
            }
        )
    path.write_text("".join(json.dumps(x) + "\n" for x in out))


@pytest.fixture(scope="module")
def env(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("ui-ws")
    clean = {
        k: v for k, v in os.environ.items() if k not in ("KAIZEN_HOME", "KAIZEN_DB_URL", "KAIZEN_UI_TOKEN")
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KAIZEN_HOME", raising=False)
        mp.delenv("KAIZEN_DB_URL", raising=False)
        ws, _ = init_workspace(root)
        cfg = yaml.safe_load(ws.config_path.read_text())
        cfg["gate"]["max_new_regressions"] = 1000  # see the module docstring
        ws.config_path.write_text(yaml.safe_dump(cfg))
        ws = find_workspace(root)
        ws.store.add_task(TaskSpec(name="intents", kind="classification", labels=["balance", "transfer"]))
        registry.add_external(ws.store, "tiny", tiny_llama_dir, base="base", task="intents")
        registry.promote(ws.store, "intents", "tiny", actor="test")
        logs = root / "logs.jsonl"
        _logs(logs)
        ws.store.import_traces(parse_traces(logs).traces, path=str(logs), default_task="intents")
        ws.store.close()
    kaizen = str(Path(sys.executable).parent / "kaizen")
    proc = subprocess.Popen(
        [kaizen, "-w", str(root), "ui", "--port", "0", "--json", "--poll-ms", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean | {"PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        pytest.fail(f"kaizen ui did not start: {proc.stderr.read() if proc.stderr else ''}")
    info = json.loads(line)
    e = Env(root=root, url=info["url"], token=info["token"], proc=proc)
    assert e.get("/api/health").json()["approvals"] is True
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KAIZEN_HOME", raising=False)
        mp.delenv("KAIZEN_DB_URL", raising=False)
        yield e
    if e.thread is not None:
        e.thread.join(WAIT_S)
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = Path(os.environ.get("KAIZEN_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"\nkaizen ui screenshots: {d}")
    return d


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMEDRIVER, CHROMIUM) if not p.exists()]
    if missing:
        msg = f"no browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if REQUIRE_BROWSER:
            pytest.fail(msg + " and KAIZEN_REQUIRE_BROWSER=1")
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="kaizen-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--window-size=1300,1000",
    ):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    d.set_page_load_timeout(120)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(d: Any, shots: Path, name: str) -> Path:
    """A full-page screenshot (the window grown to the page's height)."""
    height = d.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    )
    d.set_window_size(1300, min(max(int(height) + 40, 600), 5000))
    path = shots / f"{name}.png"
    assert d.save_screenshot(str(path)), path
    d.set_window_size(1300, 1000)
    return path


def _wait(cond: Any, what: str, timeout: float = WAIT_S, every: float = 0.25) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_live_run_page_updates_without_a_reload(env: Env, driver: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    env.start_repair()
    driver.get(env.url + f"runs/{RUN_ID}")
    # Read in one script: the page's polling may replace #run-body between two WebDriver calls (stale element).
    attrs = driver.execute_script(
        "var b = document.getElementById('run-body');"
        "return [b.getAttribute('data-run-status'), b.getAttribute('data-refresh-url')];"
    )
    assert attrs == ["running", f"/runs/{RUN_ID}/fragment"]
    driver.execute_script("window.__kaizenMarker = 'loaded once';")

    # Meanwhile, a reader hammers the JSON API: the repair must not notice.
    stop, answers = threading.Event(), []

    def read() -> (
        None
    ):  # about what a few open dashboards ask; more would only slow the run on a 2-core machine
        while not stop.is_set():
            for path in (
                f"/api/runs/{RUN_ID}/progress",
                "/api/traces?task=intents",
                "/api/tasks/intents",
                "/api/models",
            ):
                answers.append(env.get(path).status_code)
            stop.wait(0.5)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    mid_shot = False

    def status() -> str | None:
        s = driver.execute_script(
            "var b = document.getElementById('run-body'); return b && b.getAttribute('data-run-status');"
        )
        live = driver.execute_script(  # the phase chips and the training step: what moves as the run goes on
            "var p = document.querySelector('#live ol.phases'); var st = document.getElementById('live-step');"
            "return (p ? p.innerText : '') + ' | ' + (st ? st.innerText : '');"
        )
        if s == "running" and live.strip(" |") and (not seen or seen[-1] != live):
            seen.append(live)
        nonlocal mid_shot
        if not mid_shot and "step" in (live or ""):
            _shot(driver, shots, "run-live")
            mid_shot = True
        return s if s != "running" else None

    final = _wait(status, "the run page to leave 'running'")
    stop.set()
    reader.join(60)
    assert final == "awaiting_approval", final
    assert env.finished_repair() == "awaiting_approval"
    assert driver.execute_script("return window.__kaizenMarker") == "loaded once", "the page reloaded"
    assert driver.execute_script("return window.kaizenRefreshes") >= 2
    assert len(seen) >= 2, f"the live panel never changed while the run ran: {seen}"
    assert answers and set(answers) == {200}, set(answers)
    # The finished run's report replaced the live panel in place.
    assert driver.find_elements(By.ID, "gate") and not driver.find_elements(By.ID, "live")
    assert "awaits approval" in driver.find_element(By.ID, "headline").text
    print(f"live panel states seen: {len(seen)}; API reads during the run: {len(answers)}")
    _shot(driver, shots, "run")


def test_json_endpoints_agree_with_the_store_and_the_report(env: Env) -> None:
    assert env.finished_repair() == "awaiting_approval"
    ws = env.ws()
    run = ws.store.get_run(RUN_ID)
    report = json.loads(Path(run.report_path).read_text())  # type: ignore[arg-type]
    got = env.get(f"/api/runs/{RUN_ID}").json()
    assert got["run"]["status"] == "awaiting_approval" and got["report"]["gate"] == report["gate"]
    assert got["report"]["suites"] == report["suites"] and got["run"]["candidate"] == run.summary["candidate"]
    assert got["live"]["final"] is False and got["live"]["live"] is False
    (curve,) = got["training"]
    assert curve["step"][-1] == 30 and curve["done"] and all(x is not None for x in curve["loss"])
    cand = run.summary["candidate"]

    models = env.get("/api/models?task=intents").json()
    assert {"from": "tiny", "to": cand} in models["edges"]
    by = {v["name"]: v for v in models["versions"]}
    assert by["tiny"]["aliases"] == ["production"] and by[cand]["parent"] == "tiny"
    diff = env.get("/api/models/diff", params={"a": "tiny", "b": cand, "task": "intents"}).json()
    scores = {s["suite"]: (s["a"], s["b"]) for s in diff["shared"]}
    for s in report["suites"]:
        assert scores[s["suite"]] == (s["before"], s["after"])

    stats = ws.store.trace_stats("intents")
    fails = env.get("/api/traces", params={"task": "intents", "verdict": "fail"}).json()
    assert fails["total"] == stats["failures"] == 10
    diag = json.loads((Path(run.report_path).parent / "diagnosis.json").read_text())  # type: ignore[arg-type]
    cluster = next(c for c in diag["clusters"] if c.get("trace_ids"))
    inc = env.get("/api/traces", params={"task": "intents", "cluster": cluster["key"], "limit": 500}).json()
    assert sorted(t["id"] for t in inc["items"]) == sorted(cluster["trace_ids"])
    t = env.get(f"/api/traces/{inc['items'][0]['id']}").json()
    assert t["feedback"][-1]["verdict"] == "fail" and t["clusters"][0]["key"] == cluster["key"]

    task = env.get("/api/tasks/intents").json()
    assert task["aliases"]["production"]["model_version"] == "tiny"
    assert [r["id"] for r in task["awaiting_approval"]] == [RUN_ID]
    assert task["counts"]["failures"] == 10 and task["failure_rate"]["by"] == "day"
    assert [a["id"] for a in env.get("/api/approvals").json()] == [RUN_ID]
    assert env.get("/api/skills?task=intents").json()["versions"] == []
    (listed,) = env.get("/api/runs").json()
    assert (listed["id"], listed["status"], listed["iterations"], listed["passed"]) == (
        RUN_ID,
        "awaiting_approval",
        1,
        True,
    )
    (t,) = env.get("/api/tasks").json()
    assert t["name"] == "intents" and t["awaiting_approval"] == [RUN_ID] and t["counts"]["traces"] == 20
    progress = env.get(f"/api/runs/{RUN_ID}/progress").json()
    assert not progress["live"] and {p["phase"]: p["state"] for p in progress["phases"]}["train"] == "done"
    assert {(e["version"], e["suite"]) for e in progress["evals"]} == {
        (v, s) for v in ("tiny", cand) for s in ("target", "regression")
    }


def test_pages_and_the_trace_filter_in_the_browser(env: Env, driver: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    env.finished_repair()
    driver.get(env.url + "tasks/intents")
    assert "tiny" in driver.find_element(By.ID, "alias-production").text
    assert RUN_ID in driver.find_element(By.CLASS_NAME, "attention-box").text
    assert driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline")
    _shot(driver, shots, "overview")

    driver.get(env.url + "models?task=intents")
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.lineage g.node")) == 3  # base, tiny, the candidate
    assert driver.find_elements(By.CSS_SELECTOR, "svg.lineage path.edge")
    _shot(driver, shots, "models")
    driver.find_element(By.CSS_SELECTOR, "#diff-form button").click()
    _wait(lambda: driver.find_elements(By.ID, "diff"), "the model diff page", 60)
    assert "target" in driver.find_element(By.ID, "diff").text
    _shot(driver, shots, "model-diff")

    driver.get(env.url + "traces?task=intents")
    assert "20 matches" in driver.find_element(By.ID, "trace-total").text
    form = driver.find_element(By.ID, "trace-filters")
    Select(form.find_element(By.NAME, "verdict")).select_by_visible_text("fail")
    clusters = [o.text for o in Select(form.find_element(By.NAME, "cluster")).options if o.text != "any"]
    Select(form.find_element(By.NAME, "cluster")).select_by_visible_text(clusters[0])
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(lambda: "verdict=fail" in driver.current_url, "the filtered trace list", 60)
    rows_ = driver.find_elements(By.CSS_SELECTOR, "#traces tbody tr[data-trace]")
    api = env.get("/api/traces", params={"task": "intents", "verdict": "fail", "cluster": clusters[0]}).json()
    assert rows_ and len(rows_) == api["total"]
    assert {r.get_attribute("data-verdict") for r in rows_} == {"fail"}
    _shot(driver, shots, "traces")
    rows_[0].find_element(By.CSS_SELECTOR, "a").click()
    _wait(lambda: driver.find_elements(By.ID, "trace-output"), "a trace page", 60)
    assert "balance" in driver.find_element(By.TAG_NAME, "main").text  # the correction
    _shot(driver, shots, "trace")

    driver.get(env.url + "skills?task=intents")
    assert "No skill versions" in driver.find_element(By.TAG_NAME, "main").text
    driver.get(env.url + "runs")
    assert RUN_ID in driver.find_element(By.CSS_SELECTOR, "table.runs").text
    _shot(driver, shots, "runs")


def test_approving_without_the_token_is_refused(env: Env) -> None:
    env.finished_repair()
    url = env.url + f"api/runs/{RUN_ID}/approve"
    assert httpx.post(url, json={"reason": "sneaky"}, trust_env=False, timeout=60).status_code == 401
    assert (
        httpx.post(
            url, json={"reason": "sneaky"}, headers={"X-Kaizen-Token": "nope"}, trust_env=False, timeout=60
        ).status_code
        == 403
    )
    ws = env.ws()
    assert ws.store.get_run(RUN_ID).status == "awaiting_approval"
    assert registry.resolve(ws.store, "production", "intents").name == "tiny"


def test_approve_through_the_page_moves_the_registry(env: Env, driver: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    env.finished_repair()
    cand = env.ws().store.get_run(RUN_ID).summary["candidate"]
    driver.get(
        env.url + f"approvals?token={env.token}"
    )  # the URL kaizen ui prints: sets the cookie, drops the token
    _wait(lambda: "token=" not in driver.current_url, "the token to leave the URL", 60)
    assert "token ✓" in driver.find_element(By.CLASS_NAME, "auth").text
    card = driver.find_element(By.ID, f"approval-{RUN_ID}")
    card.find_element(By.NAME, "reason").send_keys("fixes every held-out balance question; nothing broken")
    by = card.find_element(By.NAME, "by")
    by.clear()
    by.send_keys("e2e-tester")
    _shot(driver, shots, "approvals")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    result = _wait(
        lambda: card.find_element(By.CSS_SELECTOR, ".result").get_attribute("data-status"),
        "the approval answer",
    )
    assert result == "promoted", card.find_element(By.CSS_SELECTOR, ".result").text
    _shot(driver, shots, "approved")

    ws = env.ws()
    assert registry.resolve(ws.store, "production", "intents").name == cand
    assert registry.resolve(ws.store, "previous", "intents").name == "tiny"
    run = ws.store.get_run(RUN_ID)
    assert run.status == "promoted"
    promote = [e for e in run.events if e.get("phase") == "promote"][-1]
    assert promote["approval"]["approved"] is True and promote["approval"]["by"] == "e2e-tester (kaizen ui)"
    last = ws.store.alias_history("intents")[-1]
    assert (last.alias, last.model_version, last.actor) in {
        ("production", cand, "e2e-tester (kaizen ui)"),
        ("previous", "tiny", "e2e-tester (kaizen ui)"),
    }
    shown = env.get(f"/api/runs/{RUN_ID}").json()["approvals"]
    assert any(a.get("reason", "").startswith("fixes every held-out") for a in shown)
    driver.get(env.url + "approvals")
    assert driver.find_elements(By.ID, "no-approvals")
    driver.get(env.url + f"runs/{RUN_ID}")
    assert "Promoted" in driver.find_element(By.ID, "headline").text
