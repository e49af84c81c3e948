"""The one HTTP client kaizen uses to talk to its own servers (vLLM, ``kaizen serve``'s proxy): httpx.

* :func:`request_json` — one JSON request, (status, decoded body) back for any HTTP status; only a server
  that cannot be reached (or does not answer in time) raises :class:`~kaizen.tools.errors.ServingError`.
* :func:`async_client` — the asynchronous client of the proxy's request path (same settings).

Both use ``trust_env=False``: these are calls to our own servers, usually on 127.0.0.1, and an
``$http_proxy``/``$all_proxy`` from the environment must never route them elsewhere (nor a ``.netrc``
add credentials). One pooled synchronous client per process keeps connections alive between calls.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from kaizen.tools.errors import ServingError

DEFAULT_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_S))


def client() -> httpx.Client:
    """The process's shared synchronous client (thread-safe, pooled, no proxy from the environment)."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                trust_env=False, timeout=_timeout(DEFAULT_TIMEOUT_S), follow_redirects=False
            )
        return _client


def async_client(*, timeout: float = 600.0, max_connections: int = 256) -> httpx.AsyncClient:
    """A new asynchronous client for one event loop (the proxy's upstream requests); close it with ``aclose``."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(
        trust_env=False, timeout=_timeout(timeout), limits=limits, follow_redirects=False
    )


def headers(token: str = "") -> dict[str, str]:
    """JSON content type, plus a bearer token when there is one."""
    return {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}


def decode(content: bytes, empty: Any = None) -> Any:
    """A response body as JSON, as text when it is not JSON, ``empty`` when there is none."""
    text = content.decode(errors="replace")
    if not text.strip():
        return empty
    try:
        return json.loads(text)
    except ValueError:
        return text


def unreachable(method: str, url: str, exc: httpx.TransportError, timeout: float) -> ServingError:
    """The error for a request that got no HTTP answer; names the URL and what happened."""
    if isinstance(exc, httpx.TimeoutException):
        return ServingError(f"{method} {url}: no answer within {timeout:g} s ({type(exc).__name__})")
    return ServingError(f"{method} {url}: unreachable: {exc or type(exc).__name__}")


def request(
    method: str, url: str, body: Any = None, *, token: str = "", timeout: float = DEFAULT_TIMEOUT_S
) -> httpx.Response:
    """One request with a JSON body (or none); the response whatever its status. :class:`ServingError` when
    the server cannot be reached or does not answer within ``timeout`` seconds."""
    data = None if body is None else json.dumps(body).encode()
    try:
        return client().request(method, url, content=data, headers=headers(token), timeout=_timeout(timeout))
    except httpx.TransportError as exc:
        raise unreachable(method, url, exc, timeout) from None


def request_json(
    method: str, url: str, body: Any = None, *, token: str = "", timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[int, Any]:
    """One JSON request. Returns (status, decoded body: JSON, else text, None when empty) for any HTTP
    status; raises :class:`ServingError` only when the server cannot be reached."""
    resp = request(method, url, body, token=token, timeout=timeout)
    return resp.status_code, decode(resp.content)


def error_message(payload: Any) -> str:
    """The message of an OpenAI-style ``{"error": {"message": ...}}`` body (or the body itself)."""
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if payload.get("message"):
            return str(payload["message"])
    return str(payload)
