"""Tables, the database connection and schema migrations.

Tables are SQLAlchemy Core; migrations are Alembic revisions under
`app/migrations/versions`, run on start and by `python -m app migrate`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from databases import Database
from sqlalchemy.ext.asyncio import create_async_engine

from app.settings import Settings

# Seconds a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    # Insertion order: newest-first listing pages on it (keyset, never OFFSET).
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
    # A JSON array of UUID strings: one read, order kept.
    sa.Column("inputs", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
)

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened or reached; the message says where and why."""


def create_database(settings: Settings) -> Database:
    if settings.is_sqlite:
        return Database(settings.database_url, timeout=SQLITE_BUSY_TIMEOUT)
    return Database(settings.database_url)


def _alembic_config() -> Config:
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


async def migrate(settings: Settings) -> list[str]:
    """Bring the schema to the newest revision; returns the revisions applied."""
    if settings.is_sqlite:
        _prepare_sqlite(settings)
    config = _alembic_config()
    applied: list[str] = []

    def upgrade(connection: sa.Connection) -> None:
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        script = ScriptDirectory.from_config(config)
        after = MigrationContext.configure(connection).get_current_revision()
        if before != after:
            applied.extend(
                rev.revision for rev in reversed(list(script.iterate_revisions(after, before)))
            )

    engine = create_async_engine(_async_url(settings))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade)
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {_reason(exc)}") from exc
    finally:
        await engine.dispose()
    return applied


async def connect(settings: Settings) -> Database:
    database = create_database(settings)
    try:
        await database.connect()
        await database.fetch_val("SELECT 1")
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {_reason(exc)}") from exc
    return database


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
