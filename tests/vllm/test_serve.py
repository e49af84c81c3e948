"""``kaizen serve`` for real: vLLM behind kaizen's proxy, one server for the whole module.

The module starts ONE ``kaizen serve`` subprocess (which starts vLLM with LoRA, max rank 64) on
127.0.0.1 with free ports, serving the support-intents task with the committed v1 adapter, and trains
one fresh adapter (``kaizen train sft --max-steps 2 --top-layers 2 --lora-r 16``) while vLLM boots.
Then: adapters kaizen trains load in vLLM; clients use the task's name through the openai client;
promote changes the answers without a restart and rollback restores them; failed loads (rank 128, a
broken directory) change neither production nor the registry; the log round-trips through
``kaizen ingest``; POST /feedback lands in the store (or the feedback file before ingestion); the canary
splits traffic; ``kaizen eval --backend vllm`` agrees with the transformers backend; SIGTERM stops
everything and marks the server stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support_intents import GOLD, TASK, V1_ADAPTER

from kaizen.tools.serve.hotswap import http_json
from kaizen.workflows.cli.main import main

pytestmark = pytest.mark.vllm

BALANCE_Q = "how much does my bank account have"  # v1 answers "balance" (tests/vllm/test_vllm_server.py)


def kz(ws: Path, *argv: str) -> int:
    return main(["-w", str(ws), *argv])


def kz_json(ws: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert kz(ws, *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def _read_ready(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def read() -> None:
        line = proc.stdout.readline() if proc.stdout else ""
        box["line"] = line

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not box.get("line"):
        proc.terminate()
        raise AssertionError(
            f"kaizen serve not ready after {timeout:.0f} s (exit {proc.poll()}): "
            f"{(proc.stderr.read() if proc.stderr and proc.poll() is not None else '')[-3000:]}"
        )
    return json.loads(box["line"])


@pytest.fixture(scope="module")
def served(vllm_python: str, smollm_dir: Path, support_intents_ws, kaizen_serve):
    ws = support_intents_ws("serve-ws", "v1", promote=True)
    started = time.monotonic()
    with kaizen_serve(ws, "--cpu-threads", "1", env={"KAIZEN_VLLM_PYTHON": vllm_python}) as proc:
        # Train while vLLM boots: a 2-step LoRA on the top 2 layers, r=16 (the fresh adapter to promote).
        data = ws / "train.jsonl"
        data.write_text("".join(GOLD.read_text().splitlines(keepends=True)[:16]))
        assert (
            kz(
                ws,
                "train",
                "sft",
                "--task",
                TASK,
                "--data",
                str(data),
                "--max-steps",
                "2",
                "--top-layers",
                "2",
                "--lora-r",
                "16",
                "--name",
                "fresh",
            )
            == 0
        )
        info = _read_ready(proc, 600)
        info["ready_after_s"] = round(time.monotonic() - started, 1)
        print(
            f"\nkaizen serve ready after {info['ready_after_s']} s (vLLM start-up {info['vllm_startup_s']} s)"
        )
        yield {"ws": ws, "proc": proc, "info": info, "url": info["url"], "err": ws / "serve.err"}


def client(served: dict[str, Any]):
    from openai import OpenAI

    return OpenAI(base_url=served["info"]["base_url"], api_key="unused", max_retries=0, timeout=120)


def ask(served: dict[str, Any], text: str = BALANCE_Q, **extra: Any) -> tuple[str, str, str]:
    """(answer, trace id, version that answered) through the openai client, model = the task name."""
    raw = client(served).chat.completions.with_raw_response.create(
        model=TASK,
        messages=[{"role": "user", "content": text}],
        **({"temperature": 0, "max_tokens": 12} | extra),
    )
    resp = raw.parse()
    assert resp.id == raw.headers["x-kaizen-trace-id"] and resp.model == TASK
    return (resp.choices[0].message.content or "").strip(), resp.id, raw.headers["x-kaizen-model-version"]


def production(ws: Path) -> tuple[str, int]:
    from kaizen.tools.workspace import find_workspace

    w = find_workspace(ws)
    return w.store.get_alias(TASK, "production").model_version, len(w.store.alias_history(TASK))


def test_serving_the_task_name_through_the_openai_client(served) -> None:
    c = client(served)
    assert [m.id for m in c.models.list().data] == [TASK]
    answer, trace_id, version = ask(served)
    assert (answer, version) == ("balance", "v1") and trace_id.startswith("kz-")
    status, health = http_json("GET", served["url"] + "/health")
    assert status == 200 and health["production"]["version"] == "v1"
    with pytest.raises(Exception, match="does not exist"):
        c.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    # streaming is relayed and logged like any other request
    chunks = list(
        c.chat.completions.create(
            model=TASK,
            messages=[{"role": "user", "content": BALANCE_Q}],
            temperature=0,
            max_tokens=12,
            stream=True,
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip() == "balance"


def test_the_running_server_is_recorded(served, capsys) -> None:
    (row,) = kz_json(served["ws"], capsys, "servers", "list", "--task", TASK)
    assert row["status"] == "running" and row["proxy_url"] == served["url"] and row["model_version"] == "v1"
    assert row["vllm_url"] == served["info"]["vllm_url"] and "admin_token" not in row


def test_adapters_kaizen_trains_load_in_vllm(served, capsys) -> None:
    """The committed v1 (all layers) and the fresh one (top layers, r=16) both load and answer."""
    from kaizen.tools.serve.vllm_server import VLLMServer

    fresh = kz_json(served["ws"], capsys, "models", "show", "fresh")
    assert json.loads((Path(fresh["adapter_path"]) / "adapter_config.json").read_text())["r"] == 16
    srv = VLLMServer()
    srv.host, srv.port = "127.0.0.1", int(served["info"]["vllm_url"].rsplit(":", 1)[1])
    for name, path in (("load-check-v1", V1_ADAPTER), ("load-check-fresh", fresh["adapter_path"])):
        srv.load_lora(name, path)
        try:
            out = srv.request(
                "POST",
                "/v1/chat/completions",
                {
                    "model": name,
                    "max_tokens": 4,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert out["choices"][0]["finish_reason"] in ("stop", "length")
        finally:
            srv.unload_lora(name)


def test_promote_hot_swaps_and_rollback_restores(served, capsys) -> None:
    ws = served["ws"]
    before = ask(served)[0]
    t0 = time.perf_counter()
    out = kz_json(ws, capsys, "models", "promote", "fresh", "--task", TASK)
    promote_s = time.perf_counter() - t0
    (swap,) = out["servers"]
    assert out["production"] == "fresh" and swap["loaded"] == "fresh" and swap["unloaded"] == ["v1"]
    answer, _, version = ask(served)
    assert (
        version == "fresh" and answer != before
    )  # 2 steps from a fresh LoRA: the base model's chatty answer
    with capsys.disabled():
        print(
            f"\npromote with hot swap: {promote_s * 1000:.0f} ms in the CLI call, swap {swap['swap_ms']} ms at the proxy"
        )
    out = kz_json(ws, capsys, "models", "rollback", "--task", TASK)
    assert out["production"] == "v1" and out["servers"][0]["loaded"] == "v1"
    assert ask(served)[::2] == ("balance", "v1")
    assert production(ws)[0] == "v1"


def test_a_failed_load_leaves_production_and_the_registry_alone(served, capsys, tmp_path: Path) -> None:
    ws = served["ws"]
    big = tmp_path / "rank128"
    shutil.copytree(V1_ADAPTER, big)
    cfg = json.loads((big / "adapter_config.json").read_text())
    (big / "adapter_config.json").write_text(json.dumps({**cfg, "r": 128}))
    broken = tmp_path / "broken"
    shutil.copytree(V1_ADAPTER, broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    # Registered behind `kaizen models add`, which now refuses both up front: the server must still refuse
    # them when an adapter changes on disk after it was registered.
    from kaizen.tools.store.tables import ModelVersionRow
    from kaizen.tools.workspace import find_workspace

    store = find_workspace(ws).store
    for name, path in (("rank128", big), ("broken", broken)):
        store.add_model_version(
            ModelVersionRow(
                name=name, kind="adapter", base_ref="base", parent="base", task=TASK, adapter_path=str(path)
            )
        )
    before = production(ws)
    for name, needle in (
        ("rank128", "rank 128 is greater than max_lora_rank 64"),
        ("broken", "could not load adapter 'broken'"),
    ):
        capsys.readouterr()
        assert kz(ws, "models", "promote", name, "--task", TASK) == 1
        err = capsys.readouterr().err
        assert needle in " ".join(err.split()), err
        assert production(ws) == before  # same production, no alias event recorded
        assert ask(served)[::2] == ("balance", "v1")
    status, health = http_json("GET", served["url"] + "/health")
    assert status == 200 and health["production"]["version"] == "v1"


def test_logs_round_trip_through_kaizen_ingest_and_feedback_lands(served, capsys) -> None:
    ws, url = served["ws"], served["url"]
    _, tid_a, _ = ask(served, "i want to move money to savings")
    log = Path(served["info"]["log"])
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[-1]["id"] == tid_a and lines[-1]["messages"] == [
        {"role": "user", "content": "i want to move money to savings"}
    ]
    assert all(x["task"] == TASK and x["model_version"] and x["completion_tokens"] for x in lines)
    # feedback before ingestion: appended next to the log for the scheduled loop
    status, out = http_json(
        "POST", url + "/feedback", {"trace_id": tid_a, "verdict": "fail", "correction": "transfer"}
    )
    assert (
        status == 200
        and out["stored"] == "file"
        and Path(out["path"]) == Path(served["info"]["feedback_log"])
    )
    stats = kz_json(ws, capsys, "ingest", str(log))
    assert stats["format"] == "kaizen" and stats["imported"] == len(lines) and stats["invalid"] == 0
    assert kz_json(ws, capsys, "ingest", str(log))["imported"] == 0  # idempotent
    assert kz_json(ws, capsys, "feedback", out["path"])["feedback_added"] == 1
    # after ingestion: straight into the store
    _, tid_b, _ = ask(served)
    kz_json(ws, capsys, "ingest", str(log))
    status, out = http_json(
        "POST", url + "/feedback", {"trace_id": tid_b, "verdict": "pass", "reason": "right queue"}
    )
    assert status == 200 and out == {"trace_id": tid_b, "stored": "store", "added": True}
    from kaizen.tools.workspace import find_workspace

    views = {v.id: v for v in find_workspace(ws).store.traces(TASK, ids=[tid_a, tid_b])}
    assert (views[tid_a].verdict, views[tid_a].correction) == ("fail", "transfer")
    assert (views[tid_b].verdict, views[tid_b].reason, views[tid_b].model_version) == (
        "pass",
        "right queue",
        "v1",
    )
    status, out = http_json("POST", url + "/feedback", {"trace_id": tid_b, "verdict": "wrong"})
    assert status == 400 and "verdict" in out["error"]["message"]


def test_canary_sends_a_fraction_to_the_candidate(served, capsys) -> None:
    ws = served["ws"]
    out = kz_json(ws, capsys, "servers", "canary", "--task", TASK, "--version", "fresh", "--fraction", "0.5")
    assert out[0]["canary"] == {"version": "fresh", "skill": None, "fraction": 0.5}
    log = Path(served["info"]["log"])
    n0 = len(log.read_text().splitlines())
    versions = [ask(served, f"what is my balance {i}", max_tokens=2)[2] for i in range(16)]
    lines = [json.loads(x) for x in log.read_text().splitlines()[n0:]]
    assert [x["model_version"] for x in lines] == versions
    assert {x["model_version"] for x in lines if x["metadata"]["canary"]} == {"fresh"}
    assert {x["model_version"] for x in lines if not x["metadata"]["canary"]} == {"v1"}
    assert 2 <= versions.count("fresh") <= 14
    out = kz_json(ws, capsys, "servers", "canary", "--task", TASK, "--off")
    assert out[0]["canary"] is None
    assert production(ws)[0] == "v1"


def test_eval_backend_vllm_agrees_with_transformers(served, capsys, tmp_path: Path) -> None:
    ws = served["ws"]
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(GOLD.read_text().splitlines(keepends=True)[40:48]))
    t0 = time.perf_counter()
    v = kz_json(
        ws,
        capsys,
        "eval",
        "--model",
        "v1",
        "--task",
        TASK,
        "--data",
        str(data),
        "--backend",
        "vllm",
        "--base-url",
        served["info"]["vllm_url"],
    )
    t_vllm = time.perf_counter() - t0
    t0 = time.perf_counter()
    t = kz_json(ws, capsys, "eval", "--model", "v1", "--task", TASK, "--data", str(data))
    t_tf = time.perf_counter() - t0
    with capsys.disabled():
        print(
            f"\neval of 8 examples: vLLM server {t_vllm:.1f} s, transformers {t_tf:.1f} s (model load included)"
        )
    assert v["backend"] == "vllm" and v["decoding"]["engine"] == "server"
    outs = [
        [json.loads(x)["output"] for x in Path(r["outputs_path"]).read_text().splitlines()] for r in (v, t)
    ]
    agree = sum(a == b for a, b in zip(*outs, strict=True)) / len(outs[0])
    assert agree >= 0.85 and abs(v["score"] - t["score"]) <= 0.15, (outs, v["score"], t["score"])
    # the eval's temporary adapter is gone again
    status, models = http_json("GET", served["info"]["vllm_url"] + "/v1/models")
    assert not [m["id"] for m in models["data"] if m["id"].startswith("kaizen-eval-")]


def test_zz_sigterm_stops_vllm_and_marks_the_server_stopped(served, capsys) -> None:
    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    (row,) = kz_json(served["ws"], capsys, "servers", "list", "--task", TASK, "--all")
    assert row["status"] == "stopped" and row["stopped_at"]
    from kaizen.tools.serve.hotswap import ServingError

    with pytest.raises(ServingError, match="unreachable"):
        http_json("GET", served["info"]["vllm_url"] + "/health", timeout=2)
    # with no live server, promote only moves the alias
    out = kz_json(served["ws"], capsys, "models", "promote", "fresh", "--task", TASK)
    assert out["production"] == "fresh" and "servers" not in out


def _eval_servers() -> set[int]:
    """pids of vLLM servers started by VLLMServerBackend (served as "base"; kaizen serve names it after the version)."""
    out = set()
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in cmd and b"--served-model-name" in cmd:
            if cmd[cmd.index(b"--served-model-name") + 1] == b"base" and b"--max-loras" in cmd:
                out.add(int(d.name))
    return out


def test_zzz_eval_backend_vllm_starts_and_stops_its_own_server(
    served, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs after the serve server stopped, so only one vLLM of this module runs at a time."""
    assert served["proc"].poll() is not None
    monkeypatch.setenv(
        "KAIZEN_VLLM_PYTHON",
        os.environ.get("KAIZEN_VLLM_PYTHON")
        or __import__("kaizen.tools.serve.vllm_server", fromlist=["x"]).find_vllm_python(),
    )
    monkeypatch.setenv(
        "OMP_NUM_THREADS", "1"
    )  # read by the vLLM subprocess only (this process's torch is set up)
    monkeypatch.setenv("KAIZEN_VLLM_ENGINE", "server")
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(GOLD.read_text().splitlines(keepends=True)[60:66]))
    before = _eval_servers()
    t0 = time.perf_counter()
    out = kz_json(
        served["ws"],
        capsys,
        "eval",
        "--model",
        "v1",
        "--task",
        TASK,
        "--data",
        str(data),
        "--backend",
        "vllm",
    )
    with capsys.disabled():
        print(
            f"\nkaizen eval --backend vllm (server start + 6 examples + stop): {time.perf_counter() - t0:.1f} s"
        )
    assert out["backend"] == "vllm" and out["decoding"]["engine"] == "server" and out["n"] == 6
    assert out["score"] >= 0.5  # v1 knows these intents
    assert _eval_servers() == before  # the server it started is gone
