"""CLI: ``kaizen ui`` — serve the web dashboard of the workspace (``workflows/ui``).

The dashboard only reads; the one thing it changes — answering a run that waits for approval — goes
through :func:`kaizen.workflows.cli.approval.decide_run`, the function ``kaizen runs approve|reject`` call,
which this module injects into the app (the ``ui`` room may not import the workflows that own it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import socket
from collections.abc import Callable
from typing import Any

from kaizen.tools.env import env
from kaizen.tools.errors import ConfigError
from kaizen.tools.workspace import Workspace, find_workspace
from kaizen.workflows.cli.approval import decide_run
from kaizen.workflows.cli.output import info


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui", help="Serve a web dashboard of the workspace: runs (live), models, traces, skills, approvals."
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1: this machine only)."
    )
    p.add_argument(
        "--port", type=int, default=8765, help="Port (0: any free port; the URL printed says which)."
    )
    p.add_argument("--poll-ms", type=int, default=1000, help="How often live pages poll for updates.")
    p.set_defaults(func=cmd_ui)


def approval_decider(ws: Workspace) -> Callable[[str, bool, str, str], Any]:
    """``decide(run_id, approved, who, reason)``: exactly what ``kaizen runs approve|reject RUN_ID --reason``
    does — the one :func:`~kaizen.workflows.cli.approval.decide_run`."""

    def decide(run_id: str, approved: bool, who: str, reason: str) -> Any:
        return decide_run(ws, run_id, approved, who, reason=reason)

    return decide


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror or e} (pick another --port, or 0 for any free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_ui(args: argparse.Namespace) -> int:
    import uvicorn

    from kaizen.workflows.ui.app import create_app

    ws = find_workspace(args.workspace)
    token = env().ui_token or secrets.token_urlsafe(18)
    app = create_app(ws, token=token, decide=approval_decider(ws), poll_ms=max(200, args.poll_ms))
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if args.json:
        print(json.dumps({"url": url, "token": token, "workspace": str(ws.root)}), flush=True)
    else:
        print(f"kaizen ui: {url}?token={token}", flush=True)
        print(
            f"  workspace {ws.root}; approving needs the token (in that URL, or header X-Kaizen-Token); Ctrl-C stops",
            flush=True,
        )
    if not _is_loopback(host):
        info(
            f"warning: listening on {host}, reachable from other machines; anyone who can reach it can read the workspace"
        )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
