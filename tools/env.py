"""Every ``KAIZEN_*`` environment variable, in one pydantic-settings object.

Why one object: a variable read in one place and spelled differently in another is a bug nobody
sees, and the README's list of variables must match the code. ``env()`` reads the environment at
the call (not at import), so a test or a caller that sets a variable first is always seen.
Workspace settings that belong to a project (model, gate, budget …) live in ``kaizen.yaml``
(``tools.config``), not here: these are the per-machine and per-process knobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kaizen.tools.errors import ConfigError


class Env(BaseSettings):
    """kaizen's environment variables (the field name, upper-cased, after ``KAIZEN_``)."""

    model_config = SettingsConfigDict(
        env_prefix="KAIZEN_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    home: Path | None = Field(
        None,
        description="The workspace's state folder (a `.kaizen` directory); default: `--workspace`, "
        "else the nearest `.kaizen/` upwards from the current directory.",
    )
    db_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the store instead of `.kaizen/kaizen.db` "
        "(e.g. postgresql+psycopg://user:pw@host/kaizen for a team).",
    )
    cache: Path | None = Field(
        None, description="Per-user cache (the converted embedded model); default `~/.cache/kaizen`."
    )
    device: str | None = Field(
        None, description="Force the torch device: cpu, cuda, cuda:1, mps (default: model.device, auto)."
    )
    host_id: str | None = Field(
        None,
        description="This machine's name in task locks (default: the host name). Processes with "
        "different host ids judge each other's locks by heartbeat only.",
    )
    lock_stale_after_s: float = Field(
        600.0,
        gt=0,
        description="A task lock held from another host with no heartbeat for this long is taken over.",
    )
    lock_heartbeat_s: float = Field(
        30.0, gt=0, description="How often a job refreshes its task lock's heartbeat."
    )
    vllm_python: str | None = Field(
        None, description="Python of the venv that runs vLLM servers (default: .venv-vllm/bin/python)."
    )
    vllm_engine: Literal["auto", "offline", "server"] | None = Field(
        None, description="`--backend vllm`: in-process engine (offline) or a server subprocess."
    )
    vllm_api_key: str | None = Field(
        None, description="API key sent to a vLLM server kaizen talks to (default: none)."
    )
    serve_access_log: bool = Field(
        False, description="`kaizen serve`: log every proxied request to stderr (1/true)."
    )
    ui_token: str | None = Field(
        None, description="`kaizen ui`: the token approvals need (default: a random one, printed at start)."
    )
    test_kill_after: str | None = Field(
        None,
        description="Tests only: SIGKILL the process right after this repair-graph node's "
        "side effects, before its checkpoint is written (kill -9 tests).",
    )

    @model_validator(mode="after")
    def _beat_inside_stale(self) -> Env:
        if self.lock_heartbeat_s * 2 > self.lock_stale_after_s:
            raise ValueError(
                f"KAIZEN_LOCK_HEARTBEAT_S={self.lock_heartbeat_s:g} must be at most half of "
                f"KAIZEN_LOCK_STALE_AFTER_S={self.lock_stale_after_s:g}, or a live lock looks stale"
            )
        return self


def env() -> Env:
    """The current environment's values, validated; a bad value is a ConfigError naming the variable."""
    try:
        return Env()
    except ValidationError as e:
        first = e.errors()[0]
        name = "KAIZEN_" + str(first["loc"][0]).upper() if first.get("loc") else "a KAIZEN_* variable"
        raise ConfigError(f"{name}: {first['msg']}") from None
