"""Process helpers shared by the trainer launcher, the task lock, serving and the CLI.

Why one module: pid checks and signal handling must agree everywhere (a zombie is dead, SIGTERM stops a
job the way Ctrl-C does), and unrelated modules should not import each other to reach them.
"""

from __future__ import annotations

import os
import signal
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
