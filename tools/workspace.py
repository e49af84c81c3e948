"""The workspace: where kaizen keeps its state, and how a command finds it.

Layout (``kaizen init DIR``)::

    DIR/kaizen.yaml          settings (validated by tools.config)
    DIR/.kaizen/kaizen.db    the store (SQLite; KAIZEN_DB_URL overrides)
    DIR/.kaizen/checkpoints.db  LangGraph checkpoints (durable runs)
    DIR/.kaizen/artifacts/   datasets, adapters, eval outputs, reports

A command finds the workspace from ``--workspace``, else ``$KAIZEN_HOME`` (the ``.kaizen`` folder
itself), else the nearest ``.kaizen/`` in the current directory or its parents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kaizen.tools.config import Settings, load_settings, settings_template
from kaizen.tools.env import env
from kaizen.tools.errors import NotFoundError, WorkspaceError
from kaizen.tools.store import Store
from kaizen.tools.store.dberror import mask_url
from kaizen.tools.store.tables import ModelVersionRow

STATE_DIR = ".kaizen"


@dataclass
class Workspace:
    root: Path
    state: Path

    @property
    def config_path(self) -> Path:
        return self.root / "kaizen.yaml"

    @property
    def artifacts(self) -> Path:
        return self.state / "artifacts"

    @property
    def checkpoints_path(self) -> Path:
        return self.state / "checkpoints.db"

    @property
    def db_url(self) -> str:
        return env().db_url or f"sqlite:///{self.state / 'kaizen.db'}"

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def store(self) -> Store:
        store = Store(self.db_url)
        if self.settings.tasks:
            store.sync_declared_tasks(self.settings.tasks)
        return store

    @property
    def db_url_masked(self) -> str:
        """``db_url`` with its password as ``***``: what messages, logs and reports may show."""
        return mask_url(self.db_url)

    def artifact_dir(self, *parts: str) -> Path:
        p = self.artifacts.joinpath(*parts)
        _mkdir(p)
        return p


def _mkdir(p: Path) -> None:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkspaceError(
            f"cannot create {p}: {e.strerror or e}: make the workspace writable by this user "
            "(or point KAIZEN_HOME at a writable folder)"
        ) from None


def init_workspace(directory: Path) -> tuple[Workspace, bool]:
    """Create (or complete) a workspace in ``directory``. Returns (workspace, created_now).

    Safe to run twice: an existing kaizen.yaml is never overwritten and the database is only
    created if missing.
    """
    directory = directory.resolve()
    env_home = env().home
    state = env_home.resolve() if env_home else directory / STATE_DIR
    root = state.parent if env_home else directory
    created = not (state / "kaizen.db").exists() and not env().db_url
    _mkdir(state / "artifacts")
    ws = Workspace(root=root, state=state)
    if not ws.config_path.exists() and not ws.config_path.is_symlink():
        try:
            ws.config_path.write_text(settings_template())
        except OSError as e:
            raise WorkspaceError(
                f"cannot write {ws.config_path}: {e.strerror or e}: make {root} writable by this user"
            ) from None
    settings = ws.settings  # validate before touching the db
    store = Store(ws.db_url, create=True)
    try:
        store.get_model_version("base")
    except NotFoundError:  # first init: register the base
        store.add_model_version(
            ModelVersionRow(
                name="base", kind="base", base_ref=settings.model.base, recipe={"source": "kaizen init"}
            )
        )
    store.close()
    return ws, created


def find_workspace(explicit: Path | None = None) -> Workspace:
    """Locate the workspace for a command, or say how to create one."""
    if explicit is not None:
        state = explicit.resolve() / STATE_DIR
        if not state.is_dir():
            raise WorkspaceError(f"no kaizen workspace in {explicit}: run `kaizen init {explicit}`")
        return Workspace(root=explicit.resolve(), state=state)
    env_home = env().home
    if env_home:
        state = env_home.resolve()
        if not state.is_dir():
            raise WorkspaceError(
                f"KAIZEN_HOME={env_home} does not exist: run `kaizen init` or fix KAIZEN_HOME"
            )
        return Workspace(root=state.parent, state=state)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / STATE_DIR).is_dir():
            return Workspace(root=d, state=d / STATE_DIR)
    raise WorkspaceError(f"no kaizen workspace in {here} or its parents: run `kaizen init`")
