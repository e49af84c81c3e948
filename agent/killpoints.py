"""Test-only kill points for the repair graph: ``KAIZEN_TEST_KILL_AFTER=<node>``.

When that node returns — its side effects (files, rows, a trainer, an alias move) done, its
checkpoint not yet written — the process SIGKILLs itself, exactly like ``kill -9`` at the worst
moment. The kill -9 tests (tests/integration/test_kill9.py) use it to prove that every node can be
re-run by ``kaizen runs resume`` without duplicating anything. Unset (always, outside tests), the
graph's nodes are left untouched.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from kaizen.tools.env import env


def kill_point(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself, or — when ``KAIZEN_TEST_KILL_AFTER`` names this node — ``fn`` followed by SIGKILL."""
    if env().test_kill_after != name:
        return fn

    @functools.wraps(fn)  # keeps the signature LangGraph reads to pass config/runtime
    def killed_after(*args: Any, **kwargs: Any) -> Any:
        fn(*args, **kwargs)
        print(
            f"kaizen: KAIZEN_TEST_KILL_AFTER={name}: SIGKILL before its checkpoint",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")

    return killed_after
