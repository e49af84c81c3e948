"""The web side of ``kaizen serve``: a Starlette app on uvicorn in front of vLLM.

Endpoints (OpenAI error shape ``{"error": {"message", "type", "code"}}`` for every error answer):

* ``POST /v1/chat/completions`` — ``model=<task>``; routed, rendered and relayed to vLLM
  (:mod:`~kaizen.workflows.serve.router`), streamed (server-sent events) or not. Each answered request
  is one trace line (:mod:`~kaizen.workflows.serve.tracelog`) with the version that answered it, written
  (fsynced) *before* the answer leaves: a JSON answer after the line is written, a stream before its
  final ``data: [DONE]``. So once a client has an answer, its trace id (the completion ``id`` and the
  ``x-kaizen-trace-id`` header) takes feedback. A stream the client cuts off is not logged.
* ``GET /v1/models`` (the task's name), ``GET /health`` (503 while vLLM does not answer).
* ``POST /feedback {trace_id, verdict, correction?, reason?, source?}``.
* ``POST /admin/route``, ``POST /admin/canary``, ``GET /admin/state`` — need the server's admin token (a
  random secret recorded in the store's ``server`` row: whoever can read the store may promote anyway).

The request path is asynchronous (one ``httpx.AsyncClient`` to vLLM per app, from
:mod:`kaizen.tools.serve.http`); what blocks — trace and feedback writes with fsync, the store, admin
calls that load adapters and drain requests — runs in worker threads. ``AppServer``
(:mod:`kaizen.workflows.serve.server`) runs the app on uvicorn in a background thread, on a socket bound
when it is made (so a taken port fails at once).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as Endpoint
from starlette.types import Receive, Scope, Send

from kaizen.tools.errors import KaizenError, ProxyError
from kaizen.tools.serve import http
from kaizen.workflows.serve.router import Route, ServingProxy, text_of

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
UPSTREAM_TIMEOUT_S = 600.0
ENDPOINTS = "POST /v1/chat/completions, GET /v1/models, GET /health, POST /feedback, POST /admin/route|canary"


def error_response(exc: ProxyError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": exc.message, "type": exc.kind, "code": exc.status}}, exc.status, headers=headers
    )


def _json_errors(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """One bad request must not take the server down: errors become OpenAI-shaped JSON answers."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except ProxyError as exc:
            return error_response(exc)
        except KaizenError as exc:
            return error_response(ProxyError(500, str(exc), "server_error"))
        except Exception as exc:  # logged with its traceback, answered as a 500
            log.exception("serve: %s %s failed", request.method, request.url.path)
            return error_response(ProxyError(500, f"{type(exc).__name__}: {exc}", "server_error"))

    return endpoint


async def read_json(request: Request) -> Any:
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise ProxyError(413, f"request body over {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ProxyError(413, f"request body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        raise ProxyError(400, "empty request body: expected a JSON object")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProxyError(400, f"the request body is not valid JSON: {exc}") from None


def _need_obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    return body


class _Flight:
    """One streamed answer's resources: its in-flight count on the route and the upstream response."""

    def __init__(self, proxy: ServingProxy, route: Route, upstream: httpx.Response):
        self.proxy, self.route, self.upstream, self.closed = proxy, route, upstream, False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.release(self.route)
        with anyio.CancelScope(shield=True):
            await self.upstream.aclose()


class _RelayResponse(StreamingResponse):
    """A stream whose flight is closed however it ends: finished, cut off by the client, or never started."""

    def __init__(self, content: AsyncIterator[bytes], flight: _Flight, headers: dict[str, str]):
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", **headers}
        )
        self.flight = flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self.flight.close()


def make_app(proxy: ServingProxy) -> Starlette:
    """The Starlette app serving ``proxy``: its routing table, trace log and feedback sink."""
    p = proxy
    upstream: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        upstream["client"] = http.async_client(timeout=UPSTREAM_TIMEOUT_S)
        try:
            yield
        finally:
            await upstream.pop("client").aclose()

    def admin(request: Request) -> None:
        token = p.admin_token
        if token and not secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            raise ProxyError(
                401,
                "admin endpoints need the server's token (Authorization: Bearer …, from the store's server row)",
                "unauthorized",
            )

    async def post_upstream(body: dict[str, Any], *, stream: bool) -> httpx.Response:
        client = upstream["client"]
        req = client.build_request(
            "POST",
            p.upstream + "/v1/chat/completions",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            return await client.send(req, stream=stream)
        except httpx.TransportError as exc:
            raise ProxyError(
                502,
                f"vLLM server at {p.upstream}: {http.unreachable('POST', req.url.path, exc, UPSTREAM_TIMEOUT_S)}",
                "upstream_error",
            ) from None

    async def health(request: Request) -> Response:
        try:
            r = await upstream["client"].get(p.upstream + "/health", timeout=3)
            ok = r.status_code == 200
        except httpx.TransportError:
            ok = False
        return JSONResponse({"status": "ok" if ok else "upstream down", **p.state()}, 200 if ok else 503)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": p.task.name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "kaizen",
                        "kaizen": {"production": p.production.brief(), "canary": p.canary_state()},
                    }
                ],
            }
        )

    async def chat(request: Request) -> Response:
        started = time.perf_counter()
        body = await read_json(request)
        params, logged = p.prepare(body)
        route, is_canary = p.choose()
        handed_over = False  # a stream releases the route itself, when it ends
        try:
            upstream_body = {
                **params,
                "model": route.model,
                "messages": p.upstream_messages(route, logged, body["messages"]),
            }
            trace_id = p.new_trace_id()
            headers = {
                "x-kaizen-trace-id": trace_id,
                "x-kaizen-model-version": route.version,
                "x-kaizen-canary": "true" if is_canary else "false",
            }
            if params.get("stream"):
                response = await relay(upstream_body, trace_id, route, is_canary, logged, headers, started)
                handed_over = isinstance(response, _RelayResponse)
                return response
            t0 = time.perf_counter()
            up = await post_upstream(upstream_body, stream=False)
            upstream_ms = (time.perf_counter() - t0) * 1000
            payload = http.decode(up.content)
            if up.status_code != 200 or not isinstance(payload, dict):
                if isinstance(payload, dict):
                    return JSONResponse(payload, up.status_code if up.status_code != 200 else 502)
                return error_response(
                    ProxyError(
                        up.status_code if up.status_code != 200 else 502, str(payload), "upstream_error"
                    )
                )
            choice = (payload.get("choices") or [{}])[0]
            output = text_of((choice.get("message") or {}).get("content"))
            payload["id"], payload["model"] = trace_id, p.task.name
            line = p.trace_line(
                trace_id=trace_id,
                route=route,
                is_canary=is_canary,
                messages=logged,
                output=output,
                latency_ms=(time.perf_counter() - started) * 1000,
                upstream_ms=upstream_ms,
                usage=payload.get("usage"),
                finish_reason=choice.get("finish_reason"),
                stream=False,
            )
            headers["x-kaizen-logged"] = (
                "true" if await anyio.to_thread.run_sync(p.write_trace, line) else "false"
            )
            return JSONResponse(payload, headers=headers)
        finally:
            if not handed_over:
                p.release(route)

    async def relay(
        body: dict[str, Any],
        trace_id: str,
        route: Route,
        is_canary: bool,
        logged: list[dict[str, Any]],
        headers: dict[str, str],
        started: float,
    ) -> Response:
        """Relay vLLM's server-sent events, rewriting id/model; log the assembled output before the end."""
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        t0 = time.perf_counter()
        up = await post_upstream(body, stream=True)
        if up.status_code != 200:
            raw = await up.aread()
            await up.aclose()
            payload = http.decode(raw)
            if isinstance(payload, dict):
                return JSONResponse(payload, up.status_code)
            return error_response(ProxyError(up.status_code, str(payload), "upstream_error"))
        flight = _Flight(p, route, up)

        async def events() -> AsyncIterator[bytes]:
            parts: list[str] = []
            usage, finish, done = None, None, False
            try:
                async for raw_line in up.aiter_lines():
                    line = raw_line.strip()
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
                            parts.append(text_of((ch.get("delta") or {}).get("content")))
                            finish = ch.get("finish_reason") or finish
                    if not wants_usage:
                        event.pop("usage", None)
                        if not event.get("choices"):
                            continue
                    yield b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
                # Logged before the stream ends: once a client has seen the end, its trace id takes feedback.
                line = p.trace_line(
                    trace_id=trace_id,
                    route=route,
                    is_canary=is_canary,
                    messages=logged,
                    output="".join(parts),
                    latency_ms=(time.perf_counter() - started) * 1000,
                    upstream_ms=(time.perf_counter() - t0) * 1000,
                    usage=usage,
                    finish_reason=finish,
                    stream=True,
                )
                await anyio.to_thread.run_sync(p.write_trace, line)
                await flight.close()  # the answer is complete: the adapter may be swapped out now
                if done:
                    yield b"data: [DONE]\n\n"
            finally:
                await flight.close()

        return _RelayResponse(events(), flight, headers)

    async def feedback(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await anyio.to_thread.run_sync(p.feedback, body))

    async def admin_route(request: Request) -> Response:
        admin(request)
        body = _need_obj(await read_json(request))
        return JSONResponse(await anyio.to_thread.run_sync(p.route, body))

    async def admin_canary(request: Request) -> Response:
        admin(request)
        body = _need_obj(await read_json(request))
        return JSONResponse(await anyio.to_thread.run_sync(p.set_canary, body))

    async def admin_state(request: Request) -> Response:
        admin(request)
        return JSONResponse(p.state() | {"loaded": sorted(p.loaded)})

    async def not_served(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return error_response(
            ProxyError(
                status, f"{request.method} {request.url.path}: not served here ({ENDPOINTS})", "not_found"
            )
        )

    routes = [
        Endpoint("/health", _json_errors(health), methods=["GET"]),
        Endpoint("/v1/models", _json_errors(models), methods=["GET"]),
        Endpoint("/v1/chat/completions", _json_errors(chat), methods=["POST"]),
        Endpoint("/feedback", _json_errors(feedback), methods=["POST"]),
        Endpoint("/admin/route", _json_errors(admin_route), methods=["POST"]),
        Endpoint("/admin/canary", _json_errors(admin_canary), methods=["POST"]),
        Endpoint("/admin/state", _json_errors(admin_state), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_served})
