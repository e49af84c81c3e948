"""The store's connection: one engine per database URL and the transaction every query runs in.

Split from the queries (``catalog``, ``traces``, ``jobs``, ``browse``) so that each of those reads as
the questions it answers, while opening, failing and read-only mode are decided once, here: a database
that cannot be used raises ``WorkspaceError`` with the fix instead of the driver's exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from sqlalchemy import event
from sqlmodel import Session

from kaizen.tools.errors import NotFoundError, WorkspaceError
from kaizen.tools.store import dberror
from kaizen.tools.store.db import check_schema, create_schema, make_engine

R = TypeVar("R")


def get_or_raise(s: Session, table: type[R], key: Any, missing: str) -> R:
    """The row of ``table`` at primary ``key`` in ``s``; ``NotFoundError(missing)`` when there is none."""
    row = s.get(table, key)
    if row is None:
        raise NotFoundError(missing)
    return row


def as_utc(t: datetime | None) -> datetime | None:
    """Naive timestamps in logs are taken as UTC; aware ones are converted."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class StoreBase:
    """The engine and the transaction that every part of ``Store`` runs its queries in."""

    def __init__(self, url: str, *, create: bool = False):
        """Open the store at ``url`` (``create``: make the schema; otherwise the database must exist already).

        Raises:
            WorkspaceError: The database is missing (a read never creates one), damaged, not kaizen's,
                read-only, unreachable, or the URL is not a database URL — one line with the fix.
        """
        self.url = url
        path = dberror.sqlite_file(url)
        if path is not None and not create and not path.exists():
            raise WorkspaceError(
                f"database {path} does not exist (deleted or moved?): restore it from a backup, or run "
                "`kaizen init` to start an empty one"
            )
        try:
            self.engine = make_engine(url)
            if create:
                create_schema(self.engine, url)
            check_schema(self.engine, url)
        except ImportError as e:
            raise WorkspaceError(
                f"database URL {dberror.mask_url(url)} needs a driver that is not installed ({e}): "
                "install it, or fix KAIZEN_DB_URL"
            ) from None
        except Exception as e:
            if (err := dberror.describe(e, url)) is not None:
                raise err from None
            raise

    @classmethod
    def open_read_only(cls, url: str) -> Self:
        """A store whose connections cannot write (SQLite ``query_only``; PostgreSQL read-only transactions).

        The dashboard reads through one: SQLite in WAL mode lets a running repair or tick write while it
        reads, and ``query_only`` guarantees the reader itself never takes the write lock.
        """
        store = cls(url)

        def _readonly(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if url.startswith("sqlite"):
                cur.execute("PRAGMA query_only=ON")
            elif url.startswith("postgres"):
                cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.close()

        event.listen(store.engine, "connect", _readonly)
        store.engine.dispose()  # connections opened by the schema check were not read-only: drop them
        return store

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error.

        A database that cannot be used (damaged, read-only, unreachable) raises ``WorkspaceError``
        with the fix instead of the driver's exception.
        """
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise
        except Exception as e:
            if (err := dberror.describe(e, self.url)) is not None:
                raise err from None
            raise

    def close(self) -> None:
        self.engine.dispose()
