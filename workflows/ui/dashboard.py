"""What the dashboard's handlers share: the Jinja environment and its filters, and ``Dashboard``.

``Dashboard`` holds the read-only store and its ``Reader``, the token every state-changing request must
present (``token_ok``; the cookie is ``COOKIE``), the injected ``decide`` and the page renderers (a full
page with the navigation's context, or a fragment that live pages poll for).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kaizen.tools.store import Store
from kaizen.tools.workspace import Workspace
from kaizen.workflows.report.build import fmt_delta, fmt_num, fmt_rate, fmt_score
from kaizen.workflows.ui import charts
from kaizen.workflows.ui.data import Reader

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "kaizen_ui_token"
POLL_MS = 1000
Decide = Callable[[str, bool, str, str], Any]  # (run_id, approved, who, reason)


def template_env() -> Any:
    from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined, select_autoescape

    # ChainableUndefined: a key a report or the store does not have (an older run, a newer schema) renders
    # as nothing instead of failing the page.
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def short(v: Any, n: int = 80) -> str:
        s = "" if v is None else str(v)
        return s if len(s) <= n else s[: n - 1] + "…"

    def when(v: Any) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):  # epoch seconds (approval records)
            from datetime import UTC, datetime

            return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return "" if not v or isinstance(v, Undefined) else str(v).replace("T", " ")[:19]

    def safe(fn: Callable[[Any], str]) -> Callable[[Any], str]:
        def wrapped(v: Any) -> str:
            if isinstance(v, Undefined) or v is None or isinstance(v, bool):
                return fn(None)
            try:
                return fn(v)
            except (TypeError, ValueError):
                return str(v)

        return wrapped

    env.filters.update(
        score=safe(fmt_score),
        delta=safe(fmt_delta),
        rate=safe(fmt_rate),
        num=safe(fmt_num),
        short=short,
        when=when,
        pretty=lambda v: json.dumps(v, indent=1, ensure_ascii=False, default=str),
        seconds=safe(lambda v: "n/a" if v is None else f"{float(v):.1f} s"),
    )
    return env


class Dashboard:
    """State shared by the handlers: the reader, the templates, the token and the injected decide."""

    def __init__(self, ws: Workspace, token: str, decide: Decide | None, poll_ms: int) -> None:
        self.ws = ws
        self.token = token
        self.decide_fn = decide
        self.poll_ms = poll_ms
        self.store = Store.open_read_only(ws.db_url)
        self.reader = Reader(self.store, ws.artifacts)
        self.env = template_env()
        self.decide_lock = threading.Lock()

    # ---------------------------------------------------------------------------------- helpers
    def authed(self, request: Request) -> bool:
        return self.token_ok(request.cookies.get(COOKIE))

    def token_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    def page(self, request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        tasks = self.reader.task_names()
        task = request.query_params.get("task") or ctx.get("task") or (tasks[0] if len(tasks) == 1 else None)
        try:
            waiting = len(self.reader.runs(status="awaiting_approval"))
        except Exception:
            log.exception("ui: counting runs awaiting approval")
            waiting = 0
        ctx = {
            "request": request,
            "tasks": tasks,
            "nav_task": task,
            "waiting": waiting,
            "poll_ms": self.poll_ms,
            "authed": self.authed(request),
            "charts": charts,
            "Markup": Markup,
            "qs": _qs,
            "path": request.url.path,
        } | ctx
        html = self.env.get_template(template).render(**ctx)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    def fragment(self, template: str, **ctx: Any) -> HTMLResponse:
        ctx = {"poll_ms": self.poll_ms, "charts": charts, "Markup": Markup, "qs": _qs} | ctx
        return HTMLResponse(
            self.env.get_template(template).render(**ctx), headers={"Cache-Control": "no-store"}
        )


def _qs(params: dict[str, Any], **changes: Any) -> str:
    """A query string from ``params`` with ``changes`` applied; empty values left out."""
    merged = {**{k: v for k, v in params.items()}, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})
