"""Typed exceptions. The CLI turns each into one clear line and a non-zero exit (no traceback).

Every error says what is wrong *and* how to fix it, because the person reading it is usually
in the middle of something else.
"""

from __future__ import annotations


class KaizenError(Exception):
    """Base class of every error kaizen raises on purpose."""

    exit_code = 1


class ConfigError(KaizenError):
    """kaizen.yaml, a flag or an environment variable is invalid."""

    exit_code = 2


class WorkspaceError(KaizenError):
    """No workspace, or a workspace/database kaizen cannot use."""

    exit_code = 2


class NotFoundError(KaizenError):
    """A task, trace, model version, run … that does not exist."""


class LogFormatError(KaizenError):
    """A log line kaizen cannot import; names the file, line and field."""

    exit_code = 2

    def __init__(self, path: str, line: int, field: str, problem: str):
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


class DataError(KaizenError):
    """Evaluation or training data that does not fit the task."""

    exit_code = 2


class ModelError(KaizenError):
    """A model that cannot be found, loaded or saved."""


class TrainingFailedError(KaizenError):
    """The training subprocess failed; carries its return code and the tail of its log."""

    def __init__(self, returncode: int, log_tail: str, job_dir: str = ""):
        self.returncode, self.log_tail, self.job_dir = returncode, log_tail, job_dir
        tail = log_tail.strip().splitlines()[-1:] or ["(no output)"]
        super().__init__(
            f"training failed (exit {returncode}) in {job_dir or 'job dir'}: {tail[0]} — full log: "
            f"{job_dir}/train.log"
        )


class ToolUnavailableError(KaizenError):
    """An optional dependency is missing; carries the command that installs it."""

    def __init__(self, what: str, install_hint: str):
        self.install_hint = install_hint
        super().__init__(f"{what} is not installed: run `{install_hint}`")


class LockedError(KaizenError):
    """Another run holds the task's lock."""

    exit_code = 4


class ServingError(KaizenError):
    """A serving proxy or vLLM server refused a request or cannot be reached; the message carries what it said."""


class ProxyError(KaizenError):
    """An error answer of ``kaizen serve``'s proxy: the HTTP status, the message and the OpenAI error type.

    Raised inside the proxy and turned into ``{"error": {"message", "type", "code"}}`` with ``status``;
    raised outside a request (start-up), the CLI prints its message like any other error.
    """

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
