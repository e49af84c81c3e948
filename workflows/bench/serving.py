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
* **swap latency** — ``POST /admin/route`` on an in-process ``ServingProxy``: load → route → unload,
  adapter ↔ base and back;
* **proxy overhead** — sequential requests straight to vLLM vs through the proxy (render, routing,
  trace line with fsync), alternated so that other load hits both alike; median and p90.

Absolute times move with whatever else the machine runs (the load average is recorded); the ratios
are measured minutes apart in the same run. Written to ``<cache>/bench/serving-<time>.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]
V1_ADAPTER = ROOT / "examples" / "support-intents" / "data" / "v1"
MAX_NEW_TOKENS = 8


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_serving(*, n: int = 64, reps: int = 2, requests: int = 30, threads: int | None = 1, max_lora_rank: int | None = None,
                  progress: Progress = lambda m: None) -> dict[str, Any]:
    from kaizen.tools.evaluate.backends import TransformersBackend, VLLMServerBackend
    from kaizen.tools.models.resolve import cache_dir, resolve_base
    from kaizen.tools.schema import TaskSpec, render
    from kaizen.tools.serve.vllm_server import VLLMServer, find_vllm_python
    from kaizen.tools.train.spec import MAX_LORA_RANK
    from kaizen.workflows.bench.clinc import SYSTEM_PROMPT, load_slice, rows, to_items
    from kaizen.workflows.serve.proxy import Route, ServingProxy, local_url, make_http_server

    python = find_vllm_python()
    max_lora_rank = max_lora_rank or MAX_LORA_RANK
    if threads:  # the same thread count for both engines (vLLM reads OMP_NUM_THREADS; torch here is set directly)
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    base = resolve_base("smollm2-135m")
    adapter = V1_ADAPTER if (V1_ADAPTER / "adapter_config.json").exists() else None
    labels = load_slice()["labels"]
    task = TaskSpec(name="bench-intents", kind="classification", labels=labels, system_prompt=SYSTEM_PROMPT)
    items = to_items(rows("test", labels, per_label=max(1, n // len(labels) + 1), seed=0))[:n]
    chats = [render(task, None, it.messages) for it in items]
    out: dict[str, Any] = {"prompts": len(chats), "max_new_tokens": MAX_NEW_TOKENS, "adapter": str(adapter) if adapter else None,
                           "max_lora_rank": max_lora_rank, "threads": threads or "default", "best_of": reps, "cpus": os.cpu_count(), "load_avg_start": _load()}
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-serving-"))
    server = VLLMServer(python=python)
    try:
        progress(f"starting vLLM (LoRA enabled, max rank {max_lora_rank}) …")
        server.start(base, served_model_name="base", max_lora_rank=max_lora_rank, max_loras=3, log_file=tmp / "vllm.log")
        out["vllm_startup_s"] = round(server.startup_s or 0, 1)
        progress(f"vLLM healthy after {out['vllm_startup_s']} s")

        # ---- throughput: vLLM server vs transformers on the same chats, with the adapter and without
        out["throughput"] = {}
        for variant, adapter_dir in ([("adapter", adapter)] if adapter else []) + [("base", None)]:
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
                    progress(f"  {variant}: {name} rep {r + 1}: {len(chats)} prompts in {times[name][-1]:.2f} s")
            vllm_s, tf_s = min(times["vllm"]), min(times["transformers"])
            agree = sum(a == b for a, b in zip(outputs["vllm"], outputs["transformers"], strict=True)) / len(chats)
            out["throughput"][variant] = {
                "vllm_server": {"seconds": round(vllm_s, 3), "all_seconds": [round(t, 2) for t in times["vllm"]],
                                "examples_per_s": round(len(chats) / vllm_s, 2), "concurrency": vb.concurrency,
                                "adapter_load_s": round(load_vllm, 3)},
                "transformers": {"seconds": round(tf_s, 3), "all_seconds": [round(t, 2) for t in times["transformers"]],
                                 "examples_per_s": round(len(chats) / tf_s, 2), "batch_size": tb.batch_size,
                                 "model_load_s": round(load_tf, 2)},
                "ratio_transformers_over_vllm": round(tf_s / vllm_s, 2),
                "same_outputs": round(agree, 3),
                "load_avg": _load(),
            }
            progress(f"throughput ({variant}): vLLM server {len(chats) / vllm_s:.1f} ex/s, transformers {len(chats) / tf_s:.1f} ex/s "
                     f"→ ratio {tf_s / vllm_s:.2f}; same outputs {agree:.0%}")
            del tb
            vb.close()

        # ---- the proxy in front of the same server: swap latency and per-request overhead
        proxy = ServingProxy(task=task, upstream=server.url, base_version="base", base_model="base",
                             production=Route("base", "base"), log_path=tmp / "serving" / "bench.jsonl", server_id="bench")
        httpd = make_http_server(proxy, "127.0.0.1", 0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = local_url(httpd)
        try:
            swaps = []
            if adapter is not None:
                for version, path in (("v1", str(adapter)), ("base", None), ("v1", str(adapter)), ("base", None), ("v1", str(adapter))):
                    res = proxy.route({"version": version, "adapter_path": path})
                    swaps.append({"to": version, "swap_ms": res["swap_ms"], "loaded": res["loaded"], "unloaded": res["unloaded"]})
                out["swap"] = {"each": swaps, "median_ms": round(statistics.median(s["swap_ms"] for s in swaps), 2)}
                progress(f"hot swap (load → route → unload): median {out['swap']['median_ms']} ms over {len(swaps)} swaps")
            from kaizen.tools.serve.hotswap import http_json

            model = proxy.production.model
            direct, via = [], []
            for i in range(requests + 2):
                chat = chats[i % len(chats)]
                for kind in (("direct", "proxy") if i % 2 == 0 else ("proxy", "direct")):
                    t0 = time.perf_counter()
                    if kind == "direct":
                        status, _ = http_json("POST", server.url + "/v1/chat/completions",
                                              {"model": model, "messages": chat, "temperature": 0, "max_tokens": MAX_NEW_TOKENS}, timeout=120)
                    else:
                        status, _ = http_json("POST", url + "/v1/chat/completions",
                                              {"model": task.name, "messages": chat[1:], "temperature": 0, "max_tokens": MAX_NEW_TOKENS},
                                              timeout=120)
                    dt = (time.perf_counter() - t0) * 1000
                    assert status == 200, status
                    if i >= 2:  # the first two pairs are warm-up
                        (direct if kind == "direct" else via).append(dt)
            lines = [json.loads(x) for x in proxy.log_path.read_text().splitlines()][2:]
            inner = [x["latency_ms"] - x["metadata"]["upstream_ms"] for x in lines]
            out["proxy_overhead"] = {
                "requests": len(via), "direct_median_ms": round(statistics.median(direct), 2),
                "proxy_median_ms": round(statistics.median(via), 2),
                "overhead_median_ms": round(statistics.median(via) - statistics.median(direct), 2),
                "direct_p90_ms": round(_pct(direct, 0.9), 2), "proxy_p90_ms": round(_pct(via, 0.9), 2),
                "in_proxy_median_ms": round(statistics.median(inner), 3),
                "note": "in_proxy: parse + render + routing inside the proxy (trace write with fsync comes after the response time it logs)",
                "load_avg": _load(),
            }
            progress(f"proxy overhead: median {out['proxy_overhead']['overhead_median_ms']} ms per request "
                     f"(direct {out['proxy_overhead']['direct_median_ms']} ms, via proxy {out['proxy_overhead']['proxy_median_ms']} ms)")
        finally:
            httpd.shutdown()
            httpd.server_close()
    finally:
        server.stop()
    out["load_avg_end"] = _load()
    dest = cache_dir() / "bench" / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    out["written_to"] = str(dest)
    return out
