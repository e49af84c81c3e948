"""``kaizen bench serving``: the vLLM server against the transformers backend, and what the proxy costs.

One run, one vLLM server (from ``.venv-vllm``), the embedded default model + the committed support-intents
v1 adapter (LoRA enabled, max rank 64 as ``kaizen serve`` runs it), real CLINC150 banking prompts:

* **start-up** — seconds until vLLM's ``/health`` answers;
* **throughput** — the same rendered chats, greedy, ``max_new_tokens`` 8: ``VLLMServerBackend``
  (OpenAI client, 8 concurrent requests, attached to that server) vs ``TransformersBackend`` (batches
  of 16), best of ``reps``, with the adapter and with the bare base model; model load and server
  start-up excluded. The figure to quote is the ratio ``transformers_s / vllm_s`` (> 1: vLLM faster),
  with the outputs' agreement. On a CPU, vLLM's LoRA kernels cost grows with ``--max-lora-rank``
  (``--max-lora-rank 16`` to compare);
* **swap latency** — ``ServingProxy.route`` on the proxy (the Starlette app on uvicorn, in process):
  load → route → drain → unload, adapter ↔ base and back;
* **proxy overhead** — sequential requests straight to vLLM vs through the proxy (render, routing,
  trace line with fsync), alternated so that other load hits both alike; median and p90;
* **proxy overhead under load** — ``concurrency`` clients × ``load_requests`` requests each (``max_tokens``
  4, the base model), straight to vLLM and through the proxy, alternated twice: p50/p99 latency of each,
  their difference, and the time spent inside the proxy per request (trace ``latency_ms`` − ``upstream_ms``).

Run as: ``kaizen bench serving [--quick] [--skip-throughput] [--concurrency 16 --load-requests 20]``.

Absolute times move with whatever else the machine runs (the load average is recorded); the ratios
are measured minutes apart in the same run. Written to ``<cache>/bench/serving-<time>.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kaizen.workflows.bench.machine import load_avg

Progress = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]
V1_ADAPTER = ROOT / "examples" / "support-intents" / "data" / "v1"
MAX_NEW_TOKENS = 8


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def _ms(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_pct(xs, 0.5), 2), "p99_ms": round(_pct(xs, 0.99), 2)}


def _load_phase(
    url: str, body: Callable[[int], dict[str, Any]], clients: int, per_client: int
) -> tuple[list[float], float]:
    """``clients`` threads each sending ``per_client`` requests one after the other: (latencies in ms, wall seconds)."""
    from kaizen.tools.serve.http import request_json

    def one_client(c: int) -> list[float]:
        out = []
        for i in range(per_client):
            t0 = time.perf_counter()
            status, payload = request_json(
                "POST", url + "/v1/chat/completions", body(c * per_client + i), timeout=300
            )
            if status != 200:
                raise RuntimeError(f"HTTP {status} under load: {payload}")
            out.append((time.perf_counter() - t0) * 1000)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = [x for xs in pool.map(one_client, range(clients)) for x in xs]
    return lat, time.perf_counter() - t0


def bench_serving(
    *,
    n: int = 64,
    reps: int = 2,
    requests: int = 30,
    threads: int | None = 1,
    max_lora_rank: int | None = None,
    concurrency: int = 16,
    load_requests: int = 20,
    throughput: bool = True,
    progress: Progress = lambda m: None,
) -> dict[str, Any]:
    from kaizen.tools.evaluate.backends import TransformersBackend
    from kaizen.tools.evaluate.vllm_backends import VLLMServerBackend
    from kaizen.tools.models.resolve import cache_dir, resolve_base
    from kaizen.tools.schema import TaskSpec, render
    from kaizen.tools.serve.vllm_server import VLLMServer, find_vllm_python
    from kaizen.tools.train.spec import MAX_LORA_RANK
    from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice, rows, to_items
    from kaizen.workflows.serve.router import Route, ServingProxy
    from kaizen.workflows.serve.server import AppServer

    python = find_vllm_python()
    max_lora_rank = max_lora_rank or MAX_LORA_RANK
    if (
        threads
    ):  # the same thread count for both engines (vLLM reads OMP_NUM_THREADS; torch here is set directly)
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    base = resolve_base("smollm2-135m")
    adapter = V1_ADAPTER if (V1_ADAPTER / "adapter_config.json").exists() else None
    labels = load_slice()["labels"]
    task = TaskSpec(name="bench-intents", kind="classification", labels=labels, system_prompt=SYSTEM_PROMPT)
    items = to_items(rows("test", labels, per_label=max(1, n // len(labels) + 1), seed=0))[:n]
    chats = [render(task, None, it.messages) for it in items]
    out: dict[str, Any] = {
        "prompts": len(chats),
        "max_new_tokens": MAX_NEW_TOKENS,
        "adapter": str(adapter) if adapter else None,
        "max_lora_rank": max_lora_rank,
        "threads": threads or "default",
        "best_of": reps,
        "cpus": os.cpu_count(),
        "load_avg_start": load_avg(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-serving-"))
    server = VLLMServer(python=python)
    try:
        progress(f"starting vLLM (LoRA enabled, max rank {max_lora_rank}) …")
        server.start(
            base,
            served_model_name="base",
            max_lora_rank=max_lora_rank,
            max_loras=3,
            log_file=tmp / "vllm.log",
        )
        out["vllm_startup_s"] = round(server.startup_s or 0, 1)
        progress(f"vLLM healthy after {out['vllm_startup_s']} s")

        # ---- throughput: vLLM server vs transformers on the same chats, with the adapter and without
        out["throughput"] = {}
        for variant, adapter_dir in (
            (([("adapter", adapter)] if adapter else []) + [("base", None)]) if throughput else []
        ):
            t0 = time.perf_counter()
            vb = VLLMServerBackend(base, adapter_dir, url=server.url)
            load_vllm = time.perf_counter() - t0
            vb.generate(chats[:4], max_new_tokens=MAX_NEW_TOKENS)  # warm-up
            t0 = time.perf_counter()
            tb = TransformersBackend(base, adapter_dir, batch_size=16)
            load_tf = time.perf_counter() - t0
            tb.generate(chats[:2], max_new_tokens=MAX_NEW_TOKENS)  # warm-up
            times: dict[str, list[float]] = {"vllm": [], "transformers": []}
            outputs: dict[str, list[str]] = {}
            for r in range(reps):  # alternate, so that a change in background load hits both
                for name, backend in (("vllm", vb), ("transformers", tb)):
                    t0 = time.perf_counter()
                    outputs[name] = backend.generate(chats, max_new_tokens=MAX_NEW_TOKENS)
                    times[name].append(time.perf_counter() - t0)
                    progress(
                        f"  {variant}: {name} rep {r + 1}: {len(chats)} prompts in {times[name][-1]:.2f} s"
                    )
            vllm_s, tf_s = min(times["vllm"]), min(times["transformers"])
            agree = sum(a == b for a, b in zip(outputs["vllm"], outputs["transformers"], strict=True)) / len(
                chats
            )
            out["throughput"][variant] = {
                "vllm_server": {
                    "seconds": round(vllm_s, 3),
                    "all_seconds": [round(t, 2) for t in times["vllm"]],
                    "examples_per_s": round(len(chats) / vllm_s, 2),
                    "concurrency": vb.concurrency,
                    "adapter_load_s": round(load_vllm, 3),
                },
                "transformers": {
                    "seconds": round(tf_s, 3),
                    "all_seconds": [round(t, 2) for t in times["transformers"]],
                    "examples_per_s": round(len(chats) / tf_s, 2),
                    "batch_size": tb.batch_size,
                    "model_load_s": round(load_tf, 2),
                },
                "ratio_transformers_over_vllm": round(tf_s / vllm_s, 2),
                "same_outputs": round(agree, 3),
                "load_avg": load_avg(),
            }
            progress(
                f"throughput ({variant}): vLLM server {len(chats) / vllm_s:.1f} ex/s, transformers {len(chats) / tf_s:.1f} ex/s "
                f"→ ratio {tf_s / vllm_s:.2f}; same outputs {agree:.0%}"
            )
            del tb
            vb.close()

        # ---- the proxy in front of the same server: swap latency and per-request overhead
        proxy = ServingProxy(
            task=task,
            upstream=server.url,
            base_version="base",
            base_model="base",
            production=Route("base", "base"),
            log_path=tmp / "serving" / "bench.jsonl",
            server_id="bench",
        )
        web = AppServer(proxy, "127.0.0.1", 0).start()
        url = web.url
        try:
            swaps = []
            if adapter is not None:
                for version, path in (
                    ("v1", str(adapter)),
                    ("base", None),
                    ("v1", str(adapter)),
                    ("base", None),
                    ("v1", str(adapter)),
                ):
                    res = proxy.route({"version": version, "adapter_path": path})
                    swaps.append(
                        {
                            "to": version,
                            "swap_ms": res["swap_ms"],
                            "loaded": res["loaded"],
                            "unloaded": res["unloaded"],
                        }
                    )
                out["swap"] = {
                    "each": swaps,
                    "median_ms": round(statistics.median(s["swap_ms"] for s in swaps), 2),
                }
                progress(
                    f"hot swap (load → route → unload): median {out['swap']['median_ms']} ms over {len(swaps)} swaps"
                )
            from kaizen.tools.serve.http import request_json as http_json

            model = proxy.production.model
            direct, via = [], []
            for i in range(requests + 2):
                chat = chats[i % len(chats)]
                for kind in ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct"):
                    t0 = time.perf_counter()
                    if kind == "direct":
                        status, _ = http_json(
                            "POST",
                            server.url + "/v1/chat/completions",
                            {
                                "model": model,
                                "messages": chat,
                                "temperature": 0,
                                "max_tokens": MAX_NEW_TOKENS,
                            },
                            timeout=120,
                        )
                    else:
                        status, _ = http_json(
                            "POST",
                            url + "/v1/chat/completions",
                            {
                                "model": task.name,
                                "messages": chat[1:],
                                "temperature": 0,
                                "max_tokens": MAX_NEW_TOKENS,
                            },
                            timeout=120,
                        )
                    dt = (time.perf_counter() - t0) * 1000
                    assert status == 200, status
                    if i >= 2:  # the first two pairs are warm-up
                        (direct if kind == "direct" else via).append(dt)
            lines = [json.loads(x) for x in proxy.log_path.read_text().splitlines()][2:]
            inner = [x["latency_ms"] - x["metadata"]["upstream_ms"] for x in lines]
            out["proxy_overhead"] = {
                "requests": len(via),
                "direct_median_ms": round(statistics.median(direct), 2),
                "proxy_median_ms": round(statistics.median(via), 2),
                "overhead_median_ms": round(statistics.median(via) - statistics.median(direct), 2),
                "direct_p90_ms": round(_pct(direct, 0.9), 2),
                "proxy_p90_ms": round(_pct(via, 0.9), 2),
                "in_proxy_median_ms": round(statistics.median(inner), 3),
                "note": "in_proxy: parse + render + routing inside the proxy (trace write with fsync comes after the response time it logs)",
                "load_avg": load_avg(),
            }
            progress(
                f"proxy overhead: median {out['proxy_overhead']['overhead_median_ms']} ms per request "
                f"(direct {out['proxy_overhead']['direct_median_ms']} ms, via proxy {out['proxy_overhead']['proxy_median_ms']} ms)"
            )

            # ---- under load: `concurrency` clients at once, direct vs through the proxy, alternated. On the base
            # model: what the proxy adds does not depend on it, and a LoRA request costs ~4x on vLLM's CPU backend.
            proxy.route({"version": "base", "adapter_path": None})
            model = proxy.production.model

            def direct_body(i: int) -> dict[str, Any]:
                return {"model": model, "messages": chats[i % len(chats)], "temperature": 0, "max_tokens": 4}

            def proxy_body(i: int) -> dict[str, Any]:
                return {
                    "model": task.name,
                    "messages": chats[i % len(chats)][1:],
                    "temperature": 0,
                    "max_tokens": 4,
                }

            _load_phase(url, proxy_body, concurrency, 1)  # warm-up: connections, prefix cache
            n_before = len(proxy.log_path.read_text().splitlines())
            lat: dict[str, list[float]] = {"direct": [], "proxy": []}
            wall: dict[str, float] = {"direct": 0.0, "proxy": 0.0}
            for r in range(2):
                for kind in ("direct", "proxy") if r % 2 == 0 else ("proxy", "direct"):
                    xs, secs = _load_phase(
                        server.url if kind == "direct" else url,
                        direct_body if kind == "direct" else proxy_body,
                        concurrency,
                        load_requests,
                    )
                    lat[kind] += xs
                    wall[kind] += secs
                    progress(
                        f"  under load, {kind}: {len(xs)} requests from {concurrency} clients in {secs:.1f} s, "
                        f"p50 {_pct(xs, 0.5):.0f} ms, p99 {_pct(xs, 0.99):.0f} ms"
                    )
            lines = [json.loads(x) for x in proxy.log_path.read_text().splitlines()[n_before:]]
            inner = [x["latency_ms"] - x["metadata"]["upstream_ms"] for x in lines]
            d, v = _ms(lat["direct"]), _ms(lat["proxy"])
            out["proxy_under_load"] = {
                "clients": concurrency,
                "requests_per_client": load_requests,
                "phases": 2,
                "max_tokens": 4,
                "requests": len(lat["proxy"]),
                "logged": len(lines),
                "direct": d | {"requests_per_s": round(len(lat["direct"]) / wall["direct"], 1)},
                "proxy": v | {"requests_per_s": round(len(lat["proxy"]) / wall["proxy"], 1)},
                "overhead_p50_ms": round(v["p50_ms"] - d["p50_ms"], 2),
                "overhead_p99_ms": round(v["p99_ms"] - d["p99_ms"], 2),
                "in_proxy": {k: round(val, 3) for k, val in _ms(inner).items()},
                "note": "overhead = proxy percentile - direct percentile (same load, alternated phases); in_proxy: per request, "
                "parse + render + routing + relay inside the proxy (trace latency_ms - upstream_ms, before the fsync)",
                "load_avg": load_avg(),
            }
            pl = out["proxy_under_load"]
            progress(
                f"proxy under load ({concurrency} clients): overhead p50 {pl['overhead_p50_ms']} ms, p99 {pl['overhead_p99_ms']} ms; "
                f"inside the proxy p50 {pl['in_proxy']['p50_ms']} ms, p99 {pl['in_proxy']['p99_ms']} ms"
            )
        finally:
            web.stop()
    finally:
        server.stop()
    out["load_avg_end"] = load_avg()
    dest = cache_dir() / "bench" / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    out["written_to"] = str(dest)
    return out
