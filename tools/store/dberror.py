"""What went wrong with a database, in one line a person can act on.

SQLAlchemy reports an unusable store as a driver exception (``file is not a database``,
``attempt to write a readonly database``, ``Could not parse SQLAlchemy URL`` …) with a traceback.
The store turns every such failure into a :class:`WorkspaceError` saying what is wrong and how to fix
it, with any password in the URL masked: the URL often comes from ``KAIZEN_DB_URL``, and messages,
logs and reports must never carry its secret.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, NoSuchModuleError, OperationalError

from kaizen.tools.env import env
from kaizen.tools.errors import WorkspaceError

_USERINFO = re.compile(r"(//[^/:@]*:)([^@/]*)@")


def mask_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (also for a URL SQLAlchemy cannot parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(r"\1***@", url)


def mask_secrets(text: str, url: str | None = None) -> str:
    """``text`` with the password of ``url`` (default: ``KAIZEN_DB_URL``) replaced by ``***``."""
    url = url if url is not None else (env().db_url or "")
    if not url:
        return text
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        m = _USERINFO.search(url)
        password = m.group(2) if m else None
    text = text.replace(url, mask_url(url))
    return text.replace(str(password), "***") if password else text


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (``None`` for another database or an in-memory one)."""
    if not url.startswith("sqlite"):
        return None
    try:
        database = make_url(url).database
    except (ArgumentError, ValueError):
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _where(url: str) -> str:
    path = sqlite_file(url)
    return str(path) if path is not None else mask_url(url)


def _env_hint(url: str) -> str:
    return "fix or unset KAIZEN_DB_URL" if env().db_url == url else "check the workspace"


def describe(exc: BaseException, url: str) -> WorkspaceError | None:
    """The one-line error for a database failure, or ``None`` when ``exc`` is not about the database itself.

    Integrity errors are left alone: they are a conflict the caller handles (or a bug), not an
    unusable store. The password of ``url`` never appears in the message.
    """
    err = _describe(exc, url)
    return None if err is None else WorkspaceError(mask_secrets(str(err), url))


def _describe(exc: BaseException, url: str) -> WorkspaceError | None:
    where = _where(url)
    if isinstance(exc, ArgumentError):
        return WorkspaceError(
            f"{mask_url(url)!r} is not a database URL ({_first_line(exc)}): use sqlite:////path/kaizen.db "
            f"or postgresql+psycopg://user:password@host/db; {_env_hint(url)}"
        )
    if isinstance(exc, NoSuchModuleError):
        return WorkspaceError(
            f"database URL {mask_url(url)}: unknown database kind or its driver is not installed "
            f"({_first_line(exc)}); {_env_hint(url)}"
        )
    if isinstance(exc, IntegrityError) or not isinstance(exc, DatabaseError):
        return None
    msg = _first_line(exc.orig if isinstance(exc.orig, BaseException) else exc).lower()
    if "file is not a database" in msg or "malformed" in msg or "not a database" in msg:
        return WorkspaceError(
            f"database {where} is damaged or not a SQLite database ({msg}): restore it from a backup, "
            "or move it away and run `kaizen init` to start an empty one"
        )
    if "readonly" in msg or "read-only" in msg:
        return WorkspaceError(
            f"database {where} is read-only ({msg}): give this user write permission on the file and "
            "its folder (SQLite writes -wal and -shm files beside it), or run kaizen as its owner"
        )
    if "unable to open database file" in msg:
        folder = Path(where).parent if sqlite_file(url) else where
        return WorkspaceError(
            f"cannot open database {where} ({msg}): check that {folder} exists and is writable by "
            "this user (SQLite writes -wal and -shm files beside the database)"
        )
    if "database is locked" in msg or "database table is locked" in msg:
        return WorkspaceError(
            f"database {where} is busy: another kaizen process held its write lock too long "
            f"({msg}); retry in a moment"
        )
    if "disk is full" in msg or "disk i/o error" in msg:
        return WorkspaceError(f"database {where}: {msg}: free disk space (or check the disk) and retry")
    if isinstance(exc, OperationalError):
        return WorkspaceError(
            f"cannot use database {mask_url(url)} ({mask_secrets(msg, url)}): check that it is reachable "
            f"and the credentials are right; {_env_hint(url)}"
        )
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
