"""The LangGraph checkpointer that goes with the store: durable runs on SQLite or PostgreSQL.

A workspace on the default SQLite store keeps its graph checkpoints in ``.kaizen/checkpoints.db``
(``SqliteSaver``, WAL). A store on PostgreSQL (``KAIZEN_DB_URL=postgresql+psycopg://…``) keeps them in
the same database (``PostgresSaver``: tables ``checkpoints``, ``checkpoint_blobs``, ``checkpoint_writes``,
``checkpoint_migrations``), so every host that shares the store can resume a run another host started.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kaizen.tools.errors import ToolUnavailableError

# pg_advisory_lock key: two processes setting up the checkpoint tables at once would both run the
# migrations and collide on checkpoint_migrations' primary key.
_SETUP_LOCK = 0x6B61697A656E  # "kaizen"


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://…``) as the plain libpq URL psycopg connects with."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def checkpointer(db_url: str, sqlite_path: Path) -> Iterator[Any]:
    """A LangGraph checkpointer beside the store at ``db_url``, open for the block.

    PostgreSQL store → ``PostgresSaver`` in the same database (its tables created on first use);
    anything else → ``SqliteSaver`` on ``sqlite_path`` (the workspace's ``checkpoints.db``).
    """
    if is_postgres(db_url):
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            raise ToolUnavailableError(
                "langgraph-checkpoint-postgres (a PostgreSQL store's run checkpoints)",
                "pip install langgraph-checkpoint-postgres 'psycopg[binary]'",
            ) from None
        with PostgresSaver.from_conn_string(libpq_url(db_url)) as saver:
            saver.conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
            try:
                saver.setup()  # idempotent: creates or migrates the checkpoint tables
            finally:
                saver.conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(sqlite_path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()
