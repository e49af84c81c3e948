"""``kaizen serve``'s processes: start vLLM (or attach to a running one), register the server, run the app.

    kaizen serve ──starts──▶ vLLM (own process group, 127.0.0.1, LoRA on)      or  --vllm-url: one already running
        │  ServerRow in the store (status, URLs, what it serves, admin token) ◀── promote/rollback find it there
        └─ uvicorn (thread) serving the Starlette app (:mod:`kaizen.workflows.serve.app`)

Order: the web socket is bound first (a taken ``--port`` fails in a second), the server row is
recorded as ``starting``, vLLM is started (40-70 s on a CPU) or checked, the production adapter (and
canary) are loaded, the app starts, the row turns ``running``; a promote that happened meanwhile is
caught up. SIGINT/SIGTERM (or ``stop_event``) stop the app — running requests finish — then vLLM (a
vLLM kaizen started; an attached one is left running, with the adapters this server loaded unloaded),
and mark the row ``stopped``.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, KaizenError, NotFoundError, ServingError
from kaizen.tools.store.tables import ServerRow, utcnow
from kaizen.workflows.serve.router import Route, ServingProxy
from kaizen.workflows.serve.server import AppServer

log = logging.getLogger(__name__)


def _vllm_dtype(ws: Any, dtype: str | None) -> str:
    if dtype:
        return dtype
    m = ws.settings.model
    mapping = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    if m.dtype in mapping:
        return mapping[m.dtype]
    return "auto" if m.device == "cuda" else "float32"


def attached_base_model(url: str) -> str:
    """The served name of the base model of the vLLM server at ``url`` (the model that is not an adapter)."""
    from kaizen.tools.serve import http

    status, payload = http.request_json("GET", url.rstrip("/") + "/v1/models", timeout=10)
    if status != 200 or not isinstance(payload, dict):
        raise ServingError(
            f"--vllm-url {url}: GET /v1/models answered HTTP {status}: {http.error_message(payload)}"
        )
    bases = [m["id"] for m in payload.get("data") or [] if isinstance(m, dict) and not m.get("parent")]
    if len(bases) != 1:
        raise ServingError(f"--vllm-url {url}: expected one base model, the server lists {bases or 'none'}")
    return bases[0]


def serve(
    ws: Any,
    task_name: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    vllm_port: int = 0,
    vllm_url: str | None = None,
    canary_version: str | None = None,
    canary_fraction: float = 0.0,
    canary_skill: int | None = None,
    log_path: Path | None = None,
    prompt_mode: str = "render",
    dtype: str | None = None,
    max_loras: int = 3,
    max_lora_rank: int | None = None,
    cpu_threads: int | None = None,
    max_model_len: int = 2048,
    startup_timeout_s: float = 600.0,
    ready: Callable[[dict[str, Any]], None] | None = None,
    stop_event: threading.Event | None = None,
    info: Callable[[str], None] = lambda m: None,
) -> dict[str, Any]:
    """Run ``kaizen serve`` until SIGINT/SIGTERM (or ``stop_event``); returns the final server record as a dict.

    ``vllm_url``: attach to that running vLLM server (started with ``--enable-lora`` and runtime LoRA
    updating) instead of starting one; it must serve the production version's base model.
    """
    from kaizen.tools.registry import base_of
    from kaizen.tools.serve.hotswap import route_body
    from kaizen.tools.serve.vllm_server import VLLMServer, find_vllm_python
    from kaizen.tools.skills import get_skill

    store = ws.store
    spec = store.get_task(task_name)
    alias = store.get_alias(task_name, "production")
    if alias is None:
        raise NotFoundError(
            f"task {task_name!r} has no production version: `kaizen models promote VERSION --task {task_name}`"
        )
    version = store.get_model_version(alias.model_version)
    base = base_of(store, version)

    def make_route(name: str, skill_v: int | None, base_model: str) -> Route:
        row = store.get_model_version(name)
        if base_of(store, row).name != base.name:
            raise ConfigError(
                f"{name} is built on base {base_of(store, row).name!r}, production on {base.name!r}: "
                "one server serves one base model"
            )
        skill = get_skill(store, task_name, skill_v) if skill_v is not None else None
        return Route(
            version=row.name,
            model=row.name if row.adapter_path else base_model,
            adapter_path=row.adapter_path,
            skill_version=skill_v,
            skill=skill,
        )

    if not 0.0 <= canary_fraction <= 1.0:
        raise ConfigError(f"--canary-fraction must be within [0, 1], got {canary_fraction}")
    vllm: VLLMServer | None = None
    if vllm_url:
        vllm_url = vllm_url.rstrip("/")
        base_model = attached_base_model(vllm_url)  # a clear error before anything is recorded
    else:
        python = find_vllm_python()  # the clear ToolUnavailableError before anything starts
        vllm, base_model = VLLMServer(python=python), base.name
    production = make_route(version.name, alias.skill_version, base_model)
    canary = (
        make_route(canary_version, canary_skill, base_model)
        if canary_version and canary_fraction > 0
        else None
    )
    log_path = Path(log_path) if log_path else ws.state / "serving" / f"{task_name}.jsonl"
    server_id = uuid.uuid4().hex[:12]
    token = secrets.token_urlsafe(24)
    # Placeholder upstream until vLLM is up; the socket is bound now so a taken --port fails in a second.
    proxy = ServingProxy(
        task=spec,
        upstream=vllm_url or "http://127.0.0.1:1",
        base_version=base.name,
        base_model=base_model,
        production=production,
        log_path=log_path,
        store=store,
        server_id=server_id,
        admin_token=token,
        prompt_mode=prompt_mode,
    )
    web = AppServer(proxy, host, port)
    row = ServerRow(
        id=server_id,
        task=task_name,
        status="starting",
        proxy_url=web.url,
        vllm_url=vllm_url or "",
        pid=os.getpid(),
        host=socket.gethostname(),
        base_version=base.name,
        model_version=production.version,
        skill_version=production.skill_version,
        log_path=str(log_path),
        admin_token=token,
    )
    store.save_server(row)

    def persist(px: ServingProxy) -> None:
        row.model_version, row.skill_version = px.production.version, px.production.skill_version
        row.canary = px.canary_state() or {}
        store.save_server(row)

    stop = stop_event or threading.Event()
    phase = {"running": False}

    def on_signal(*_: Any) -> None:
        stop.set()
        if not phase["running"]:  # still starting: interrupt vllm.start() instead of waiting for it
            raise KeyboardInterrupt

    old_handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, on_signal)
    try:
        started = time.monotonic()
        if vllm is not None:
            from kaizen.tools.train.spec import MAX_LORA_RANK
            from kaizen.tools.versions import version_paths

            max_lora_rank = max_lora_rank or MAX_LORA_RANK
            base_dir, _ = version_paths(ws, version)
            info(f"starting vLLM for {base.name} ({base_dir}) with LoRA (max rank {max_lora_rank}) …")
            vllm.start(
                base_dir,
                port=vllm_port,
                served_model_name=base.name,
                enable_lora=True,
                max_lora_rank=max_lora_rank,
                max_loras=max_loras,
                max_model_len=max_model_len,
                dtype=_vllm_dtype(ws, dtype),
                log_file=ws.artifact_dir("serving") / f"{task_name}-{server_id}-vllm.log",
                timeout_s=startup_timeout_s,
                # vLLM's CPU backend runs OpenMP on every core; on a CPU shared with other jobs its threads spin
                # against each other (measured: 0.3 s → 2-10 s per request); one thread keeps it steady.
                cpu_threads=cpu_threads,
            )
            proxy.set_upstream(vllm.url)
            row.vllm_url = vllm.url
        else:
            info(f"attached to vLLM at {vllm_url} (base model served as {base_model!r})")
        if stop.is_set():
            raise KeyboardInterrupt
        proxy.load(production)  # a ProxyError (a KaizenError) with vLLM's message if it refuses
        if canary is not None:
            proxy.load(canary)
            proxy.canary, proxy.canary_fraction = canary, canary_fraction
        startup_s = time.monotonic() - started
        proxy.on_change = persist
        web.start()
        row.status, row.canary = "running", proxy.canary_state() or {}
        store.save_server(row)
        phase["running"] = True
        # A promote that ran while vLLM was starting saw no live server and only moved the alias: catch up.
        cur = store.get_alias(task_name, "production")
        if cur is not None and (cur.model_version, cur.skill_version) != (
            proxy.production.version,
            proxy.production.skill_version,
        ):
            info(f"production moved to {cur.model_version} during start-up: switching")
            try:
                proxy.route(route_body(store, cur.model_version, cur.skill_version))
            except KaizenError as exc:  # keep serving what was loaded; say so
                info(f"  could not switch: {exc}")
        ready_info = {
            "server_id": server_id,
            "task": task_name,
            "url": row.proxy_url,
            "base_url": row.proxy_url + "/v1",
            "model": task_name,
            "vllm_url": proxy.upstream,
            "attached": vllm is None,
            "version": proxy.production.version,
            "skill": proxy.production.skill_version,
            "canary": proxy.canary_state(),
            "log": str(log_path),
            "feedback_log": str(proxy.feedback_path),
            "startup_s": round(startup_s, 1),
            "vllm_startup_s": round((vllm.startup_s or 0) if vllm else 0, 1),
            "vllm_log": str(vllm.log_file) if vllm else None,
            "pid": os.getpid(),
        }
        if ready:
            ready(ready_info)
        while not stop.wait(1.0):
            if vllm is not None and not vllm.running:
                raise KaizenError(f"the vLLM server exited; log {vllm.log_file}")
            if not web.running:
                raise KaizenError(f"the web server on {row.proxy_url} stopped")
        row.status = "stopped"
        return ready_info | {"status": "stopped"}
    except KeyboardInterrupt:
        row.status = "stopped"
        return {"server_id": server_id, "status": "stopped"}
    except BaseException as exc:
        row.status, row.error = "failed", str(exc)[:2000]
        raise
    finally:
        web.stop()  # running requests finish first
        if vllm is not None:
            vllm.stop()
        elif proxy.loaded:
            proxy.unload_all()  # leave an attached vLLM as it was found
        row.stopped_at = utcnow()
        if row.status not in ("stopped", "failed"):
            row.status = "stopped"
        try:
            store.save_server(row)
        except Exception:  # shutting down: the process must still exit
            log.exception("serve: could not record server %s as %s", server_id, row.status)
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
