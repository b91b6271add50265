"""Opening the database: the `databases.Database` the gateway talks through.

`Database` is `databases.Database` with this package's backends (app/db/sqlite.py,
app/db/postgres.py) in place of its own; `FAST_PATHS=false` keeps `databases`' own
SQLite backend. Callers get a `databases.Database` either way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its error class is used
import databases

from app.settings import Settings

# Seconds a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0
# Seconds to open a PostgreSQL connection. asyncpg waits 60 by default: a database host
# that drops packets would hold each request that long instead of failing fast.
CONNECT_TIMEOUT = 5.0
APPLICATION_NAME = "jobs-gateway"


class Database(databases.Database):
    SUPPORTED_BACKENDS = {  # noqa: RUF012 (databases reads it from the instance)
        **databases.Database.SUPPORTED_BACKENDS,
        "sqlite": "app.db.sqlite:SQLiteBackend",
        "postgresql": "app.db.postgres:PostgresBackend",
        "postgres": "app.db.postgres:PostgresBackend",
    }


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened or reached; the message says where and why."""


# With tracing on, the class chosen is handed to this to get its traced subclass.
Traced = Callable[[type[databases.Database]], type[databases.Database]]


def create_database(settings: Settings, traced: Traced | None = None) -> databases.Database:
    database_class: type[databases.Database] = Database
    if settings.is_sqlite and not settings.fast_paths:
        # FAST_PATHS off: `databases`' own SQLite backend (a connection per query).
        database_class = databases.Database
    if traced is not None:
        database_class = traced(database_class)  # a span per statement (app.tracing)
    if settings.is_sqlite:
        return database_class(settings.database_url, timeout=SQLITE_BUSY_TIMEOUT)
    # One connection at start, more on demand up to the pool size: N processes hold at
    # most N x DATABASE_POOL_SIZE connections (PostgreSQL allows 100 by default). The
    # application name tells them apart in pg_stat_activity.
    return database_class(
        settings.database_url,
        min_size=1,
        max_size=settings.database_pool_size,
        server_settings={"application_name": APPLICATION_NAME},
        timeout=CONNECT_TIMEOUT,
    )


async def connect(settings: Settings, traced: Traced | None = None) -> databases.Database:
    database = create_database(settings, traced)
    try:
        await database.connect()
        await database.fetch_val("SELECT 1")
    except (OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {reason(exc)}") from exc
    return database


async def check_reachable(settings: Settings) -> None:
    """Raise DatabaseUnavailable, with the reason, if the database cannot be reached."""
    database = await connect(settings)
    await database.disconnect()


def reason(exc: BaseException) -> str:
    """The first line of a driver's error (SQLAlchemy's wrapper unwrapped)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
