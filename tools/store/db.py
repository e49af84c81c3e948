"""Engine creation: SQLite tuned for several concurrent writers, any SQLAlchemy URL accepted.

The serving proxy, the scheduler and a repair run may all write at once, so SQLite runs in WAL
mode with a busy timeout and foreign keys on. The schema version is recorded in ``meta`` so an
old database gets a clear message instead of a confusing SQL error.
"""

from __future__ import annotations

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel, create_engine, select

from kaizen.tools.errors import WorkspaceError
from kaizen.tools.store.dberror import mask_url
from kaizen.tools.store.tables import ADDITIVE_UPGRADE_FROM, SCHEMA_VERSION, Meta, utcnow

BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def engine_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: plain ``postgresql://`` (or ``postgres://``) means psycopg 3,
    kaizen's own dependency — SQLAlchemy would otherwise look for psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL a connect timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("postgres"):
        # pre-ping: a server restarted between two ticks costs a reconnect, not an error. A host that does
        # not answer fails after 10 s instead of the OS's TCP timeout (minutes).
        engine = create_engine(
            engine_url(url),
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10, "application_name": "kaizen"},
        )
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def create_schema(engine: Engine, url: str = "") -> None:
    """Create every table and record the schema version (idempotent).

    A database that already holds tables is checked first, so ``kaizen init`` against another
    application's database (or an old kaizen one) refuses instead of adding tables to it.
    """
    if inspect(engine).get_table_names():
        check_schema(engine, url or str(engine.url))
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s:
        if s.get(Meta, "schema_version") is None:
            s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            s.add(Meta(key="created_at", value=utcnow().isoformat()))
            s.commit()


def check_schema(engine: Engine, url: str) -> None:
    """Refuse a database that is not kaizen's or has another schema version, saying what to do."""
    tables = set(inspect(engine).get_table_names())
    if "meta" not in tables:
        if not tables:
            raise WorkspaceError(f"database {mask_url(url)} is empty: run `kaizen init` first")
        raise WorkspaceError(
            f"database {mask_url(url)} is not a kaizen database (no meta table): point KAIZEN_DB_URL elsewhere"
        )
    with Session(engine) as s:
        row = s.exec(select(Meta).where(Meta.key == "schema_version")).first()
    found = int(row.value) if row else 0
    if ADDITIVE_UPGRADE_FROM <= found < SCHEMA_VERSION:
        _upgrade_additive(engine)
        return
    if found != SCHEMA_VERSION:
        hint = (
            "upgrade kaizen (`pip install -U kaizen`)"
            if found > SCHEMA_VERSION
            else "this database predates the current schema: export what you need and run `kaizen init` in a new directory"
        )
        raise WorkspaceError(
            f"database {mask_url(url)} has schema v{found}, this kaizen expects v{SCHEMA_VERSION}: {hint}"
        )


def _upgrade_additive(engine: Engine) -> None:
    """Bring an older schema up to date when the newer one only adds tables or nullable columns (no data moves)."""
    SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)
    with Session(engine) as s:
        row = s.get(Meta, "schema_version")
        assert row is not None
        row.value = str(SCHEMA_VERSION)
        s.add(row)
        s.commit()


def _add_missing_columns(engine: Engine) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each nullable column a table lacks (old rows read it as NULL).

    Two processes opening an old database at once may race here: a column the other one added
    in the meantime is not an error.
    """
    for table in SQLModel.metadata.sorted_tables:
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable or column.primary_key:
                raise WorkspaceError(
                    f"cannot add column {table.name}.{column.name} in place (it is required): "
                    "export what you need and run `kaizen init` in a new directory"
                )
            prep = engine.dialect.identifier_preparer
            ddl = (
                f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {prep.format_column(column)} "
                f"{column.type.compile(dialect=engine.dialect)}"
            )
            try:
                with engine.begin() as conn:
                    conn.execute(text(ddl))
            except DBAPIError:
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
