"""``kaizen serve``: vLLM's OpenAI-compatible server behind kaizen's own small proxy.

    client ──/v1/chat/completions model=<task>──▶ kaizen proxy ──model=<version>──▶ vLLM (127.0.0.1)
                                                    │  render(task, skill, messages)
                                                    │  one trace line per request ──▶ <task>.jsonl
    promote/rollback ──/admin/route──▶ proxy: load new adapter → route <task> to it → unload old

* **Stable name.** vLLM has no aliases: each LoRA adapter is served under its own name (kaizen uses
  the version name). Clients always ask for ``model=<task>``; the proxy maps it to the version in
  ``production`` (and, with a canary, a fraction of requests to the canary version).
* **Prompt.** In ``render`` mode (default) every request goes through ``kaizen.tools.schema.render`` with
  the production skill (if the alias has one) — the same prompt contract training and evaluation
  use. The caller's own ``system``/``developer`` messages are therefore *replaced* by the skill's (or
  the task's) system prompt; the conversation turns are kept. ``passthrough`` mode forwards the
  caller's messages unchanged (and so ignores skills).
* **Logging.** Each answered request is one kaizen trace JSONL line (``TraceIn``, validated before
  it is written, flushed and fsynced) — the messages *as the caller sent them*, the output, the
  version and skill that answered, latency and token counts. ``kaizen ingest`` and ``kaizen tick
  --source`` read the file unchanged. The trace id is the completion ``id`` and the
  ``x-kaizen-trace-id`` header.
* **Feedback.** ``POST /feedback {trace_id, verdict, correction?, reason?, source?}``: attached in the
  store when the trace was already ingested, else appended to ``<task>.feedback.jsonl`` next to the
  log (the scheduled loop reads ``*.feedback.jsonl`` after the traces).
* **Admin.** ``POST /admin/route`` and ``POST /admin/canary`` need the server's admin token (a random
  secret recorded in the store's ``server`` row: whoever can read the store may promote anyway).

Standard library HTTP only (``http.server.ThreadingHTTPServer``, ``http.client``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kaizen.tools.errors import ConfigError, KaizenError, NotFoundError
from kaizen.tools.schema import FeedbackIn, Skill, TaskSpec, TraceIn, render
from kaizen.tools.store import Store
from kaizen.tools.store.tables import ServerRow, utcnow
from pydantic import ValidationError

ROLES = ("system", "user", "assistant", "tool", "developer")
MAX_BODY_BYTES = 8 * 1024 * 1024
UPSTREAM_TIMEOUT_S = 600.0
DRAIN_TIMEOUT_S = 30.0
KNOWN_IDS_KEPT = 1_000_000
PROMPT_MODES = ("render", "passthrough")


class ProxyError(Exception):
    """An HTTP error answer: status and message (OpenAI error shape)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclass(frozen=True)
class Route:
    """Where the task's name points: a version, the upstream model name serving it, its skill."""

    version: str
    model: str  # the name vLLM knows: the version name for an adapter, the base's served name for a base
    adapter_path: str | None = None
    skill_version: int | None = None
    skill: Skill | None = None

    def brief(self) -> dict[str, Any]:
        return {"version": self.version, "skill": self.skill_version, "upstream_model": self.model}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _text(content: Any) -> str:
    """Message content as text (content parts joined; None → "")."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text"))
    return str(content)


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """The request's messages, checked (400 on anything the model or the log could not take)."""
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "'messages' must be a non-empty list of {role, content} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ProxyError(400, f"messages.{i}: expected an object with 'role' and 'content'")
        if m.get("role") not in ROLES:
            raise ProxyError(400, f"messages.{i}.role: {m.get('role')!r} is not one of {', '.join(ROLES)}")
        c = m.get("content")
        if c is not None and not isinstance(c, str | list):
            raise ProxyError(400, f"messages.{i}.content: expected a string or a list of content parts")
    return messages


class ServingProxy:
    """The routing table, the trace log and the feedback sink of one ``kaizen serve``; HTTP-agnostic.

    ``upstream`` is the vLLM server's base URL (``http://127.0.0.1:PORT``). ``store`` is optional (tests
    without a workspace): without it feedback always goes to the feedback file and skills cannot be
    looked up by number.
    """

    def __init__(self, *, task: TaskSpec, upstream: str, base_version: str, base_model: str, production: Route,
                 log_path: Path, store: Store | None = None, server_id: str = "", admin_token: str = "",
                 prompt_mode: str = "render", rng: random.Random | None = None, fsync: bool = True):
        if prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"unknown prompt mode {prompt_mode!r}: use {' or '.join(PROMPT_MODES)}")
        self.task = task
        self.set_upstream(upstream)
        self.base_version, self.base_model = base_version, base_model
        self.production, self.canary, self.canary_fraction = production, None, 0.0
        self.log_path = Path(log_path)
        self.feedback_path = self.log_path.with_name(self.log_path.name.removesuffix(".jsonl") + ".feedback.jsonl")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.store, self.server_id, self.admin_token = store, server_id, admin_token
        self.prompt_mode, self.fsync = prompt_mode, fsync
        self.rng = rng or random.Random()
        self.loaded: set[str] = set()  # adapters this proxy loaded into vLLM (by upstream model name)
        self._state = threading.Lock()  # routing table
        self._admin = threading.Lock()  # one route/canary change at a time
        self._log = threading.Lock()
        self._inflight: dict[str, int] = {}
        self._ids: set[str] = set()
        self._ids_order: deque[str] = deque()
        self.on_change: Callable[[ServingProxy], None] | None = None  # persists the routing table (the ServerRow)

    # ------------------------------------------------------------------ upstream HTTP

    def set_upstream(self, url: str) -> None:
        self.upstream = url.rstrip("/")
        u = urlsplit(self.upstream)
        self._up_host, self._up_port = u.hostname or "127.0.0.1", u.port or 80

    def upstream_request(self, method: str, path: str, body: Any = None, timeout: float = UPSTREAM_TIMEOUT_S) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self._up_host, self._up_port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        except OSError as exc:
            raise ProxyError(502, f"vLLM server at {self.upstream} unreachable: {exc}", "upstream_error") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw.strip() else None
        except ValueError:
            return resp.status, raw

    def upstream_healthy(self) -> bool:
        try:
            return self.upstream_request("GET", "/health", timeout=3)[0] == 200
        except ProxyError:
            return False

    # ------------------------------------------------------------------ routing

    def choose(self) -> tuple[Route, bool]:
        """The route for one request: production, or the canary with probability ``canary_fraction``."""
        with self._state:
            prod, canary, frac = self.production, self.canary, self.canary_fraction
            is_canary = canary is not None and frac > 0 and self.rng.random() < frac
            route = canary if is_canary else prod
            self._inflight[route.model] = self._inflight.get(route.model, 0) + 1
        return route, is_canary

    def release(self, route: Route) -> None:
        with self._state:
            self._inflight[route.model] = max(0, self._inflight.get(route.model, 0) - 1)

    def _drain(self, model: str, timeout: float = DRAIN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while self._inflight.get(model, 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.02)

    def _skill(self, version: int | None) -> Skill | None:
        if version is None:
            return None
        if self.store is None:
            raise ProxyError(400, "this server has no store: it cannot look up skill versions")
        from kaizen.tools.skills import get_skill

        try:
            return get_skill(self.store, self.task.name, int(version))
        except NotFoundError as exc:
            raise ProxyError(404, str(exc)) from None

    def _make_route(self, body: dict[str, Any]) -> Route:
        version = body.get("version")
        if not isinstance(version, str) or not version:
            raise ProxyError(400, "'version' must be a model version name")
        adapter = body.get("adapter_path")
        if adapter is not None and not isinstance(adapter, str):
            raise ProxyError(400, "'adapter_path' must be a directory path or null (a base version)")
        skill_v = body.get("skill")
        if skill_v is not None and (isinstance(skill_v, bool) or not isinstance(skill_v, int)):
            raise ProxyError(400, "'skill' must be a skill version number or null")
        base = body.get("base_version")
        if base is not None and base != self.base_version:
            raise ProxyError(409, f"{version} is built on base {base!r} but this server serves base {self.base_version!r}: "
                                  "start another `kaizen serve` for it")
        if adapter is None and version != self.base_version:
            raise ProxyError(409, f"{version} is a full model, not an adapter of {self.base_version!r}: this server cannot switch to it")
        model = version if adapter else self.base_model
        return Route(version=version, model=model, adapter_path=adapter, skill_version=skill_v, skill=self._skill(skill_v))

    def load(self, route: Route) -> str | None:
        """Make vLLM serve ``route``'s adapter (no-op for a base or an adapter already loaded)."""
        if not route.adapter_path or route.model in self.loaded:
            return None
        status, payload = self.upstream_request("POST", "/v1/load_lora_adapter",
                                                {"lora_name": route.model, "lora_path": str(Path(route.adapter_path).resolve())})
        if status != 200:
            from kaizen.tools.serve.hotswap import error_message

            msg = error_message(payload)
            if "already been loaded" not in msg:
                raise ProxyError(502, f"vLLM could not load adapter {route.model!r} from {route.adapter_path}: {msg}", "upstream_error")
        self.loaded.add(route.model)
        return route.model

    def _unload_unused(self) -> tuple[list[str], list[str]]:
        """Unload adapters neither production nor the canary uses, after their requests finish."""
        keep = {self.production.model} | ({self.canary.model} if self.canary else set())
        done, errors = [], []
        for name in sorted(self.loaded - keep):
            self._drain(name)
            status, payload = self.upstream_request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
            self.loaded.discard(name)
            if status == 200:
                done.append(name)
            else:
                from kaizen.tools.serve.hotswap import error_message

                errors.append(f"{name}: {error_message(payload)}")
        return done, errors

    def route(self, body: dict[str, Any]) -> dict[str, Any]:
        """Serve (version, skill) under the task's name: load → route → unload the old adapter."""
        started = time.perf_counter()
        with self._admin:
            new = self._make_route(body)
            old = self.production
            if (old.version, old.skill_version) == (new.version, new.skill_version):
                return {"changed": False, "production": new.brief(), "previous": {"version": old.version, "skill": old.skill_version},
                        "swap_ms": 0.0, "loaded": None, "unloaded": []}
            loaded = self.load(new)
            with self._state:
                self.production = new
            self._changed()
            unloaded, errors = self._unload_unused()
        out = {"changed": True, "production": new.brief(), "previous": {"version": old.version, "skill": old.skill_version},
               "loaded": loaded, "unloaded": unloaded, "swap_ms": round((time.perf_counter() - started) * 1000, 2)}
        if errors:
            out["unload_errors"] = errors
        return out

    def set_canary(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send ``fraction`` of requests to (version, skill); ``version`` null or fraction 0 stops the canary."""
        fraction = body.get("fraction", 0.0)
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
            raise ProxyError(400, "'fraction' must be a number within [0, 1]")
        with self._admin:
            if not body.get("version") or fraction == 0:
                with self._state:
                    self.canary, self.canary_fraction = None, 0.0
            else:
                route = self._make_route(body)
                self.load(route)
                with self._state:
                    self.canary, self.canary_fraction = route, float(fraction)
            self._changed()
            unloaded, errors = self._unload_unused()
        return {"canary": self.canary_state(), "unloaded": unloaded, **({"unload_errors": errors} if errors else {})}

    def canary_state(self) -> dict[str, Any] | None:
        c = self.canary
        return None if c is None else {"version": c.version, "skill": c.skill_version, "fraction": self.canary_fraction}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def state(self) -> dict[str, Any]:
        return {"task": self.task.name, "production": self.production.brief(), "canary": self.canary_state(),
                "base_version": self.base_version, "prompt_mode": self.prompt_mode, "log_path": str(self.log_path),
                "feedback_path": str(self.feedback_path), "server_id": self.server_id}

    # ------------------------------------------------------------------ requests

    def prepare(self, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Check a chat request; returns (upstream body without model, the caller's messages as text)."""
        if not isinstance(body, dict):
            raise ProxyError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model not in (None, "", self.task.name):
            raise ProxyError(404, f"The model `{model}` does not exist: this server serves task {self.task.name!r} as model "
                                  f"{self.task.name!r}", "model_not_found")
        messages = validate_messages(body.get("messages"))
        if body.get("n") not in (None, 1):
            raise ProxyError(400, "'n' > 1 is not supported by the kaizen proxy (one logged output per request)")
        logged = [{"role": m["role"], "content": _text(m.get("content"))} for m in messages]
        return {k: v for k, v in body.items() if k not in ("model", "messages")}, logged

    def upstream_messages(self, route: Route, messages: list[dict[str, Any]], raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.prompt_mode == "passthrough":
            return raw
        return render(self.task, route.skill, messages)

    def new_trace_id(self) -> str:
        return "kz-" + uuid.uuid4().hex

    def remember(self, trace_id: str) -> None:
        with self._log:
            self._ids.add(trace_id)
            self._ids_order.append(trace_id)
            while len(self._ids_order) > KNOWN_IDS_KEPT:
                self._ids.discard(self._ids_order.popleft())

    def write_trace(self, line: dict[str, Any]) -> bool:
        """Append one trace line if it is a valid ``TraceIn`` (flush + fsync); False when it is not."""
        try:
            TraceIn.model_validate(line)
        except ValidationError as exc:
            print(f"kaizen serve: trace {line.get('id')} not logged: {exc.errors(include_url=False)[:1]}", file=sys.stderr)
            return False
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._log:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            self._ids.add(line["id"])
            self._ids_order.append(line["id"])
        return True

    def trace_line(self, *, trace_id: str, route: Route, is_canary: bool, messages: list[dict[str, Any]], output: str,
                   latency_ms: float, upstream_ms: float, usage: dict[str, Any] | None, finish_reason: str | None,
                   stream: bool) -> dict[str, Any]:
        usage = usage or {}
        return {
            "id": trace_id, "timestamp": _now_iso(), "task": self.task.name, "model_version": route.version,
            "messages": messages, "output": output, "latency_ms": round(latency_ms, 2),
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "metadata": {
                "skill_version": route.skill_version, "canary": is_canary, "prompt": self.prompt_mode,
                "finish_reason": finish_reason, "upstream_ms": round(upstream_ms, 2), "stream": stream,
                "server": self.server_id,
            },
        }

    def known_trace(self, trace_id: str) -> bool:
        """Served by this proxy: remembered, or found in the log file (after a restart)."""
        if trace_id in self._ids:
            return True
        if not self.log_path.exists():
            return False
        needle = json.dumps({"id": trace_id})[:-1].encode()  # '{"id": "kz-…"' — how every line starts
        with open(self.log_path, "rb") as f:
            for line in f:
                if line.startswith(needle):
                    return True
        return False

    def feedback(self, body: Any) -> dict[str, Any]:
        """Attach feedback in the store if the trace is there, else append it to the feedback file."""
        if not isinstance(body, dict):
            raise ProxyError(400, "the request body must be a JSON object {trace_id, verdict, correction?, reason?, source?}")
        try:
            fb = FeedbackIn.model_validate(body)
        except ValidationError as exc:
            from kaizen.tools.logs.base import explain

            fld, problem = explain(exc)
            raise ProxyError(400, f"{fld}: {problem}") from None
        if fb.verdict == "fail" and fb.correction is not None and not fb.correction.strip():
            raise ProxyError(400, "correction: an empty correction; leave it out if there is none")
        if self.store is not None and self.store.traces(self.task.name, ids=[fb.trace_id]):
            stats = self.store.add_feedback([(1, fb)], path=f"kaizen serve {self.server_id} POST /feedback")
            return {"trace_id": fb.trace_id, "stored": "store", "added": stats.feedback_added == 1}
        if not self.known_trace(fb.trace_id):
            raise ProxyError(404, f"unknown trace id {fb.trace_id!r}: feedback is taken for traces this server answered "
                                  f"(logged in {self.log_path}) or traces already in the store", "not_found")
        line = json.dumps(fb.model_dump(exclude_none=True), ensure_ascii=False) + "\n"
        with self._log:
            with open(self.feedback_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
        return {"trace_id": fb.trace_id, "stored": "file", "path": str(self.feedback_path)}


# ---------------------------------------------------------------------------------- HTTP layer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kaizen-serve"
    proxy: ServingProxy  # set on the subclass made by make_http_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if os.environ.get("KAIZEN_SERVE_ACCESS_LOG"):
            super().log_message(format, *args)

    # --------------------------------------------------------------- plumbing
    def _read_json(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY_BYTES:
            raise ProxyError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            raise ProxyError(400, "empty request body: expected a JSON object")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ProxyError(400, f"the request body is not valid JSON: {exc}") from None

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, exc: ProxyError) -> None:
        self._send(exc.status, {"error": {"message": exc.message, "type": exc.kind, "code": exc.status}})

    def _admin(self) -> None:
        token = self.proxy.admin_token
        if token and not secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
            raise ProxyError(401, "admin endpoints need the server's token (Authorization: Bearer …, from the store's server row)",
                             "unauthorized")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        self._streaming = False
        try:
            if method == "GET" and path == "/health":
                ok = self.proxy.upstream_healthy()
                self._send(200 if ok else 503, {"status": "ok" if ok else "upstream down", **self.proxy.state()})
            elif method == "GET" and path == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": self.proxy.task.name, "object": "model", "created": 0, "owned_by": "kaizen",
                     "kaizen": {"production": self.proxy.production.brief(), "canary": self.proxy.canary_state()}}]})
            elif method == "POST" and path == "/v1/chat/completions":
                self._chat(self._read_json())
            elif method == "POST" and path == "/feedback":
                self._send(200, self.proxy.feedback(self._read_json()))
            elif method == "POST" and path == "/admin/route":
                self._admin()
                self._send(200, self.proxy.route(self._need_obj(self._read_json())))
            elif method == "POST" and path == "/admin/canary":
                self._admin()
                self._send(200, self.proxy.set_canary(self._need_obj(self._read_json())))
            elif method == "GET" and path == "/admin/state":
                self._admin()
                self._send(200, self.proxy.state() | {"loaded": sorted(self.proxy.loaded)})
            else:
                raise ProxyError(404, f"{method} {path}: not served here (POST /v1/chat/completions, GET /v1/models, "
                                      "GET /health, POST /feedback, POST /admin/route|canary)", "not_found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
            if getattr(self, "_streaming", False):  # headers already sent: all we can do is end the connection
                self.close_connection = True
                return
            err = exc if isinstance(exc, ProxyError) else ProxyError(500, f"{type(exc).__name__}: {exc}", "server_error")
            if not isinstance(exc, ProxyError | KaizenError):
                import traceback

                traceback.print_exc(file=sys.stderr)
            self._error(err)

    @staticmethod
    def _need_obj(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProxyError(400, "the request body must be a JSON object")
        return body

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # --------------------------------------------------------------- chat
    def _chat(self, body: Any) -> None:
        p = self.proxy
        started = time.perf_counter()
        params, logged = p.prepare(body)
        route, is_canary = p.choose()
        try:
            upstream_body = {**params, "model": route.model, "messages": p.upstream_messages(route, logged, body["messages"])}
            trace_id = p.new_trace_id()
            headers = {"x-kaizen-trace-id": trace_id, "x-kaizen-model-version": route.version,
                       "x-kaizen-canary": "true" if is_canary else "false"}
            if params.get("stream"):
                self._stream(upstream_body, trace_id, route, is_canary, logged, headers, started)
                return
            t0 = time.perf_counter()
            status, payload = p.upstream_request("POST", "/v1/chat/completions", upstream_body)
            upstream_ms = (time.perf_counter() - t0) * 1000
            if status != 200 or not isinstance(payload, dict):
                self._send(status if status != 200 else 502, payload if isinstance(payload, dict) else
                           {"error": {"message": str(payload), "type": "upstream_error", "code": status}})
                return
            choice = (payload.get("choices") or [{}])[0]
            output = _text((choice.get("message") or {}).get("content"))
            payload["id"], payload["model"] = trace_id, p.task.name
            line = p.trace_line(trace_id=trace_id, route=route, is_canary=is_canary, messages=logged, output=output,
                                latency_ms=(time.perf_counter() - started) * 1000, upstream_ms=upstream_ms,
                                usage=payload.get("usage"), finish_reason=choice.get("finish_reason"), stream=False)
            headers["x-kaizen-logged"] = "true" if p.write_trace(line) else "false"
            self._send(200, payload, headers)
        finally:
            p.release(route)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, body: dict[str, Any], trace_id: str, route: Route, is_canary: bool, logged: list[dict[str, Any]],
                headers: dict[str, str], started: float) -> None:
        """Relay vLLM's server-sent events, rewriting id/model, and log the assembled output at the end."""
        p = self.proxy
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        conn = http.client.HTTPConnection(p._up_host, p._up_port, timeout=UPSTREAM_TIMEOUT_S)
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raw = resp.read().decode(errors="replace")
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = {"error": {"message": raw, "type": "upstream_error", "code": resp.status}}
                self._send(resp.status, payload)
                return
            self._streaming = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            parts: list[str] = []
            usage, finish, done = None, None, False
            while True:
                raw_line = resp.readline()
                if not raw_line:
                    break
                line = raw_line.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                event["id"], event["model"] = trace_id, p.task.name
                if event.get("usage"):
                    usage = event["usage"]
                for ch in event.get("choices") or []:
                    if ch.get("index", 0) == 0:
                        parts.append(_text((ch.get("delta") or {}).get("content")))
                        finish = ch.get("finish_reason") or finish
                if not wants_usage:
                    event.pop("usage", None)
                    if not event.get("choices"):
                        continue
                self._chunk(b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n")
            # Logged before the stream ends: once a client has seen the end, its trace id takes feedback.
            upstream_ms = (time.perf_counter() - t0) * 1000
            p.write_trace(p.trace_line(trace_id=trace_id, route=route, is_canary=is_canary, messages=logged, output="".join(parts),
                                       latency_ms=(time.perf_counter() - started) * 1000, upstream_ms=upstream_ms, usage=usage,
                                       finish_reason=finish, stream=True))
            if done:
                self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except OSError as exc:
            if isinstance(exc, BrokenPipeError | ConnectionResetError):
                return  # the client went away: nothing is logged for a cut-off answer
            raise ProxyError(502, f"vLLM server at {p.upstream} unreachable: {exc}", "upstream_error") from None
        finally:
            conn.close()


def make_http_server(proxy: ServingProxy, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threading HTTP server for ``proxy`` bound to (host, port); port 0 picks a free one."""
    handler = type("KaizenProxyHandler", (Handler,), {"proxy": proxy})
    try:
        httpd = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc} (pick another --port)") from None
    httpd.daemon_threads = True
    return httpd


def local_url(httpd: ThreadingHTTPServer) -> str:
    host, port = httpd.server_address[:2]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in str(host):
        host = f"[{host}]"
    return f"http://{host}:{port}"


# ---------------------------------------------------------------------------------- kaizen serve


def _vllm_dtype(ws: Any, dtype: str | None) -> str:
    if dtype:
        return dtype
    m = ws.settings.model
    mapping = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    if m.dtype in mapping:
        return mapping[m.dtype]
    return "auto" if m.device == "cuda" else "float32"


def serve(ws: Any, task_name: str, *, host: str = "127.0.0.1", port: int = 8000, vllm_port: int = 0,
          canary_version: str | None = None, canary_fraction: float = 0.0, canary_skill: int | None = None,
          log_path: Path | None = None, prompt_mode: str = "render", dtype: str | None = None, max_loras: int = 3,
          max_lora_rank: int | None = None, cpu_threads: int | None = None, max_model_len: int = 2048,
          startup_timeout_s: float = 600.0, ready: Callable[[dict[str, Any]], None] | None = None,
          stop_event: threading.Event | None = None, info: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run ``kaizen serve`` until SIGINT/SIGTERM (or ``stop_event``); returns the final server record as a dict."""
    from kaizen.tools.registry import base_of
    from kaizen.tools.serve.vllm_server import VLLMServer, find_vllm_python
    from kaizen.tools.skills import get_skill
    from kaizen.tools.train.spec import MAX_LORA_RANK
    from kaizen.tools.versions import version_paths

    store = ws.store
    spec = store.get_task(task_name)
    alias = store.get_alias(task_name, "production")
    if alias is None:
        raise NotFoundError(f"task {task_name!r} has no production version: `kaizen models promote VERSION --task {task_name}`")
    version = store.get_model_version(alias.model_version)
    base = base_of(store, version)
    base_dir, _ = version_paths(ws, version)

    def make_route(name: str, skill_v: int | None) -> Route:
        row = store.get_model_version(name)
        if base_of(store, row).name != base.name:
            raise ConfigError(f"{name} is built on base {base_of(store, row).name!r}, production on {base.name!r}: "
                              "one server serves one base model")
        skill = get_skill(store, task_name, skill_v) if skill_v is not None else None
        return Route(version=row.name, model=row.name if row.adapter_path else base.name, adapter_path=row.adapter_path,
                     skill_version=skill_v, skill=skill)

    if not 0.0 <= canary_fraction <= 1.0:
        raise ConfigError(f"--canary-fraction must be within [0, 1], got {canary_fraction}")
    production = make_route(version.name, alias.skill_version)
    canary = make_route(canary_version, canary_skill) if canary_version and canary_fraction > 0 else None
    python = find_vllm_python()  # the clear ToolUnavailableError before anything starts
    max_lora_rank = max_lora_rank or MAX_LORA_RANK
    if cpu_threads:
        # vLLM's CPU backend runs OpenMP on every core; on a CPU shared with other jobs its threads spin
        # against each other (measured: 0.3 s → 2-10 s per request); one thread keeps it steady.
        os.environ["OMP_NUM_THREADS"] = str(cpu_threads)
    log_path = Path(log_path) if log_path else ws.state / "serving" / f"{task_name}.jsonl"
    server_id = uuid.uuid4().hex[:12]
    token = secrets.token_urlsafe(24)
    vllm = VLLMServer(python=python)
    # Placeholder upstream until vLLM is up; the socket is bound now so a taken --port fails in a second.
    proxy = ServingProxy(task=spec, upstream="http://127.0.0.1:1", base_version=base.name, base_model=base.name,
                         production=production, log_path=log_path, store=store, server_id=server_id,
                         admin_token=token, prompt_mode=prompt_mode)
    httpd = make_http_server(proxy, host, port)
    row = ServerRow(id=server_id, task=task_name, status="starting", proxy_url=local_url(httpd), pid=os.getpid(),
                    host=socket.gethostname(), base_version=base.name, model_version=production.version,
                    skill_version=production.skill_version, log_path=str(log_path), admin_token=token)
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
    thread = None
    try:
        info(f"starting vLLM for {base.name} ({base_dir}) with LoRA (max rank {max_lora_rank}) …")
        started = time.monotonic()
        vllm.start(base_dir, port=vllm_port, served_model_name=base.name, enable_lora=True, max_lora_rank=max_lora_rank,
                   max_loras=max_loras, max_model_len=max_model_len, dtype=_vllm_dtype(ws, dtype),
                   log_file=ws.artifact_dir("serving") / f"{task_name}-{server_id}-vllm.log", timeout_s=startup_timeout_s)
        proxy.set_upstream(vllm.url)
        row.vllm_url = vllm.url
        if stop.is_set():
            raise KeyboardInterrupt
        try:
            proxy.load(production)
            if canary is not None:
                proxy.load(canary)
                proxy.canary, proxy.canary_fraction = canary, canary_fraction
        except ProxyError as exc:
            from kaizen.tools.serve.hotswap import ServingError

            raise ServingError(exc.message) from None
        startup_s = time.monotonic() - started
        proxy.on_change = persist
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="kaizen-serve", daemon=True)
        thread.start()
        row.status, row.canary = "running", proxy.canary_state() or {}
        store.save_server(row)
        phase["running"] = True
        # A promote that ran while vLLM was starting saw no live server and only moved the alias: catch up.
        cur = store.get_alias(task_name, "production")
        if cur is not None and (cur.model_version, cur.skill_version) != (proxy.production.version, proxy.production.skill_version):
            from kaizen.tools.serve.hotswap import route_body

            info(f"production moved to {cur.model_version} during start-up: switching")
            try:
                proxy.route(route_body(store, cur.model_version, cur.skill_version))
            except ProxyError as exc:  # keep serving what was loaded; say so
                info(f"  could not switch: {exc.message}")
        ready_info = {"server_id": server_id, "task": task_name, "url": row.proxy_url, "base_url": row.proxy_url + "/v1",
                      "model": task_name, "vllm_url": vllm.url, "version": proxy.production.version,
                      "skill": proxy.production.skill_version, "canary": proxy.canary_state(), "log": str(log_path),
                      "feedback_log": str(proxy.feedback_path), "startup_s": round(startup_s, 1),
                      "vllm_startup_s": round(vllm.startup_s or 0, 1), "vllm_log": str(vllm.log_file), "pid": os.getpid()}
        if ready:
            ready(ready_info)
        while not stop.wait(1.0):
            if not vllm.running:
                raise KaizenError(f"the vLLM server exited; log {vllm.log_file}")
        row.status = "stopped"
        return ready_info | {"status": "stopped"}
    except KeyboardInterrupt:
        row.status = "stopped"
        return {"server_id": server_id, "status": "stopped"}
    except BaseException as exc:
        row.status, row.error = "failed", str(exc)[:2000]
        raise
    finally:
        if thread is not None:
            httpd.shutdown()
        httpd.server_close()
        vllm.stop()
        row.stopped_at = utcnow()
        if row.status not in ("stopped", "failed"):
            row.status = "stopped"
        try:
            store.save_server(row)
        except Exception:  # noqa: BLE001 - shutting down: the process must still exit
            pass
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
