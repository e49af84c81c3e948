"""``AppServer``: the ``kaizen serve`` web app (:mod:`kaizen.workflows.serve.app`) on uvicorn, in a thread.

The socket is bound when the server is made (:func:`bind`), so a taken port fails at once and the URL is
known before uvicorn starts; ``stop()`` lets running requests finish (up to ``grace_s``).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

from kaizen.tools.env import env
from kaizen.tools.errors import ConfigError, KaizenError
from kaizen.workflows.serve.app import make_app
from kaizen.workflows.serve.router import ServingProxy


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. :class:`ConfigError` if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (a proto-0 socket
    # keeps Nagle on, and a response written as headers + body then waits ~40 ms for the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc} (pick another --port)") from None
    sock.set_inheritable(True)
    return sock


class AppServer:
    """``proxy``'s app on uvicorn, in a background thread, on a socket bound now.

    ``AppServer(proxy).start()`` returns once uvicorn accepts requests; ``url`` is known before that.
    ``stop()`` stops accepting, lets running requests finish (up to ``grace_s``) and joins the thread.
    """

    def __init__(self, proxy: ServingProxy, host: str = "127.0.0.1", port: int = 0, *, grace_s: float = 30.0):
        import uvicorn

        self.sock = bind(host, port)
        config = uvicorn.Config(
            make_app(proxy),
            log_config=None,
            log_level="warning",
            lifespan="on",
            access_log=env().serve_access_log,
            timeout_graceful_shutdown=int(grace_s),
            server_header=False,
            backlog=2048,
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self, timeout_s: float = 30.0) -> Self:
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="kaizen-serve", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise KaizenError(f"the kaizen serve web server did not start on {self.url}")
            time.sleep(0.01)
        return self

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Idempotent."""
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        self.sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
