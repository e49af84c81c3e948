"""Code: the program in an output, run with its tests in a resource-limited subprocess (pass@1).

Generated code is untrusted: each example runs in a fresh temporary directory, in an isolated
interpreter with a minimal environment, under memory, CPU, file-size and wall-clock limits, and
passes only if it reaches a random end-of-script marker.
"""

from __future__ import annotations

import math
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kaizen.tools.evaluate.common import FENCE_RE, check_expected, check_lengths

_MEMORY_LIMIT = 1 << 30  # 1 GiB address space
_FILE_LIMIT = 16 << 20  # 16 MiB per written file (stdout/stderr included)


def extract_code(text: str) -> str:
    """The program in a model output: the first ```python fence, else the first fence, else all.

    Args:
        text: A model output.

    Returns:
        Python source.
    """
    blocks = [(m.group(1).lower(), m.group(2)) for m in FENCE_RE.finditer(text or "")]
    for lang, body in blocks:
        if lang in ("python", "py", "python3"):
            return body
    if blocks:
        return blocks[0][1]
    return text or ""


def _limits(timeout_s: float):  # pragma: no cover - runs in the child
    # CPU limit a little above the wall-clock limit: a busy loop hits the (clearer) timeout first,
    # while the rlimit still stops a child that escaped the process-group kill.
    cpu = max(1, math.ceil(timeout_s)) + 1

    def apply() -> None:
        for res, soft, hard in (
            (resource.RLIMIT_AS, _MEMORY_LIMIT, _MEMORY_LIMIT),
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_FSIZE, _FILE_LIMIT, _FILE_LIMIT),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            try:
                resource.setrlimit(res, (soft, hard))
            except (ValueError, OSError):
                pass

    return apply


def run_python_sandboxed(source: str, timeout_s: float = 10.0) -> tuple[bool, str | None]:
    """Run ``source`` in a throwaway, resource-limited Python subprocess.

    The child runs ``sys.executable -I`` in a fresh temporary directory with an environment of
    only ``PATH``, stdin closed, and limits on address space (1 GiB), CPU time, file size and
    core dumps; its whole process group is killed at the timeout. Success needs exit code 0
    *and* a random end-of-script marker on stdout, so a program that calls ``sys.exit(0)`` or
    ``os._exit(0)`` before the tests run does not pass.

    Args:
        source: Python source (program followed by its tests).
        timeout_s: Wall-clock limit in seconds.

    Returns:
        ``(passed, reason)`` where ``reason`` says why it failed (``None`` when it passed).
    """
    marker = "kaizen-done-" + secrets.token_hex(8)
    script = f"{source}\n\n__import__('os').write(1, b'\\n{marker}\\n')\n"
    with tempfile.TemporaryDirectory(prefix="kaizen-code-") as tmp:
        path = Path(tmp) / "solution.py"
        path.write_text(script, encoding="utf-8")
        out_path, err_path = Path(tmp) / ".stdout", Path(tmp) / ".stderr"
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            proc = subprocess.Popen(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    # one BLAS/OpenMP thread, so `import numpy` fits in the address-space limit
                    "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1",
                },
                stdin=subprocess.DEVNULL,
                stdout=out_f,
                stderr=err_f,
                preexec_fn=_limits(timeout_s),
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        if rc is None:
            return False, f"timeout after {timeout_s:g}s"
        stdout = out_path.read_bytes()
        if rc == 0 and marker.encode() in stdout:
            return True, None
        err = err_path.read_bytes().decode("utf-8", "replace").strip().splitlines()
        if rc == 0:
            return False, "exited before the tests finished"
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = str(-rc)
            return False, f"killed by {sig}" + (f": {err[-1]}" if err else "")
        return False, err[-1] if err else f"exit code {rc}"


def code_metrics(
    outputs: list[str], expected: list[dict[str, Any]], timeout_s: float = 10.0
) -> dict[str, Any]:
    """pass@1 of generated programs against assert-based tests, each run in a sandbox.

    The program is taken from a ```python fence when there is one (``extract_code``) and run
    followed by ``expected[i]["tests"]`` via ``run_python_sandboxed``. Examples run one after
    another.

    Args:
        outputs: Raw model outputs.
        expected: ``{"tests": "<python code with asserts>"}`` per output.
        timeout_s: Wall-clock limit per example.

    Returns:
        ``pass@1``, ``correct`` and ``errors`` (why each example failed; ``None`` when it passed).

    Raises:
        DataError: When lengths differ or an expected value has the wrong type.
    """
    check_lengths(outputs, expected)
    check_expected("code", expected, _is_code_tests, 'a dict {"tests": "<python code with asserts>"}')
    correct: list[bool] = []
    errors: list[str | None] = []
    for out, exp in zip(outputs, expected, strict=True):
        ok, why = run_python_sandboxed(extract_code(out or "") + "\n" + str(exp["tests"]), timeout_s)
        correct.append(ok)
        errors.append(why)
    return {"pass@1": sum(correct) / len(correct) if correct else 0.0, "correct": correct, "errors": errors}


def _is_code_tests(e: Any) -> bool:
    return isinstance(e, dict) and isinstance(e.get("tests"), str) and bool(e["tests"].strip())
