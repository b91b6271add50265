"""Schema migrations: the one Alembic configuration, and `migrate`.

Revisions live in `app/db/migrations/versions`; they run on start and by
`python -m app migrate`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db.connect import SQLITE_BUSY_TIMEOUT, DatabaseUnavailable, reason
from app.settings import Settings

# Seconds a starting process waits for another one's migration (a big table takes a while).
MIGRATION_WAIT = 600.0
# Key of the PostgreSQL advisory lock held while migrating. Any fixed number works, as long
# as every gateway process uses the same one ("jobs" in ASCII).
MIGRATION_LOCK_KEY = 0x6A6F6273

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """The one Alembic configuration: migrations in app/db/migrations/."""
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
        raise DatabaseUnavailable(f"cannot migrate the database: {reason(exc)}") from exc
    finally:
        await engine.dispose()
    return applied
