"""Promote and roll back *with* a running ``kaizen serve``: hot-swap first, move the alias after.

``kaizen.tools.registry`` only moves aliases in the store; this module is the one place that also tells a
live server of the task to serve the new version. The CLI (``kaizen models promote|rollback``) and
the repair agent's promote node both call :func:`promote_and_swap` / :func:`rollback_and_swap`.

Order, and why: first the registry's own check (:func:`kaizen.tools.registry.check_promotable`: the version
exists and belongs to the task), so a version that could never be promoted is never loaded. Then the server
is asked (``POST /admin/route`` on the kaizen proxy: load the new
adapter into vLLM → route the task's stable name to it → unload the old one). Only when every live
server of the task answered OK does ``production`` move in the registry. If a server refuses (the
adapter does not load: rank above ``--max-lora-rank``, a broken directory, another base model), the
servers already switched are routed back, the registry is left alone, and the server's own error
message is raised as :class:`ServingError`. So "production" in the store and what the server answers
with never disagree after a failed swap.

Servers are found through the ``server`` table (written by ``kaizen serve`` itself). A recorded
server whose process is gone is marked ``gone`` and skipped; one whose process lives but whose proxy
does not answer is an error (``--no-swap`` moves the alias without it).

HTTP through the one client of :mod:`kaizen.tools.serve.http` (httpx, no proxy from the environment);
nothing here imports the ML stack.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from kaizen.tools import registry
from kaizen.tools.errors import KaizenError, ModelError, ServingError
from kaizen.tools.proc import pid_alive
from kaizen.tools.serve.http import error_message, request_json
from kaizen.tools.store import Store
from kaizen.tools.store.tables import ServerRow, utcnow

ADMIN_TIMEOUT_S = 180.0  # a vLLM LoRA load takes ~0.03 s on CPU; draining in-flight requests up to 30 s
HEALTH_TIMEOUT_S = 3.0

# Kept importable from here: callers and tests use ``hotswap.http_json`` / ``hotswap.ServingError``.
http_json = request_json


def healthy(row: ServerRow, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    try:
        status, _ = http_json("GET", row.proxy_url + "/health", timeout=timeout)
    except ServingError:
        return False
    return status == 200


def live_servers(store: Store, task: str) -> list[ServerRow]:
    """The task's servers that answer now. Rows of dead processes (on this host) are marked ``gone``.

    A server whose process is alive but whose proxy does not answer raises: swapping around it would
    leave it serving the old version while the registry says otherwise.
    """
    out = []
    for row in store.list_servers(task, status="running"):
        if healthy(row):
            out.append(row)
            continue
        if row.host == socket.gethostname() and not pid_alive(row.pid):
            row.status, row.stopped_at, row.error = (
                "gone",
                utcnow(),
                "process no longer exists (found by a promote/rollback)",
            )
            store.save_server(row)
            continue
        if row.host != socket.gethostname():
            raise ServingError(
                f"server {row.id} of {task} on {row.host} ({row.proxy_url}) does not answer: "
                "check it, or pass --no-swap to move the alias without it"
            )
        raise ServingError(
            f"server {row.id} of {task} (pid {row.pid}, {row.proxy_url}) is running but does not answer "
            "/health: wait for it, stop it, or pass --no-swap to move the alias without it"
        )
    return out


@dataclass
class SwapResult:
    task: str
    old: str
    new: str
    skill: int | None
    servers: list[dict[str, Any]] = field(
        default_factory=list
    )  # per server: url, swap_ms, loaded, unloaded, unload_pending

    def as_dict(self, *, with_skill: bool = True) -> dict[str, Any]:
        """The CLI's ``--json``; ``servers`` only when a live server was hot-swapped."""
        out: dict[str, Any] = {"task": self.task, "production": self.new, "previous": self.old}
        if with_skill:
            out["skill"] = self.skill
        return out | ({"servers": self.servers} if self.servers else {})


def route_body(store: Store, version: str, skill: int | None) -> dict[str, Any]:
    """What ``POST /admin/route`` takes: the version, its adapter directory (None for a base), its skill."""
    row = store.get_model_version(version)
    base = registry.base_of(store, row)
    return {"version": row.name, "base_version": base.name, "adapter_path": row.adapter_path, "skill": skill}


def _route(server: ServerRow, body: dict[str, Any]) -> dict[str, Any]:
    status, payload = http_json(
        "POST", server.proxy_url + "/admin/route", body, token=server.admin_token, timeout=ADMIN_TIMEOUT_S
    )
    if status != 200:
        raise ServingError(
            f"server {server.proxy_url} refused to serve {body['version']}"
            f"{' with skill ' + str(body['skill']) if body.get('skill') else ''} (HTTP {status}): "
            f"{error_message(payload)}"
        )
    return payload if isinstance(payload, dict) else {}


def swap_servers(store: Store, task: str, version: str, skill: int | None) -> list[dict[str, Any]]:
    """Route every live server of ``task`` to (version, skill); all or none (switched ones are routed back)."""
    servers = live_servers(store, task)
    if not servers:
        return []
    body = route_body(store, version, skill)
    done: list[tuple[ServerRow, dict[str, Any]]] = []
    for server in servers:
        if server.base_version != body["base_version"]:
            err = ServingError(
                f"{version} is built on base {body['base_version']!r} but server {server.proxy_url} serves base "
                f"{server.base_version!r}: restart `kaizen serve --task {task}` after promoting with --no-swap"
            )
            _undo(store, done)
            raise err
        try:
            done.append((server, _route(server, body)))
        except ServingError:
            _undo(store, done)
            raise
    return [
        {"server": s.id, "url": s.proxy_url}
        | {k: r.get(k) for k in ("swap_ms", "loaded", "unloaded", "unload_pending")}
        for s, r in done
    ]


def _undo(store: Store, done: list[tuple[ServerRow, dict[str, Any]]]) -> None:
    """Route servers that already switched back to what they served before (best effort)."""
    for server, result in done:
        prev = result.get("previous") or {}
        if not prev.get("version"):
            continue
        try:
            _route(server, route_body(store, prev["version"], prev.get("skill")))
        except (ServingError, KaizenError):
            pass


def promote_and_swap(
    store: Store,
    task: str,
    version: str,
    *,
    skill: int | None = None,
    actor: str = "",
    note: str = "",
    swap: bool = True,
) -> SwapResult:
    """Hot-swap every live server of ``task`` to (version, skill), then point ``production`` at it.

    A failed swap raises :class:`ServingError` with the server's message; the registry is then not
    changed. Promoting what is already production still re-routes a server that serves something
    else (a server started before an earlier ``--no-swap`` promote), so calling it again repairs drift.
    """
    # Refused before any server is touched: a version that cannot be this task's production (another task's,
    # say) must never be loaded, let alone answer, even for the moment a swap-then-undo would take.
    row = registry.check_promotable(store, task, version)
    if skill is not None:
        from kaizen.tools.skills import get_skill

        get_skill(store, task, skill)  # a clear error before anything moves
    if row.kind == "adapter" and not row.adapter_path:
        raise ModelError(f"version {version!r} has no adapter path")
    servers = swap_servers(store, task, version, skill) if swap else []
    try:
        old, new = registry.promote(store, task, version, actor=actor, note=note, skill=skill)
    except BaseException:
        _undo_after_registry_failure(store, task)
        raise
    return SwapResult(task=task, old=old, new=new, skill=skill, servers=servers)


def rollback_and_swap(
    store: Store, task: str, *, actor: str = "", note: str = "", swap: bool = True
) -> SwapResult:
    """Hot-swap live servers to the task's ``previous`` (version, skill), then swap the aliases."""
    store.get_task(task)
    prev = store.get_alias(task, "previous")
    cur = store.get_alias(task, "production")
    if prev is None or cur is None:
        from kaizen.tools.errors import NotFoundError

        raise NotFoundError(f"task {task!r} has no previous version to roll back to")
    registry.check_promotable(store, task, prev.model_version)  # as for a promotion: before any server moves
    servers = swap_servers(store, task, prev.model_version, prev.skill_version) if swap else []
    try:
        old, new = registry.rollback(store, task, actor=actor, note=note)
    except BaseException:
        _undo_after_registry_failure(store, task)
        raise
    return SwapResult(task=task, old=old, new=new, skill=prev.skill_version, servers=servers)


def _undo_after_registry_failure(store: Store, task: str) -> None:
    """The servers switched but the store write failed: route them back to what production still says."""
    try:
        cur = store.get_alias(task, "production")
        if cur is not None:
            swap_servers(store, task, cur.model_version, cur.skill_version)
    except KaizenError:
        pass


def set_canary(
    store: Store, task: str, version: str | None, *, fraction: float = 0.0, skill: int | None = None
) -> list[dict[str, Any]]:
    """Send ``fraction`` of the task's requests on every live server to ``version`` (None or 0: stop the canary)."""
    if not 0.0 <= fraction <= 1.0:
        raise ServingError(f"canary fraction must be within [0, 1], got {fraction}")
    servers = live_servers(store, task)
    if not servers:
        raise ServingError(
            f"no live `kaizen serve` for task {task!r}: start one first (see `kaizen servers list`)"
        )
    body: dict[str, Any] = {"version": None, "fraction": 0.0}
    if version and fraction > 0:
        body = route_body(store, version, skill) | {"fraction": fraction}
    out = []
    for server in servers:
        status, payload = http_json(
            "POST",
            server.proxy_url + "/admin/canary",
            body,
            token=server.admin_token,
            timeout=ADMIN_TIMEOUT_S,
        )
        if status != 200:
            raise ServingError(
                f"server {server.proxy_url} refused the canary (HTTP {status}): {error_message(payload)}"
            )
        out.append({"server": server.id, "url": server.proxy_url, "canary": (payload or {}).get("canary")})
    return out
