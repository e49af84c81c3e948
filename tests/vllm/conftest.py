"""A real vLLM OpenAI-compatible server on 127.0.0.1 serving the embedded default model.

Started once per test session (40-70 s on a CPU) with runtime LoRA loading enabled, and shared: tests
hot-swap adapters instead of restarting it. vLLM runs from its own venv (``make vllm-venv``); without
one the tests are skipped, unless ``KAIZEN_REQUIRE_VLLM=1`` (CI on a machine meant to have it), where
a missing vLLM is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
