"""Process helpers shared by the trainer launcher, the task lock, serving and the CLI.

Why one module: pid checks and signal handling must agree everywhere (a zombie is dead, SIGTERM stops a
job the way Ctrl-C does), and unrelated modules should not import each other to reach them.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as a token no other process on this host ever shares.

    ``<boot id>:<start time in clock ticks since boot>`` (field 22 of ``/proc/<pid>/stat``): a pid
    reused by a later process, even after a reboot, gives a different token. None where it cannot
    be known (no such process, no ``/proc`` as on macOS): callers then fall back to the pid alone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces and ")"
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except (OSError, IndexError):
        return None
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def host_id() -> str:
    """This machine's name in task locks: ``$KAIZEN_HOST_ID``, else the host name.

    Processes on the same host are judged by pid and start time; a holder with another host id only
    by its heartbeat (its pid means nothing here). Overriding it lets one machine act as two hosts
    (tests of a shared PostgreSQL store, containers that share a host name)."""
    from kaizen.tools.env import env

    return env().host_id or socket.gethostname()


class sigterm_as_interrupt:  # noqa: N801 - used as a context manager
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only), so ``finally`` clauses —
    stopping a vLLM server this process started — run when a supervisor or ``timeout`` stops us."""

    def __enter__(self) -> sigterm_as_interrupt:
        self.old = None
        if threading.current_thread() is threading.main_thread():

            def handler(*_: Any) -> None:
                raise KeyboardInterrupt

            self.old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
