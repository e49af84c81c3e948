"""A real vLLM OpenAI-compatible server on 127.0.0.1 serving the embedded default model.

Started once per test session (40-70 s on a CPU) with runtime LoRA loading enabled, and shared: tests
hot-swap adapters instead of restarting it. vLLM runs from its own venv (``make vllm-venv``); without
one the tests are skipped, unless ``KAIZEN_REQUIRE_VLLM=1`` (CI on a machine meant to have it), where
a missing vLLM is a failure rather than a silent skip.

The ``kaizen serve`` tests share their set-up here: a workspace with the support-intents task and the
committed v1 adapter (``support_intents_ws``), and a ``kaizen serve`` subprocess stopped with SIGTERM at
the end (``kaizen_serve``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from support_intents import LABELS, ROOT, SYSTEM, TASK, V1_ADAPTER

from kaizen.workflows.cli.main import main

SERVED_NAME = "smollm2-135m"


def require_vllm() -> bool:
    return os.environ.get("KAIZEN_REQUIRE_VLLM", "").strip() == "1"


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The python that runs vLLM, or skip (fail under KAIZEN_REQUIRE_VLLM=1) saying how to get one."""
    from kaizen.tools.errors import ToolUnavailableError
    from kaizen.tools.serve.vllm_server import find_vllm_python

    try:
        return find_vllm_python()
    except ToolUnavailableError as exc:
        if require_vllm():
            pytest.fail(f"KAIZEN_REQUIRE_VLLM=1 but {exc}", pytrace=False)
        pytest.skip(f"no vLLM: {exc}")


@pytest.fixture(scope="session")
def vllm_server(vllm_python: str, smollm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The running :class:`kaizen.tools.serve.vllm_server.VLLMServer`; stopped at the end of the session."""
    from kaizen.tools.serve.vllm_server import VLLMServer

    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with VLLMServer(python=vllm_python).start(
        smollm_dir, served_model_name=SERVED_NAME, max_lora_rank=16, max_loras=2, max_model_len=2048,
        log_file=log, cpu_threads=1,  # OpenMP threads spinning against other jobs cost 3-5x (VLLMServer.start)
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="session")
def support_intents_ws(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make(name, version, promote=False)``: a new workspace with the support-intents task and the
    committed v1 adapter registered as ``version`` (production when ``promote``)."""
    from kaizen.tools.workspace import init_workspace

    def make(name: str, version: str, *, promote: bool = False) -> Path:
        ws = tmp_path_factory.mktemp(name)
        init_workspace(ws)
        kz = ["-w", str(ws)]
        assert main([*kz, "task", "add", TASK, "--kind", "classification", "--labels", ",".join(LABELS),
                     "--system-prompt", SYSTEM]) == 0  # fmt: skip
        add = [*kz, "models", "add", version, "--path", str(V1_ADAPTER), "--task", TASK]
        assert main(add + (["--promote"] if promote else [])) == 0
        return ws

    return make


@pytest.fixture(scope="session")
def kaizen_serve() -> Callable[..., AbstractContextManager[subprocess.Popen]]:
    """``with kaizen_serve(ws, *flags, env=...) as proc``: ``kaizen serve --task support-intents --port 0
    *flags --json`` as a subprocess (stdout piped: its first line is the ready JSON; stderr in
    ``ws/serve.err``), stopped with SIGTERM (killed after 60 s) when the block ends."""

    @contextmanager
    def start(ws: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
        environ = {k: v for k, v in os.environ.items() if k != "KAIZEN_HOME"}
        environ |= {"PYTHONUNBUFFERED": "1", **(env or {})}
        err = open(ws / "serve.err", "w")  # noqa: SIM115 - closed below
        argv = ["-w", str(ws), "serve", "--task", TASK, "--port", "0", *flags, "--json"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "kaizen.workflows.cli.main", *argv],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            err.close()

    return start
