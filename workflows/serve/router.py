"""The routing table of one ``kaizen serve``: the task's stable name → the version vLLM serves it with.

    client ──model=<task>──▶ proxy ──model=<version>──▶ vLLM (127.0.0.1)
    promote/rollback ──/admin/route──▶ load the new adapter → route <task> to it → drain → unload the old one

* **Stable name.** vLLM has no aliases: each LoRA adapter is served under its own name (kaizen uses
  the version name). Clients always ask for ``model=<task>``; the proxy maps it to the version in
  ``production`` (and, with a canary, a fraction of requests to the canary version).
* **Prompt.** In ``render`` mode (default) every request goes through ``kaizen.tools.schema.render`` with
  the production skill (if the alias has one) — the same prompt contract training and evaluation
  use. The caller's own ``system``/``developer`` messages are therefore *replaced* by the skill's (or
  the task's) system prompt; the conversation turns are kept. ``passthrough`` mode forwards the
  caller's messages unchanged (and so ignores skills).
* **Hot swap.** A route change loads the new adapter first, then switches the table, then unloads the
  old adapter once the requests still running on it (counted per upstream model) are done: within the
  admin call when they finish within ``DRAIN_WAIT_S``, else later, when the last of them ends (the answer
  lists it under ``unload_pending``). A swap under load drops nothing, and each request is answered
  (and logged) by the version it was routed to.

HTTP-agnostic: the web app (:mod:`kaizen.workflows.serve.app`) calls :meth:`ServingProxy.choose` /
:meth:`~ServingProxy.release` around each request and runs the admin methods (which block on vLLM) in
worker threads. Calls to vLLM go through the one client of :mod:`kaizen.tools.serve.http`.

One cohesive thing (424 lines): ``ServingProxy``, the routing table and its hot swap, whose load, switch,
drain and unload steps share one lock and one in-flight count; the trace log it writes is its base
(:mod:`kaizen.workflows.serve.tracelog`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ConfigError, NotFoundError, ProxyError, ServingError
from kaizen.tools.schema import Skill, TaskSpec, render
from kaizen.tools.serve import http
from kaizen.tools.store import Store
from kaizen.workflows.serve.tracelog import TraceLog

ROLES = ("system", "user", "assistant", "tool", "developer")
PROMPT_MODES = ("render", "passthrough")
DRAIN_WAIT_S = 5.0  # how long an admin call waits for the old adapter's requests before deferring its unload
ADMIN_UPSTREAM_TIMEOUT_S = 120.0

log = logging.getLogger(__name__)


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


def text_of(content: Any) -> str:
    """Message content as text (content parts joined; None → "")."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")
        )
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


class ServingProxy(TraceLog):
    """The routing table (production, canary, hot swap) on top of the trace log and feedback sink.

    ``upstream`` is the vLLM server's base URL (``http://127.0.0.1:PORT``). ``store`` is optional (tests
    without a workspace): without it feedback always goes to the feedback file and skills cannot be
    looked up by number.
    """

    def __init__(
        self,
        *,
        task: TaskSpec,
        upstream: str,
        base_version: str,
        base_model: str,
        production: Route,
        log_path: Path,
        store: Store | None = None,
        server_id: str = "",
        admin_token: str = "",
        prompt_mode: str = "render",
        rng: random.Random | None = None,
        fsync: bool = True,
    ):
        if prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"unknown prompt mode {prompt_mode!r}: use {' or '.join(PROMPT_MODES)}")
        super().__init__(
            task=task,
            log_path=log_path,
            store=store,
            server_id=server_id,
            prompt_mode=prompt_mode,
            fsync=fsync,
        )
        self.set_upstream(upstream)
        self.base_version, self.base_model = base_version, base_model
        self.production: Route = production
        self.canary: Route | None = None
        self.canary_fraction = 0.0
        self.admin_token = admin_token
        self.rng = rng or random.Random()
        self.loaded: set[str] = set()  # adapters this proxy loaded into vLLM (by upstream model name)
        self._state = threading.Lock()  # routing table and in-flight counts
        self._admin = threading.Lock()  # one route/canary change at a time
        self._inflight: dict[str, int] = {}
        self._pending: set[str] = set()  # adapters to unload when their last request ends
        self.on_change: Callable[[ServingProxy], None] | None = (
            None  # persists the routing table (the ServerRow)
        )

    # ------------------------------------------------------------------ upstream (admin calls, blocking)

    def set_upstream(self, url: str) -> None:
        self.upstream = url.rstrip("/")

    def upstream_request(
        self, method: str, path: str, body: Any = None, timeout: float = ADMIN_UPSTREAM_TIMEOUT_S
    ) -> tuple[int, Any]:
        try:
            return http.request_json(method, self.upstream + path, body, timeout=timeout)
        except ServingError as exc:
            raise ProxyError(502, f"vLLM server at {self.upstream}: {exc}", "upstream_error") from None

    def upstream_healthy(self) -> bool:
        try:
            return self.upstream_request("GET", "/health", timeout=3)[0] == 200
        except ProxyError:
            return False

    # ------------------------------------------------------------------ routing

    def choose(self) -> tuple[Route, bool]:
        """The route for one request: production, or the canary with probability ``canary_fraction``.
        Counts the request as in flight on that route until :meth:`release`."""
        with self._state:
            prod, canary, frac = self.production, self.canary, self.canary_fraction
            is_canary = canary is not None and frac > 0 and self.rng.random() < frac
            route = canary if is_canary and canary is not None else prod
            self._inflight[route.model] = self._inflight.get(route.model, 0) + 1
        return route, is_canary

    def release(self, route: Route) -> None:
        with self._state:
            left = self._inflight[route.model] = max(0, self._inflight.get(route.model, 0) - 1)
            due = left == 0 and route.model in self._pending
        if due:  # the last request on a swapped-out adapter: unload it (a blocking call: not on the caller's thread)
            threading.Thread(
                target=self._deferred_unload, args=(route.model,), name="kaizen-unload", daemon=True
            ).start()

    def inflight(self, model: str) -> int:
        with self._state:
            return self._inflight.get(model, 0)

    def _drain(self, model: str, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (``DRAIN_WAIT_S``) for ``model``'s requests to end; True when none is left."""
        deadline = time.monotonic() + (DRAIN_WAIT_S if timeout is None else timeout)
        while self.inflight(model) > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.inflight(model) == 0

    def _unload(self, name: str) -> str | None:
        """Unload ``name`` from vLLM now; the error message, or None."""
        status, payload = self.upstream_request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        self.loaded.discard(name)
        return None if status == 200 else f"{name}: {http.error_message(payload)}"

    def _deferred_unload(self, name: str) -> None:
        with self._admin:
            with self._state:
                keep = {self.production.model} | ({self.canary.model} if self.canary else set())
                if name not in self._pending or name in keep or self._inflight.get(name, 0) > 0:
                    return  # routed to again meanwhile (load() took it off the list), or still busy
                self._pending.discard(name)
            try:
                err = self._unload(name)
            except ProxyError as exc:
                err = exc.message
            if err:
                log.warning("serve: deferred unload of %s failed: %s", name, err)

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
            raise ProxyError(
                409,
                f"{version} is built on base {base!r} but this server serves base {self.base_version!r}: "
                "start another `kaizen serve` for it",
            )
        if adapter is None and version != self.base_version:
            raise ProxyError(
                409,
                f"{version} is a full model, not an adapter of {self.base_version!r}: this server cannot switch to it",
            )
        model = version if adapter else self.base_model
        return Route(
            version=version,
            model=model,
            adapter_path=adapter,
            skill_version=skill_v,
            skill=self._skill(skill_v),
        )

    def load(self, route: Route) -> str | None:
        """Make vLLM serve ``route``'s adapter (no-op for a base or an adapter already loaded)."""
        with self._state:
            self._pending.discard(route.model)  # served again: no longer to be unloaded
        if not route.adapter_path or route.model in self.loaded:
            return None
        status, payload = self.upstream_request(
            "POST",
            "/v1/load_lora_adapter",
            {"lora_name": route.model, "lora_path": str(Path(route.adapter_path).resolve())},
        )
        if status != 200:
            msg = http.error_message(payload)
            if "already been loaded" not in msg:
                raise ProxyError(
                    502,
                    f"vLLM could not load adapter {route.model!r} from {route.adapter_path}: {msg}",
                    "upstream_error",
                )
        self.loaded.add(route.model)
        return route.model

    def _unload_unused(self) -> dict[str, list[str]]:
        """Unload adapters neither production nor the canary uses once their requests finish: now if they
        finish within ``DRAIN_WAIT_S``, else when the last one ends. ``{"unloaded", "unload_pending"[, "unload_errors"]}``."""
        keep = {self.production.model} | ({self.canary.model} if self.canary else set())
        done, pending, errors = [], [], []
        for name in sorted(self.loaded - keep):
            with self._state:
                if name in self._pending:
                    pending.append(name)
                    continue
            if not self._drain(name):
                with self._state:
                    busy = self._inflight.get(name, 0) > 0
                    if busy:
                        self._pending.add(name)
                if busy:
                    pending.append(name)
                    continue
            err = self._unload(name)
            (errors if err else done).append(err or name)
        return {"unloaded": done, "unload_pending": pending} | ({"unload_errors": errors} if errors else {})

    def unload_all(self) -> list[str]:
        """Unload every adapter this proxy loaded (shutting down while attached to a vLLM it did not start)."""
        with self._admin:
            done = []
            for name in sorted(self.loaded):
                self._drain(name)
                try:
                    if self._unload(name) is None:
                        done.append(name)
                except ProxyError:
                    break  # vLLM is gone: nothing left to unload
            self.loaded.clear()
            with self._state:
                self._pending.clear()
            return done

    def route(self, body: dict[str, Any]) -> dict[str, Any]:
        """Serve (version, skill) under the task's name: load → route → drain → unload the old adapter."""
        started = time.perf_counter()
        with self._admin:
            new = self._make_route(body)
            old = self.production
            if (old.version, old.skill_version) == (new.version, new.skill_version):
                return {
                    "changed": False,
                    "production": new.brief(),
                    "previous": {"version": old.version, "skill": old.skill_version},
                    "swap_ms": 0.0,
                    "loaded": None,
                    "unloaded": [],
                }
            loaded = self.load(new)
            with self._state:
                self.production = new
            self._changed()
            switched_ms = (time.perf_counter() - started) * 1000
            unloads = self._unload_unused()
        return {
            "changed": True,
            "production": new.brief(),
            "previous": {"version": old.version, "skill": old.skill_version},
            "loaded": loaded,
            **unloads,
            "swap_ms": round((time.perf_counter() - started) * 1000, 2),
            "switched_ms": round(switched_ms, 2),
        }

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
            unloads = self._unload_unused()
        return {"canary": self.canary_state(), **unloads}

    def canary_state(self) -> dict[str, Any] | None:
        c = self.canary
        return (
            None
            if c is None
            else {"version": c.version, "skill": c.skill_version, "fraction": self.canary_fraction}
        )

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def state(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "production": self.production.brief(),
            "canary": self.canary_state(),
            "base_version": self.base_version,
            "prompt_mode": self.prompt_mode,
            "log_path": str(self.log_path),
            "feedback_path": str(self.feedback_path),
            "server_id": self.server_id,
            "unload_pending": sorted(self._pending),
        }

    # ------------------------------------------------------------------ requests

    def prepare(self, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Check a chat request; returns (upstream body without model, the caller's messages as text)."""
        if not isinstance(body, dict):
            raise ProxyError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model not in (None, "", self.task.name):
            raise ProxyError(
                404,
                f"The model `{model}` does not exist: this server serves task {self.task.name!r} as model "
                f"{self.task.name!r}",
                "model_not_found",
            )
        messages = validate_messages(body.get("messages"))
        if body.get("n") not in (None, 1):
            raise ProxyError(
                400, "'n' > 1 is not supported by the kaizen proxy (one logged output per request)"
            )
        logged = [{"role": m["role"], "content": text_of(m.get("content"))} for m in messages]
        return {k: v for k, v in body.items() if k not in ("model", "messages")}, logged

    def upstream_messages(
        self, route: Route, messages: list[dict[str, Any]], raw: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if self.prompt_mode == "passthrough":
            return raw
        return render(self.task, route.skill, messages)

    @staticmethod
    def new_trace_id() -> str:
        return "kz-" + uuid.uuid4().hex
