"""The serving proxy without vLLM: a stub OpenAI-compatible upstream on 127.0.0.1 stands in for it.

Covered: the stable name → version routing and the prompt contract (render with the skill, the
caller's system prompt replaced), trace lines that ``kaizen ingest`` reads unchanged, streaming,
request and feedback validation, feedback to the store or to the feedback file, hot swap
(load → route → unload, and a failed load that changes nothing), the canary split, and
``promote_and_swap`` / ``rollback_and_swap`` against a recorded server.
"""

from __future__ import annotations

import json
import os
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kaizen.tools.schema import Message, Skill, TaskSpec
from kaizen.tools.serve.hotswap import ServingError, http_json, promote_and_swap, rollback_and_swap
from kaizen.tools.skills import save_skill
from kaizen.tools.store import Store
from kaizen.tools.store.tables import ModelVersionRow, ServerRow
from kaizen.tools.workspace import init_workspace
from kaizen.workflows.serve.router import Route, ServingProxy
from kaizen.workflows.serve.server import AppServer

TASK = TaskSpec(
    name="intents",
    kind="classification",
    labels=["balance", "transfer"],
    system_prompt="Classify. Label only.",
)
TOKEN = "secret-token"


class Stub:
    """A fake vLLM: answers '<model>|<system prompt>|<last user text>', records every request."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.loaded: set[str] = set()
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {}) if self.path == "/health" else self._send(
                    404, {"error": {"message": "no"}}
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.calls.append((self.path, body))
                if self.path == "/v1/load_lora_adapter":
                    if "broken" in body["lora_path"]:
                        return self._send(
                            400, {"error": {"message": f"No adapter found for {body['lora_path']}"}}
                        )
                    stub.loaded.add(body["lora_name"])
                    return self._send(200, "ok")
                if self.path == "/v1/unload_lora_adapter":
                    stub.loaded.discard(body["lora_name"])
                    return self._send(200, "ok")
                model, msgs = body["model"], body["messages"]
                if model != "base" and model not in stub.loaded:
                    return self._send(404, {"error": {"message": f"The model `{model}` does not exist."}})
                system = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
                text = f"{model}|{system}|{msgs[-1]['content']}"
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in (text[:5], text[5:]):
                        ev = {
                            "id": "up-1",
                            "object": "chat.completion.chunk",
                            "model": model,
                            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                    ev = {
                        "id": "up-1",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
                    }
                    self.wfile.write(f"data: {json.dumps(ev)}\n\ndata: [DONE]\n\n".encode())
                    self.close_connection = True
                    return None
                return self._send(
                    200,
                    {
                        "id": "up-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _ in self.calls]


def fake_adapter(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (d / "adapter_model.safetensors").write_bytes(b"")
    return d


@pytest.fixture
def env(tmp_path: Path):
    ws, _ = init_workspace(tmp_path / "ws")
    store = Store(ws.db_url)
    store.add_task(TASK)
    for name in ("v1", "v2", "broken"):
        store.add_model_version(
            ModelVersionRow(
                name=name,
                kind="adapter",
                base_ref="base",
                parent="base",
                task="intents",
                adapter_path=str(fake_adapter(tmp_path / "adapters", name)),
            )
        )
    store.set_aliases("intents", {"production": ("v1", None)}, action="set")
    stub = Stub()
    proxy = ServingProxy(
        task=TASK,
        upstream=stub.url,
        base_version="base",
        base_model="base",
        production=Route("v1", "v1", store.get_model_version("v1").adapter_path),
        log_path=tmp_path / "serving" / "intents.jsonl",
        store=store,
        server_id="srv1",
        admin_token=TOKEN,
        rng=random.Random(0),
        fsync=False,
    )
    proxy.load(proxy.production)
    web = AppServer(proxy, "127.0.0.1", 0).start()
    yield {"store": store, "stub": stub, "proxy": proxy, "url": web.url, "tmp": tmp_path}
    web.stop()
    stub.httpd.shutdown()
    store.close()


def chat(url: str, text: str, **extra: Any) -> tuple[int, Any]:
    body = {
        "model": "intents",
        "messages": [{"role": "system", "content": "caller prompt"}, {"role": "user", "content": text}],
        **extra,
    }
    return http_json("POST", url + "/v1/chat/completions", body)


def log_lines(proxy: ServingProxy) -> list[dict[str, Any]]:
    return [json.loads(x) for x in proxy.log_path.read_text().splitlines()]


def test_stable_name_routes_to_production_with_the_task_prompt_and_logs_a_trace(env) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=env["url"] + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="intents",
        messages=[{"role": "system", "content": "caller prompt"}, {"role": "user", "content": "my balance?"}],
    )
    resp = raw.parse()
    trace_id = raw.headers["x-kaizen-trace-id"]
    assert resp.id == trace_id and trace_id.startswith("kz-")
    assert raw.headers["x-kaizen-model-version"] == "v1" and resp.model == "intents"
    # vLLM got the adapter's name and the task's system prompt instead of the caller's
    assert resp.choices[0].message.content == "v1|Classify. Label only.|my balance?"
    (line,) = log_lines(env["proxy"])
    assert line["id"] == trace_id and line["model_version"] == "v1" and line["task"] == "intents"
    assert line["messages"] == [
        {"role": "system", "content": "caller prompt"},
        {"role": "user", "content": "my balance?"},
    ]
    assert line["output"] == resp.choices[0].message.content
    assert (line["prompt_tokens"], line["completion_tokens"]) == (7, 2) and line["latency_ms"] > 0
    assert line["metadata"]["canary"] is False and line["metadata"]["skill_version"] is None
    assert [m.id for m in client.models.list().data] == ["intents"]


def test_the_log_is_read_by_kaizen_ingest_unchanged(env) -> None:
    from kaizen.tools.logs import parse_traces

    for text in ("a", "b"):
        assert chat(env["url"], text)[0] == 200
    res = parse_traces(env["proxy"].log_path)
    assert res.format == "kaizen" and len(res.traces) == 2
    stats = env["store"].import_traces(res.traces, path=str(env["proxy"].log_path), default_task=None)
    assert stats.imported == 2
    views = env["store"].traces("intents")
    assert {v.id for v in views} == {x["id"] for x in log_lines(env["proxy"])}
    assert {v.model_version for v in views} == {"v1"}


def test_the_production_skill_is_rendered(env) -> None:
    store, proxy = env["store"], env["proxy"]
    skill = save_skill(
        store,
        "intents",
        Skill(
            name="intents",
            system_prompt="Skill prompt.",
            instructions="Be brief.",
            few_shot=[[Message(role="user", content="q"), Message(role="assistant", content="balance")]],
        ),
    )
    status, out = http_json(
        "POST",
        env["url"] + "/admin/route",
        {"version": "v1", "adapter_path": proxy.production.adapter_path, "skill": skill.version},
        token=TOKEN,
    )
    assert status == 200 and out["changed"] and out["loaded"] is None  # same adapter: nothing to load
    status, resp = chat(env["url"], "hello")
    assert resp["choices"][0]["message"]["content"] == "v1|Skill prompt.\n\nBe brief.|hello"
    sent = env["stub"].calls[-1][1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert log_lines(proxy)[-1]["metadata"]["skill_version"] == skill.version


def test_passthrough_mode_forwards_the_callers_messages(env) -> None:
    env["proxy"].prompt_mode = "passthrough"
    _, resp = chat(env["url"], "hi")
    assert resp["choices"][0]["message"]["content"] == "v1|caller prompt|hi"


def test_streaming_is_relayed_and_logged(env) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=env["url"] + "/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="intents", messages=[{"role": "user", "content": "s"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "v1|Classify. Label only.|s"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage: not forwarded
    line = log_lines(env["proxy"])[-1]
    assert line["output"] == text and line["metadata"]["stream"] is True and line["completion_tokens"] == 2
    assert {c.id for c in chunks} == {line["id"]}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404, "does not exist"),
        ({"model": "intents", "messages": []}, 400, "non-empty list"),
        ({"model": "intents", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
        ({"model": "intents", "messages": [{"role": "user", "content": 3}]}, 400, "messages.0.content"),
        ({"model": "intents", "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "'n' > 1"),
        (["not", "an", "object"], 400, "JSON object"),
    ],
)
def test_bad_chat_requests_get_a_clear_400_or_404(env, body: Any, status: int, needle: str) -> None:
    got, payload = http_json("POST", env["url"] + "/v1/chat/completions", body)
    assert got == status and needle in payload["error"]["message"]
    assert not env["proxy"].log_path.exists()


def test_feedback_validation_file_and_store(env) -> None:
    url, proxy, store = env["url"], env["proxy"], env["store"]
    for body, needle in [
        ({"verdict": "fail"}, "trace_id"),
        ({"trace_id": "x", "verdict": "maybe"}, "verdict"),
        ({"trace_id": "x", "verdict": "pass", "extra": 1}, "extra"),
        ([1], "JSON object"),
        ({"trace_id": "x", "verdict": "fail", "confidence": 3}, "confidence"),
    ]:
        status, out = http_json("POST", url + "/feedback", body)
        assert status == 400 and needle in out["error"]["message"], (body, out)
    status, out = http_json("POST", url + "/feedback", {"trace_id": "kz-nope", "verdict": "pass"})
    assert status == 404 and "unknown trace id" in out["error"]["message"]

    _, resp = chat(url, "first")
    status, out = http_json(
        "POST", url + "/feedback", {"trace_id": resp["id"], "verdict": "fail", "correction": "balance"}
    )
    assert status == 200 and out["stored"] == "file"
    assert json.loads(proxy.feedback_path.read_text()) == {
        "trace_id": resp["id"],
        "verdict": "fail",
        "correction": "balance",
        "source": "human",
    }
    # after a restart the id is found in the log file
    proxy._ids.clear()
    assert proxy.known_trace(resp["id"])

    from kaizen.tools.logs import parse_feedback, parse_traces

    store.import_traces(parse_traces(proxy.log_path).traces, path="log", default_task=None)
    assert store.add_feedback(parse_feedback(proxy.feedback_path).items, path="fb").feedback_added == 1
    status, out = http_json(
        "POST", url + "/feedback", {"trace_id": resp["id"], "verdict": "pass", "reason": "ok after all"}
    )
    assert status == 200 and out == {"trace_id": resp["id"], "stored": "store", "added": True}
    (view,) = store.traces("intents", ids=[resp["id"]])
    assert view.verdict == "pass" and view.reason == "ok after all"


def test_admin_route_loads_routes_then_unloads_and_needs_the_token(env) -> None:
    url, stub, store = env["url"], env["stub"], env["store"]
    v2 = store.get_model_version("v2").adapter_path
    status, out = http_json("POST", url + "/admin/route", {"version": "v2", "adapter_path": v2})
    assert status == 401
    stub.calls.clear()
    status, out = http_json(
        "POST",
        url + "/admin/route",
        {"version": "v2", "adapter_path": v2, "base_version": "base"},
        token=TOKEN,
    )
    assert (
        status == 200
        and out["loaded"] == "v2"
        and out["unloaded"] == ["v1"]
        and out["previous"]["version"] == "v1"
    )
    assert stub.paths() == ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]
    assert chat(url, "x")[1]["choices"][0]["message"]["content"].startswith("v2|")
    assert env["proxy"].production.version == "v2"
    # back to the base model: nothing to load, v2 unloaded
    status, out = http_json(
        "POST", url + "/admin/route", {"version": "base", "adapter_path": None}, token=TOKEN
    )
    assert status == 200 and out["unloaded"] == ["v2"] and stub.loaded == set()
    assert chat(url, "x")[1]["choices"][0]["message"]["content"].startswith("base|")
    status, out = http_json(
        "POST",
        url + "/admin/route",
        {"version": "v9", "adapter_path": v2, "base_version": "other"},
        token=TOKEN,
    )
    assert status == 409 and "base" in out["error"]["message"]


def test_a_failed_load_leaves_production_serving(env) -> None:
    url, stub, proxy, store = env["url"], env["stub"], env["proxy"], env["store"]
    bad = store.get_model_version("broken").adapter_path
    status, out = http_json(
        "POST", url + "/admin/route", {"version": "broken", "adapter_path": bad}, token=TOKEN
    )
    assert status == 502 and "No adapter found" in out["error"]["message"]
    assert proxy.production.version == "v1" and stub.loaded == {"v1"}
    assert chat(url, "x")[1]["choices"][0]["message"]["content"].startswith("v1|")


def test_canary_splits_requests_and_records_them(env) -> None:
    url, proxy, store = env["url"], env["proxy"], env["store"]
    for body, needle in [
        ({"version": "v2", "fraction": 1.5}, "fraction"),
        ({"version": "v2", "fraction": "a"}, "fraction"),
    ]:
        status, out = http_json("POST", url + "/admin/canary", body, token=TOKEN)
        assert status == 400 and needle in out["error"]["message"]
    status, out = http_json(
        "POST",
        url + "/admin/canary",
        {"version": "v2", "adapter_path": store.get_model_version("v2").adapter_path, "fraction": 0.5},
        token=TOKEN,
    )
    assert status == 200 and out["canary"] == {"version": "v2", "skill": None, "fraction": 0.5}
    for i in range(40):
        chat(url, f"q{i}")
    lines = log_lines(proxy)
    canary = [x for x in lines if x["metadata"]["canary"]]
    assert 8 <= len(canary) <= 32 and {x["model_version"] for x in canary} == {"v2"}
    assert {x["model_version"] for x in lines if not x["metadata"]["canary"]} == {"v1"}
    assert all(x["output"].startswith(x["model_version"] + "|") for x in lines)
    status, out = http_json("POST", url + "/admin/canary", {"version": None}, token=TOKEN)
    assert status == 200 and out["canary"] is None and out["unloaded"] == ["v2"]


def _record(env, pid: int | None = None) -> ServerRow:
    row = ServerRow(
        id="srv1",
        task="intents",
        status="running",
        proxy_url=env["url"],
        vllm_url=env["stub"].url,
        pid=pid or os.getpid(),
        host=__import__("socket").gethostname(),
        base_version="base",
        model_version="v1",
        admin_token=TOKEN,
    )
    env["store"].save_server(row)
    return row


def test_promote_and_rollback_swap_a_recorded_server(env) -> None:
    store, proxy = env["store"], env["proxy"]
    _record(env)
    res = promote_and_swap(store, "intents", "v2", actor="test")
    assert (res.old, res.new) == ("v1", "v2") and res.servers[0]["loaded"] == "v2"
    assert store.get_alias("intents", "production").model_version == "v2" and proxy.production.version == "v2"
    assert chat(env["url"], "x")[1]["choices"][0]["message"]["content"].startswith("v2|")
    res = rollback_and_swap(store, "intents")
    assert (res.old, res.new) == ("v2", "v1") and proxy.production.version == "v1"
    assert store.get_alias("intents", "production").model_version == "v1"


def test_a_failed_swap_changes_neither_the_server_nor_the_registry(env) -> None:
    store, proxy = env["store"], env["proxy"]
    _record(env)
    before = [(e.alias, e.model_version) for e in store.alias_history("intents")]
    with pytest.raises(ServingError, match="No adapter found"):
        promote_and_swap(store, "intents", "broken")
    assert store.get_alias("intents", "production").model_version == "v1"
    assert [(e.alias, e.model_version) for e in store.alias_history("intents")] == before
    assert proxy.production.version == "v1"


def test_a_version_that_cannot_be_promoted_never_reaches_the_server(env) -> None:
    """``registry.check_promotable`` runs before the swap: another task's adapter is refused with the
    registry's error and the live server is never asked to load it (not even for a swap-then-undo)."""
    from kaizen.tools.errors import ModelError

    store, proxy, stub = env["store"], env["proxy"], env["stub"]
    _record(env)
    store.add_task(TaskSpec(name="other", kind="classification", labels=["a", "b"]))
    store.add_model_version(
        ModelVersionRow(
            name="elsewhere",
            kind="adapter",
            base_ref="base",
            parent="base",
            task="other",
            adapter_path=str(fake_adapter(env["tmp"] / "adapters", "elsewhere")),
        )
    )
    before, calls = [(e.alias, e.model_version) for e in store.alias_history("intents")], len(stub.calls)
    with pytest.raises(ModelError, match="belongs to task 'other'"):
        promote_and_swap(store, "intents", "elsewhere")
    assert stub.calls[calls:] == [] and "elsewhere" not in stub.loaded  # no load, no route, no unload
    assert proxy.production.version == "v1" and store.get_alias("intents", "production").model_version == "v1"
    assert [(e.alias, e.model_version) for e in store.alias_history("intents")] == before
    # A rollback to a `previous` that is not promotable is refused the same way, before any server moves.
    store.set_aliases("intents", {"previous": ("elsewhere", None)}, action="set")
    with pytest.raises(ModelError, match="belongs to task 'other'"):
        rollback_and_swap(store, "intents")
    assert stub.calls[calls:] == [] and proxy.production.version == "v1"
    assert store.get_alias("intents", "production").model_version == "v1"


def test_a_server_whose_process_is_gone_is_marked_and_skipped(env) -> None:
    store = env["store"]
    row = _record(env, pid=2**22 + 12345)
    row.proxy_url = "http://127.0.0.1:1"
    store.save_server(row)
    res = promote_and_swap(store, "intents", "v2")
    assert res.servers == [] and store.get_alias("intents", "production").model_version == "v2"
    assert store.get_server("srv1").status == "gone"


def test_no_swap_moves_the_alias_only(env) -> None:
    store, proxy = env["store"], env["proxy"]
    _record(env)
    promote_and_swap(store, "intents", "v2", swap=False)
    assert store.get_alias("intents", "production").model_version == "v2" and proxy.production.version == "v1"
    # promoting what is already production re-routes the drifted server
    res = promote_and_swap(store, "intents", "v2")
    assert res.servers and proxy.production.version == "v2"


def test_kaizen_serve_without_vllm_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from kaizen.workflows.cli.main import main

    ws, _ = init_workspace(tmp_path / "w")
    assert (
        main(["-w", str(ws.root), "task", "add", "intents", "--kind", "classification", "--labels", "a,b"])
        == 0
    )
    monkeypatch.setenv("KAIZEN_VLLM_PYTHON", str(tmp_path / "no-python"))
    capsys.readouterr()
    assert main(["-w", str(ws.root), "serve", "--task", "intents", "--port", "0"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "vLLM is not installed" in err and "make vllm-venv" in err
    assert Store(ws.db_url).list_servers() == []  # nothing recorded, nothing started


def test_the_scheduled_loop_reads_the_serving_directory(env) -> None:
    """``kaizen tick --source .kaizen/serving/``: traces first, then the feedback file, nothing twice."""
    from kaizen.workflows.schedule.ingest import ingest_new

    url, proxy, store = env["url"], env["proxy"], env["store"]
    ids = [chat(url, t)[1]["id"] for t in ("one", "two")]
    assert (
        http_json(
            "POST", url + "/feedback", {"trace_id": ids[0], "verdict": "fail", "correction": "transfer"}
        )[1]["stored"]
        == "file"
    )
    rep = ingest_new(store, "intents", proxy.log_path.parent, env["tmp"] / "work")
    assert (rep.imported, rep.feedback_added, rep.invalid) == (2, 1, 0), rep.as_dict()
    assert store.traces("intents", ids=[ids[0]])[0].correction == "transfer"
    chat(url, "three")
    rep = ingest_new(store, "intents", proxy.log_path.parent, env["tmp"] / "work")
    assert (rep.imported, rep.feedback_added) == (1, 0)


def test_an_adapter_still_answering_is_unloaded_when_its_last_request_ends(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A swap under load: the old adapter's running requests keep it loaded past the admin call's wait;
    it is unloaded when the last one ends, unless production is routed back to it first."""
    import time

    from kaizen.workflows.serve import router

    url, stub, proxy, store = env["url"], env["stub"], env["proxy"], env["store"]
    monkeypatch.setattr(router, "DRAIN_WAIT_S", 0.05)
    paths = {v: store.get_model_version(v).adapter_path for v in ("v1", "v2")}
    held, _ = proxy.choose()  # a request still running on v1
    status, out = http_json(
        "POST", url + "/admin/route", {"version": "v2", "adapter_path": paths["v2"]}, token=TOKEN
    )
    assert (
        status == 200
        and (out["unloaded"], out["unload_pending"]) == ([], ["v1"])
        and stub.loaded == {"v1", "v2"}
    )
    assert chat(url, "x")[1]["choices"][0]["message"]["content"].startswith("v2|")
    proxy.release(held)
    deadline = time.monotonic() + 5
    while stub.loaded != {"v2"} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stub.loaded == {"v2"} and proxy.loaded == {"v2"} and proxy.state()["unload_pending"] == []
    # routed back while still pending: the adapter stays
    held, _ = proxy.choose()
    http_json("POST", url + "/admin/route", {"version": "v1", "adapter_path": paths["v1"]}, token=TOKEN)
    assert proxy.state()["unload_pending"] == ["v2"]
    http_json("POST", url + "/admin/route", {"version": "v2", "adapter_path": paths["v2"]}, token=TOKEN)
    proxy.release(held)
    time.sleep(0.2)
    assert (
        "v2" in stub.loaded
        and proxy.production.version == "v2"
        and "v2" not in proxy.state()["unload_pending"]
    )
