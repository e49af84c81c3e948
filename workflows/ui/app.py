"""The dashboard's Starlette app: server-rendered pages, their ``/api/…`` JSON twins, and approvals.

``create_app(workspace, token=..., decide=...)`` builds it. Reads use a read-only store (see
``Store.open_read_only``) in short transactions, so a repair or tick running at the same time is never
blocked. The one state-changing request — approving or rejecting a run that waits for approval — calls
``decide(run_id, approved, who, reason)``, which the CLI injects: the same function ``kaizen runs approve``
calls, so the reason is kept in the run record (and its report) like any other decision.
Such requests need the token printed at start-up (header ``X-Kaizen-Token`` or ``Authorization: Bearer``,
or the cookie that opening the printed ``/?token=…`` URL sets); without it they are refused (401/403).

Pages poll for live updates: an element with ``data-refresh-url`` is re-fetched as an HTML fragment every
second and swapped in place (``static/kaizen.js``), until the fragment comes back without the attribute
(the run finished). No page reload, no external asset. The templates and the state the handlers share
are in ``kaizen.workflows.ui.dashboard``.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kaizen.tools.errors import KaizenError, NotFoundError
from kaizen.tools.workspace import Workspace
from kaizen.workflows.ui.common import jsonable
from kaizen.workflows.ui.dashboard import COOKIE, HERE, POLL_MS, Dashboard, Decide


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(
    ws: Workspace, *, token: str, decide: Decide | None = None, poll_ms: int = POLL_MS
) -> Starlette:
    """The dashboard of workspace ``ws``.

    Args:
        ws: The workspace to show (its store is opened read-only).
        token: The secret every state-changing request must present.
        decide: ``decide(run_id, approved, who, reason)`` — answers a run waiting for approval (the CLI passes
            the function ``kaizen runs approve`` uses). Without it, approving from the dashboard is refused.
        poll_ms: How often live pages poll for updates.
    """
    if not token:
        raise ValueError("the dashboard needs a token for state-changing requests")
    d = Dashboard(ws, token, decide, poll_ms)
    r = d.reader

    # ----------------------------------------------------------------------------- token in URL
    async def token_cookie(request: Request, call_next: Any) -> Response:
        given = request.query_params.get("token")
        if request.method == "GET" and given is not None:
            params = {k: v for k, v in request.query_params.items() if k != "token"}
            resp = RedirectResponse(
                request.url.path + (("?" + urlencode(params)) if params else ""), status_code=303
            )
            if d.token_ok(given):
                resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return resp
        return await call_next(request)

    # ------------------------------------------------------------------------------------ pages
    def index(request: Request) -> Response:
        return d.page(request, "index.html", items=r.tasks())

    def task_page(request: Request) -> Response:
        data = r.task(request.path_params["task"])
        return d.page(request, "task.html", task=data["task"]["name"], t=data)

    def runs_page(request: Request) -> Response:
        task, status = request.query_params.get("task") or None, request.query_params.get("status") or None
        return d.page(request, "runs.html", items=r.runs(task, status), task=task, status=status)

    def run_page(request: Request) -> Response:
        data = r.run(request.path_params["run_id"])
        return d.page(request, "run.html", task=data["run"]["task"], x=data, default_by=getpass.getuser())

    def run_fragment(request: Request) -> Response:
        data = r.run(request.path_params["run_id"])
        return d.fragment("run_body.html", x=data, authed=d.authed(request), default_by=getpass.getuser())

    def run_report_html(request: Request) -> Response:
        run = d.store.get_run(request.path_params["run_id"])
        path = r.run_dir(run) / "report.html"
        if not path.is_file():
            raise NotFoundError(f"run {run.id} has no report.html yet")
        return FileResponse(path, media_type="text/html")

    def models_page(request: Request) -> Response:
        task = request.query_params.get("task") or None
        return d.page(request, "models.html", m=r.models(task), task=task)

    def model_diff_page(request: Request) -> Response:
        a, b, task = (
            request.query_params.get("a"),
            request.query_params.get("b"),
            request.query_params.get("task") or None,
        )
        if not a or not b:
            raise ValueError("pass two versions: /models/diff?a=V1&b=V2")
        return d.page(request, "model_diff.html", diff=r.model_diff(a, b, task), task=task)

    def traces_page(request: Request) -> Response:
        data = r.traces(**_trace_filters(request))
        return d.page(request, "traces.html", tr=data, task=data["filters"]["task"])

    def trace_page(request: Request) -> Response:
        data = r.trace(request.path_params["trace_id"])
        return d.page(request, "trace.html", t=data, task=data["task"])

    def skills_page(request: Request) -> Response:
        task = _one_task(request)
        return d.page(request, "skills.html", s=r.skills(task) if task else None, task=task)

    def skill_diff_page(request: Request) -> Response:
        task = _one_task(request)
        if not task:
            raise ValueError("pass ?task=NAME")
        return d.page(
            request,
            "skill_diff.html",
            diff=r.skill_diff(task, _int(request, "a"), _int(request, "b")),
            task=task,
        )

    def approvals_page(request: Request) -> Response:
        return d.page(
            request,
            "approvals.html",
            items=r.approvals(),
            can_decide=d.decide_fn is not None,
            default_by=getpass.getuser(),
        )

    # -------------------------------------------------------------------------------------- api
    def api(fn: Callable[[Request], Any]) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            return JSONResponse(jsonable(fn(request)), headers={"Cache-Control": "no-store"})

        return handler

    def health(request: Request) -> Any:
        return {
            "ok": True,
            "workspace": str(ws.root),
            "tasks": r.task_names(),
            "approvals": d.decide_fn is not None,
        }

    async def decide_route(request: Request) -> Response:
        run_id, action = request.path_params["run_id"], request.path_params["action"]
        if action not in ("approve", "reject"):
            raise HTTPException(404, f"unknown action {action!r}: approve or reject")
        body: dict[str, Any] = {}
        ctype = request.headers.get("content-type", "")
        if "application/json" in ctype:
            try:
                raw = await request.json()
            except ValueError:
                raise HTTPException(400, "the body is not JSON") from None
            body = raw if isinstance(raw, dict) else {}
        elif "form" in ctype:
            body = dict(await request.form())
        given = (
            request.headers.get("x-kaizen-token")
            or _bearer(request)
            or body.get("token")
            or request.cookies.get(COOKIE)
        )
        if not given:
            raise HTTPException(
                401, "a token is required: the one `kaizen ui` printed at start-up (header X-Kaizen-Token)"
            )
        if not d.token_ok(str(given)):
            raise HTTPException(403, "wrong token")
        origin = request.headers.get("origin")
        if (
            origin
            and request.cookies.get(COOKIE) == given
            and origin.split("://", 1)[-1] != request.headers.get("host")
        ):
            raise HTTPException(403, f"cross-origin request from {origin} refused")
        if d.decide_fn is None:
            raise HTTPException(
                409, "approvals are not enabled in this dashboard (start it with `kaizen ui`)"
            )
        reason = str(body.get("reason") or "").strip()
        if not reason:
            raise HTTPException(400, "say why: a reason is required to approve or reject")
        by = str(body.get("by") or "").strip()[:80] or getpass.getuser()
        who = f"{by} (kaizen ui)"
        run = d.store.get_run(run_id)
        if run.status != "awaiting_approval":
            raise HTTPException(409, f"run {run_id} is {run.status}, not awaiting approval")
        approved = action == "approve"
        from starlette.concurrency import run_in_threadpool

        def work() -> None:
            with d.decide_lock:
                d.decide_fn(run_id, approved, who, reason)  # type: ignore[misc]

        try:
            await run_in_threadpool(work)
        except KaizenError as e:
            raise HTTPException(409, str(e)) from None
        after = d.store.get_run(run_id)
        # The decision as the run record keeps it (decide wrote it there, reason included).
        kept = (after.summary or {}).get("approval")
        note = (kept if isinstance(kept, dict) else {"approved": approved, "by": who, "reason": reason}) | {
            "status": after.status
        }
        return JSONResponse({"run": r.run_summary(after), "decision": jsonable(note)}, status_code=200)

    # ----------------------------------------------------------------------------------- errors
    def not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, str(exc))

    def bad_request(request: Request, exc: Exception) -> Response:
        return _error(request, 400, str(exc))

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(request, exc.status_code, str(exc.detail))

    def _error(request: Request, code: int, message: str) -> Response:
        if _wants_json(request) or request.method != "GET":
            return JSONResponse({"error": message, "status": code}, status_code=code)
        return d.page(request, "error.html", status_code=code, code=code, message=message)

    routes = [
        Route("/", index),
        Route("/tasks/{task}", task_page),
        Route("/runs", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/fragment", run_fragment),
        Route("/runs/{run_id}/report.html", run_report_html),
        Route("/models", models_page),
        Route("/models/diff", model_diff_page),
        Route("/traces", traces_page),
        Route("/traces/{trace_id:path}", trace_page),
        Route("/skills", skills_page),
        Route("/skills/diff", skill_diff_page),
        Route("/approvals", approvals_page),
        Route("/api/health", api(health)),
        Route("/api/tasks", api(lambda q: r.tasks())),
        Route("/api/tasks/{task}", api(lambda q: r.task(q.path_params["task"]))),
        Route(
            "/api/runs",
            api(lambda q: r.runs(q.query_params.get("task") or None, q.query_params.get("status") or None)),
        ),
        Route("/api/runs/{run_id}", api(lambda q: r.run(q.path_params["run_id"]))),
        Route("/api/runs/{run_id}/progress", api(lambda q: r.progress(q.path_params["run_id"]))),
        Route("/api/runs/{run_id}/{action}", decide_route, methods=["POST"]),
        Route("/api/models", api(lambda q: r.models(q.query_params.get("task") or None))),
        Route(
            "/api/models/diff",
            api(lambda q: r.model_diff(_req(q, "a"), _req(q, "b"), q.query_params.get("task") or None)),
        ),
        Route("/api/traces", api(lambda q: r.traces(**_trace_filters(q)))),
        Route("/api/traces/{trace_id:path}", api(lambda q: r.trace(q.path_params["trace_id"]))),
        Route("/api/skills", api(lambda q: r.skills(_req(q, "task")))),
        Route("/api/skills/diff", api(lambda q: r.skill_diff(_req(q, "task"), _int(q, "a"), _int(q, "b")))),
        Route("/api/approvals", api(lambda q: r.approvals())),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    app = Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=token_cookie)],
        exception_handlers={NotFoundError: not_found, ValueError: bad_request, HTTPException: http_error},
    )
    app.state.dashboard = d

    def _one_task(request: Request) -> str | None:
        task = request.query_params.get("task")
        if task:
            return task
        names = r.task_names()
        return names[0] if len(names) == 1 else None

    return app


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization") or ""
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _req(request: Request, name: str) -> str:
    v = request.query_params.get(name)
    if not v:
        raise ValueError(f"missing query parameter {name!r}")
    return v


def _int(request: Request, name: str) -> int:
    v = request.query_params.get(name)
    try:
        return int(v or 0)
    except ValueError:
        raise ValueError(f"{name} must be a skill version number (0: no skill), not {v!r}") from None


def _trace_filters(request: Request) -> dict[str, Any]:
    p = request.query_params
    out: dict[str, Any] = {
        k: (p.get(k) or None)
        for k in ("task", "verdict", "cluster", "suspect", "model_version", "since", "until", "q")
    }
    for k, default in (("limit", 50), ("offset", 0)):
        try:
            out[k] = int(p.get(k) or default)
        except ValueError:
            raise ValueError(f"{k} must be a number") from None
    return out
