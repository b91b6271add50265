"""PostgreSQL databases for tests: one migrated database per session, emptied per test.

Every test that runs on PostgreSQL gets the session's database back as new: any
connection left from the test before is cut, every table emptied and every
sequence restarted, and the schema checked to be the migrated one (recreated if a
test changed it). That costs ~10 ms even when the machine is busy, where a
`CREATE DATABASE` from a template costs 10 ms idle but 300-800 ms with other
suites writing to the same server (it copies and fsyncs hundreds of files).
Tests that need a database of their own, unmigrated, use `create_empty()`.

Names carry the pytest process id, so runs at the same time (other developers, CI)
never touch each other's databases; leftovers of a killed run are dropped by the
next one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # no stubs

from app import db
from app.settings import Settings

T = TypeVar("T")
PREFIX = "jobs_test_"

# Empties every table but Alembic's and restarts every sequence, in one transaction.
RESET = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN SELECT tablename FROM pg_tables
                WHERE schemaname = 'public' AND tablename <> 'alembic_version' LOOP
        EXECUTE format('DELETE FROM %I', name);
    END LOOP;
    FOR name IN SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' LOOP
        EXECUTE format('ALTER SEQUENCE %I RESTART', name);
    END LOOP;
END $$
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostgresDatabases:
    """Test databases on the server `admin_url` points at."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.pid = os.getpid()
        self.name = f"{PREFIX}{self.pid}"
        self._numbers = itertools.count(1)
        self._schema: str | None = None
        # The connections live on their own event loop thread, so fixtures can use them
        # whether or not a test's event loop is running in the main thread.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._admin: asyncpg.Connection = self._run(asyncpg.connect(admin_url))
        self._own: asyncpg.Connection | None = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def url(self, name: str) -> str:
        return urlunsplit(urlsplit(self.admin_url)._replace(path="/" + name))

    def start(self) -> None:
        self._drop_leftovers()
        self._create_migrated()

    def fresh(self) -> str:
        """The session's database, emptied, with no other connection to it."""
        self._cut_connections(self.name)
        try:
            assert self._own is not None
            schema = self._run(self._own.fetchval("SELECT version_num FROM alembic_version"))
            if schema != self._schema:
                raise RuntimeError(f"schema is at {schema}, not {self._schema}")
            self._run(self._own.execute(RESET))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError):
            # A test changed the schema (or left it unusable): start again from scratch.
            self._drop(self.name)
            self._create_migrated()
        return self.url(self.name)

    def create_empty(self) -> str:
        """A new database with nothing in it, for tests of migrations; `drop` it after."""
        name = f"{self.name}_{next(self._numbers)}"
        self._run(self._admin.execute(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def drop(self, url: str) -> None:
        self._drop(urlsplit(url).path.lstrip("/"))

    def close(self) -> None:
        try:
            if self._own is not None:
                self._run(self._own.close())
            self._drop(self.name)
            self._run(self._admin.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _create_migrated(self) -> None:
        if self._own is not None:
            self._run(self._own.close())
        self._run(self._admin.execute(f'CREATE DATABASE "{self.name}"'))
        self._schema = self._run(db.migrate(Settings(database_url=self.url(self.name))))[-1]
        self._own = self._run(asyncpg.connect(self.url(self.name)))

    def _cut_connections(self, name: str) -> None:
        self._run(
            self._admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> $2",
                name,
                self._own.get_server_pid() if self._own is not None else 0,
            )
        )

    def _drop(self, name: str) -> None:
        if self._own is not None and name == self.name:
            self._run(self._own.close())
            self._own = None
        self._run(self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def _drop_leftovers(self) -> None:
        rows = self._run(
            self._admin.fetch(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", PREFIX
            )
        )
        for row in rows:
            owner = row["datname"].removeprefix(PREFIX).split("_", 1)[0]
            if owner.isdigit() and (int(owner) == self.pid or not _alive(int(owner))):
                self._drop(row["datname"])
