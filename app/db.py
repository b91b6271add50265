"""Tables, the database connection and schema migrations.

Tables are SQLAlchemy Core; migrations are Alembic revisions under
`app/migrations/versions`, run on start and by `python -m app migrate`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its error class is used
import databases
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles

from app.database import Database
from app.settings import Settings

# Seconds a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0
# Seconds to open a PostgreSQL connection. asyncpg waits 60 by default: a database host
# that drops packets would hold each request that long instead of failing fast.
CONNECT_TIMEOUT = 5.0
# Seconds a starting process waits for another one's migration (a big table takes a while).
MIGRATION_WAIT = 600.0
# Key of the PostgreSQL advisory lock held while migrating. Any fixed number works, as long
# as every gateway process uses the same one ("jobs" in ASCII).
MIGRATION_LOCK_KEY = 0x6A6F6273
APPLICATION_NAME = "jobs-gateway"

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    # Insertion order: newest-first listing pages on it (keyset, never OFFSET). The
    # primary key on SQLite (its rowid); on PostgreSQL the key is (tenant, seq), see
    # migration 0003. Only migrations create tables, so this need not say so.
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("status", sa.SmallInteger(), nullable=False),
    sa.Column("progress", sa.SmallInteger(), nullable=False),
    sa.Column("profile", sa.Uuid(), nullable=False),
    sa.Column("video", sa.Uuid(), nullable=False),
    # Ordered UUIDs in one column, one read: uuid[] on PostgreSQL (typed, 16 bytes each),
    # a JSON array of strings on SQLite (migration 0002).
    sa.Column(
        "inputs",
        sa.JSON().with_variant(postgresql.ARRAY(sa.Uuid()), "postgresql"),
        nullable=False,
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # Taken afresh by every change (NEXT_CHANGE): processes catch up on changes past the
    # last they saw (app.jobs.changes). Migration 0005.
    sa.Column("change_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
)


class _NextChange(sa.sql.expression.ColumnElement[int]):
    """The next change number, taken in the statement that makes the change."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(_NextChange, "postgresql")
def _next_change_postgresql(element: _NextChange, compiler: Any, **kw: Any) -> str:
    # Numbers are taken in statement order but may commit out of it (by milliseconds):
    # app.jobs.changes reads PostgreSQL's changes once more a poll later.
    return "nextval('jobs_change_seq')"


@compiles(_NextChange, "sqlite")
def _next_change_sqlite(element: _NextChange, compiler: Any, **kw: Any) -> str:
    # SQLite runs one writer at a time, so the highest number so far plus one (an
    # index lookup) commits in order and never repeats: jobs are never removed, only
    # marked deleted, so the highest number is never given back.
    return "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM jobs)"


NEXT_CHANGE = _NextChange()

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened or reached; the message says where and why."""


def create_database(settings: Settings) -> databases.Database:
    if settings.is_sqlite:
        # FAST_PATHS off: `databases`' own SQLite backend (a connection per query).
        database_class = Database if settings.fast_paths else databases.Database
        return database_class(settings.database_url, timeout=SQLITE_BUSY_TIMEOUT)
    # One connection at start, more on demand up to the pool size: N processes hold at
    # most N x DATABASE_POOL_SIZE connections (PostgreSQL allows 100 by default). The
    # application name tells them apart in pg_stat_activity.
    return Database(
        settings.database_url,
        min_size=1,
        max_size=settings.database_pool_size,
        server_settings={"application_name": APPLICATION_NAME},
        timeout=CONNECT_TIMEOUT,
    )


def alembic_config() -> Config:
    """The one Alembic configuration: migrations in app/migrations/."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _async_url(settings: Settings) -> str:
    if settings.is_sqlite:
        return "sqlite+aiosqlite:///" + str(settings.sqlite_path)
    return "postgresql+asyncpg://" + settings.database_url.split("://", 1)[1]


def _prepare_sqlite(settings: Settings) -> None:
    path = settings.sqlite_path
    if not path.parent.exists():
        raise DatabaseUnavailable(
            f"cannot open SQLite database {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
    try:
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT) as conn:
            # WAL lets readers go on while a writer commits; it is kept in the file.
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(f"cannot open SQLite database {str(path)!r}: {exc}") from exc


def _migration_engine(settings: Settings) -> AsyncEngine:
    if not settings.is_sqlite:
        return create_async_engine(_async_url(settings))
    engine = create_async_engine(_async_url(settings), connect_args={"timeout": MIGRATION_WAIT})

    # pysqlite runs DDL outside any transaction by default, so two processes migrating at
    # once both create the table. BEGIN IMMEDIATE takes the write lock before the version
    # is read: the second process waits, then finds the schema current. It also makes
    # each upgrade all-or-nothing.
    @event.listens_for(engine.sync_engine, "connect")
    def no_implicit_transactions(dbapi_connection: Any, record: object) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def take_write_lock(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def migrate(settings: Settings, revision: str = "head") -> list[str]:
    """Bring the schema to `revision` (the newest by default); returns the revisions applied.

    Safe when several processes start at once: one migrates, the others wait for it
    (a PostgreSQL advisory lock, SQLite's write lock) and then find nothing to do.
    """
    if settings.is_sqlite:
        _prepare_sqlite(settings)
    config = alembic_config()
    applied: list[str] = []

    def upgrade(connection: sa.Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Released when this transaction ends, even if the process dies.
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        script = ScriptDirectory.from_config(config)
        after = MigrationContext.configure(connection).get_current_revision()
        if before != after:
            applied.extend(
                rev.revision for rev in reversed(list(script.iterate_revisions(after, before)))
            )

    engine = _migration_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade)
    except (OSError, sa.exc.DBAPIError) as exc:
        raise DatabaseUnavailable(f"cannot migrate the database: {_reason(exc)}") from exc
    finally:
        await engine.dispose()
    return applied


async def connect(settings: Settings) -> databases.Database:
    database = create_database(settings)
    try:
        await database.connect()
        await database.fetch_val("SELECT 1")
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {_reason(exc)}") from exc
    return database


async def check_reachable(settings: Settings) -> None:
    """Raise DatabaseUnavailable, with the reason, if the database cannot be reached."""
    database = await connect(settings)
    await database.disconnect()


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
