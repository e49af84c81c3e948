"""``kaizen serve`` under load, with hot swaps in the middle (bounded: 16 clients × 20 requests, 4 tokens).

One ``kaizen serve --vllm-url`` subprocess attaches to the suite's shared vLLM server (tests/vllm/conftest.py;
no second vLLM start) and serves the support-intents task, production = the base model. 16 client
threads send 20 requests each (every fourth one streamed), all the same question, while the main
thread promotes the committed v1 adapter after a third of the requests (loaded under load) and rolls
back after half (v1 is unloaded once its running requests end), both through ``kaizen.tools.serve.hotswap`` as ``kaizen models promote``
does. (v1 serves about a sixth only: a LoRA request costs ~4x a base one on vLLM's CPU backend.)
Checked: no request fails; the trace log has exactly one line per answered request, whose
``model_version`` is the version the response header named and whose output is what the client got;
requests that started after a swap returned are answered by the new version and those that ended
before it by the old one; v1's answers and the base model's never coincide (so the label is the model
that really answered); once the last v1 request ended no adapter is left loaded, and at exit the
attached vLLM is as it was. Latency percentiles are printed, not asserted (``kaizen bench serving``
reports proxy overhead).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from support_intents import TASK

pytestmark = pytest.mark.vllm

QUESTION = "how much does my bank account have"  # v1 answers "balance"; the base model chats
V1 = "load-v1"  # its own adapter name in the shared vLLM (other modules load "v1" there)
CLIENTS, PER_CLIENT, MAX_TOKENS, STREAM_EVERY = 16, 20, 4, 4


@pytest.fixture(scope="module")
def attached(vllm_server, support_intents_ws, kaizen_serve):
    """A ``kaizen serve`` subprocess attached to the session's vLLM server; stopped (SIGTERM) at the end."""
    ws = support_intents_ws("serve-load-ws", V1)
    with kaizen_serve(ws, "--vllm-url", vllm_server.url) as proc:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, f"kaizen serve exited {proc.wait()}: {(ws / 'serve.err').read_text()[-3000:]}"
        info = json.loads(line)
        assert info["attached"] and info["vllm_url"] == vllm_server.url and info["version"] == "base"
        yield {"ws": ws, "proc": proc, "info": info}


def _one(client: httpx.Client, url: str, stream: bool) -> dict[str, Any]:
    body = {
        "model": TASK,
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    }
    rec: dict[str, Any] = {"stream": stream, "start": time.monotonic()}
    try:
        if stream:
            with client.stream("POST", url, json=body | {"stream": True}) as r:
                rec["status"], rec["version"] = r.status_code, r.headers.get("x-kaizen-model-version")
                events = [x[5:].strip() for x in r.iter_lines() if x.startswith("data:")]
            rec["done"] = events[-1:] == ["[DONE]"]
            chunks = [json.loads(e) for e in events if e != "[DONE]"]
            rec["id"] = chunks[0]["id"] if chunks else None
            rec["answer"] = "".join(
                c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
            )
        else:
            r = client.post(url, json=body)
            rec["status"], rec["version"], rec["done"] = (
                r.status_code,
                r.headers.get("x-kaizen-model-version"),
                True,
            )
            payload = r.json()
            rec["id"], rec["answer"] = (
                payload.get("id"),
                (payload.get("choices") or [{}])[0].get("message", {}).get("content"),
            )
    except httpx.HTTPError as exc:
        rec["status"], rec["error"] = None, repr(exc)
    rec["end"] = time.monotonic()
    return rec


def test_concurrent_clients_with_hot_swaps_in_the_middle(attached, vllm_server) -> None:
    from kaizen.tools.serve.hotswap import http_json, promote_and_swap, rollback_and_swap
    from kaizen.tools.workspace import find_workspace

    store = find_workspace(attached["ws"]).store
    url = attached["info"]["base_url"] + "/chat/completions"
    total = CLIENTS * PER_CLIENT
    done, results, lock = [0], [], threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(trust_env=False, timeout=300) as http:
            for i in range(PER_CLIENT):
                rec = _one(http, url, stream=(c * PER_CLIENT + i) % STREAM_EVERY == 0)
                with lock:
                    results.append(rec)
                    done[0] += 1

    def wait_for(n: int) -> None:
        while done[0] < n:
            time.sleep(0.01)

    started = time.monotonic()
    swaps: dict[str, tuple[float, float]] = {}
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, c) for c in range(CLIENTS)]
        wait_for(total // 3)
        t0 = time.monotonic()
        promoted = promote_and_swap(store, TASK, V1, actor="load test")
        swaps["promote"] = (t0, time.monotonic())
        wait_for(total // 2)
        t0 = time.monotonic()
        rolled = rollback_and_swap(store, TASK, actor="load test")
        swaps["rollback"] = (t0, time.monotonic())
        for f in futures:
            f.result()
    wall = time.monotonic() - started

    # no request failed, streamed ones included
    failed = [r for r in results if r["status"] != 200 or not r["done"]]
    assert not failed, failed[:3]
    assert len(results) == total
    assert (
        promoted.servers[0]["loaded"] == V1
        and V1 in rolled.servers[0]["unloaded"] + rolled.servers[0]["unload_pending"]
    )

    # one trace line per answered request, naming the version that answered and holding what the client got
    lines = [json.loads(x) for x in Path(attached["info"]["log"]).read_text().splitlines()]
    by_id = {x["id"]: x for x in lines}
    assert len(lines) == len(by_id) == total
    assert set(by_id) == {r["id"] for r in results}
    for r in results:
        line = by_id[r["id"]]
        assert (line["model_version"], line["output"], line["metadata"]["stream"]) == (
            r["version"],
            r["answer"],
            r["stream"],
        )

    # each swap took effect when it returned, and not before it began
    p0, p1 = swaps["promote"]
    r0, r1 = swaps["rollback"]
    assert {r["version"] for r in results if r["end"] < p0} == {"base"}
    assert {r["version"] for r in results if p1 < r["start"] and r["end"] < r0} == {V1}
    assert {r["version"] for r in results if r["start"] > r1} == {"base"}
    versions = Counter(r["version"] for r in results)
    assert versions[V1] >= CLIENTS and versions["base"] >= 2 * CLIENTS, versions
    # the version label is the model that answered: v1's answers and the base model's never coincide
    answers = {v: {(r["answer"] or "").strip() for r in results if r["version"] == v} for v in (V1, "base")}
    assert answers[V1] == {"balance"} and "balance" not in answers["base"], answers

    lat = sorted((r["end"] - r["start"]) * 1000 for r in results)
    print(
        f"\n{total} requests from {CLIENTS} clients in {wall:.1f} s ({total / wall:.1f}/s): p50 {lat[total // 2]:.0f} ms, "
        f"p99 {lat[int(total * 0.99) - 1]:.0f} ms; answered by {dict(versions)}; promote swap {promoted.servers[0]['swap_ms']} ms, "
        f"rollback swap {rolled.servers[0]['swap_ms']} ms (under load)"
    )
    inner = sorted(x["latency_ms"] - x["metadata"]["upstream_ms"] for x in lines)
    print(
        f"inside the proxy (trace latency_ms - upstream_ms): p50 {inner[total // 2]:.1f} ms, p99 {inner[int(total * 0.99) - 1]:.1f} ms"
    )

    # the swapped-out adapter was unloaded once its last request ended: nothing of ours is left in vLLM
    row = store.list_servers(TASK, status="running")[0]
    deadline = time.monotonic() + 30  # a deferred unload runs right after the last request released v1
    while (state := http_json("GET", row.proxy_url + "/admin/state", token=row.admin_token)[1])[
        "loaded"
    ] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (state["loaded"], state["unload_pending"], state["production"]["version"]) == ([], [], "base")
    assert V1 not in vllm_server.models()
    proc = attached["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
