"""The code reward: a completion's program run against the row's unit tests in a sandbox.

The sandbox is two layers: ``run_python_sandboxed`` (a throwaway directory, ``python -I``, a minimal
environment, rlimits, a killed process group) and, inside the child, an audit hook installed before the
program (``sandboxed_source``) that refuses sockets, new processes and ctypes.
"""

from __future__ import annotations

import os
import re
from typing import Any

from kaizen.tools.evaluate.metrics import extract_code, run_python_sandboxed
from kaizen.tools.train.rewards.text import completion_text

CODE_TIMEOUT_S = 5.0
"""Wall-clock limit per program (a row's ``expected["timeout_s"]`` overrides it)."""

# Installed first in the child: an audit hook (PEP 578) cannot be removed by the code that follows.
# It refuses sockets (so no network, even via _socket), new processes (no curl/ssh through a shell)
# and ctypes (the way around an audit hook). The child is also run by run_python_sandboxed: a
# throwaway directory, ``python -I``, an environment of PATH only, rlimits, a killed process group.
_NO_NETWORK_GUARD = """\
def __kaizen_guard():
    import sys
    blocked = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
               "os.forkpty", "pty.", "ctypes.", "winreg.", "_winapi.")
    def hook(event, args):
        if event.startswith(blocked):
            raise PermissionError(f"kaizen sandbox: {event} is not allowed (no network, no processes)")
    sys.addaudithook(hook)
__kaizen_guard()
del __kaizen_guard
"""
_FUTURE_RE = re.compile(r"^from\s+__future__\s+import[^\n]*\n?", re.MULTILINE)


def sandboxed_source(program: str, tests: str) -> str:
    """The script ``code_unit_tests`` runs: the no-network guard, the program, then its tests.

    ``from __future__`` lines of the program move to the top (Python requires them first).

    Examples:
        >>> src = sandboxed_source("from __future__ import annotations\\ndef f(): return 1", "assert f() == 1")
        >>> src.splitlines()[0], "addaudithook" in src, src.rstrip().endswith("assert f() == 1")
        ('from __future__ import annotations', True, True)
    """
    futures = "".join(m.group(0).rstrip("\n") + "\n" for m in _FUTURE_RE.finditer(program))
    return futures + _NO_NETWORK_GUARD + "\n" + _FUTURE_RE.sub("", program) + "\n\n" + tests + "\n"


def _code_timeout(gold: Any) -> float:
    if isinstance(gold, dict) and isinstance(gold.get("timeout_s"), (int, float)) and gold["timeout_s"] > 0:
        return float(gold["timeout_s"])
    return CODE_TIMEOUT_S


def _code_tests(gold: Any) -> str:
    return str(gold.get("tests") or "") if isinstance(gold, dict) else ""


def code_unit_tests(completions: list[Any], expected: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion's program passes the row's tests in the sandbox, else 0.0.

    The program is the completion's first ```python fence (else all of it, ``extract_code``), run
    followed by ``expected["tests"]`` (asserts) in a fresh ``python -I`` subprocess
    (``run_python_sandboxed``: temporary directory, minimal environment, 1 GiB address space, CPU
    and file-size limits, the process group killed at the timeout) with an audit hook that refuses
    sockets, subprocesses and ctypes (``sandboxed_source``). Passing needs exit code 0 *and* every
    test run. Programs run up to 4 at a time. A row without tests scores 0.0.

    Args:
        completions: Completions, strings or conversational.
        expected: ``{"tests": "<python asserts>", "timeout_s"?: float}`` per completion.
        **kwargs: Other dataset columns (ignored).

    Returns:
        One reward per completion.

    Examples:
        >>> code_unit_tests(["```python\\ndef add(a, b):\\n    return a + b\\n```", "def add(a, b): return a - b"],
        ...                 [{"tests": "assert add(2, 3) == 5"}] * 2)
        [1.0, 0.0]
        >>> code_unit_tests(["import socket\\nsocket.create_connection(('127.0.0.1', 9))"], [{"tests": "pass"}])
        [0.0]
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(pair: tuple[Any, Any]) -> float:
        comp, gold = pair
        tests = _code_tests(gold)
        if not tests.strip():
            return 0.0
        ok, _why = run_python_sandboxed(
            sandboxed_source(extract_code(completion_text(comp)), tests), _code_timeout(gold)
        )
        return 1.0 if ok else 0.0

    pairs = list(zip(completions, expected, strict=True))
    if len(pairs) <= 1:
        return [one(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=min(4, len(pairs), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, pairs))
