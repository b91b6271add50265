"""`databases`' PostgreSQL backend with statements compiled once, and a release fix.

Statements are compiled once per shape (app/db/statements.py); rows stay asyncpg's
records (app/jobs/store.py turns its UUIDs into Python's). `PostgresConnection.release`
forgets a connection before handing it back, so a failed release does not leave it held.
`app.db.connect.Database` names `PostgresBackend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from databases.backends import postgres
from databases.backends.common.records import Record
from databases.core import DatabaseURL
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import DDLElement

from app import metrics
from app.db.statements import Statement, StatementCache


def _postgres_sql(compiled: SQLCompiler) -> tuple[str, Sequence[str]]:
    # As databases does: pyformat names become $1, $2, ... in sorted name order.
    names = sorted(compiled.params)
    mapping = {name: f"${index}" for index, name in enumerate(names, start=1)}
    return compiled.string % mapping, names


class PostgresBackend(postgres.PostgresBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self.statements = StatementCache(self._dialect, _postgres_sql)
        # Counted in the `db_pool_connections_max` gauge while connected.
        self.pool_size = 0

    async def connect(self) -> None:
        await super().connect()
        pool: Any = self._pool  # asyncpg's Pool (untyped)
        self.pool_size = pool.get_max_size()
        metrics.DB_CONNECTIONS_MAX.inc(self.pool_size)

    async def disconnect(self) -> None:
        await super().disconnect()
        metrics.DB_CONNECTIONS_MAX.dec(self.pool_size)
        self.pool_size = 0

    def connection(self) -> PostgresConnection:
        return PostgresConnection(self, self._dialect)


# Where databases' PostgresConnection keeps the asyncpg connection it holds (0.9.0, a
# private name). Only `PostgresConnection.release` relies on it to forget the connection;
# tests/test_database.py fails loudly if it moves, and release falls back to databases' own.
HELD_CONNECTION = "_connection"


class PostgresConnection(postgres.PostgresConnection):
    def __init__(self, database: PostgresBackend, dialect: Dialect) -> None:
        super().__init__(database, dialect)
        self.statements = database.statements

    async def acquire(self) -> None:
        pool = self._database._pool
        # asyncpg's public counts: every connection open and none idle means a wait.
        if pool is not None and not pool.get_idle_size() and pool.get_size() >= pool.get_max_size():
            metrics.DB_POOL_WAITS.inc()
        await super().acquire()
        metrics.DB_CONNECTIONS_IN_USE.inc()

    async def release(self) -> None:
        """Give the connection back to the pool, forgetting it first, whatever happens.

        databases forgets it only once the pool's release returns. When that fails (the
        server cut the connection during the pool's reset: "cannot switch to state …")
        the connection stayed recorded as held, and the task's next query met
        "Connection is already acquired", an internal error instead of UNAVAILABLE; in a
        long-lived task (the broker's catch-up) every later query did. asyncpg has
        already terminated that connection and freed its pool slot by then.
        """
        held = getattr(self, HELD_CONNECTION, None)
        pool = self._database._pool
        if held is None or pool is None:
            await super().release()  # databases' own path, with its own checks
            return
        setattr(self, HELD_CONNECTION, None)
        try:
            await pool.release(held)
        finally:
            metrics.DB_CONNECTIONS_IN_USE.dec()

    def _statement(self, query: ClauseElement) -> tuple[Statement, list[Any]]:
        statement, extracted = self.statements.get(query)
        return statement, statement.args(extracted)

    async def fetch_all(self, query: ClauseElement) -> list[Any]:
        assert self._connection is not None, "Connection is not acquired"
        statement, args = self._statement(query)
        rows = await self._connection.fetch(statement.sql, *args)
        result_columns = statement.compiled._result_columns
        maps = statement.column_maps
        return [Record(row, result_columns, self._dialect, maps) for row in rows]

    async def fetch_one(self, query: ClauseElement) -> Any:
        assert self._connection is not None, "Connection is not acquired"
        statement, args = self._statement(query)
        row = await self._connection.fetchrow(statement.sql, *args)
        if row is None:
            return None
        return Record(row, statement.compiled._result_columns, self._dialect, statement.column_maps)

    def _compile(self, query: ClauseElement) -> Any:
        if isinstance(query, DDLElement):
            return super()._compile(query)
        statement, args = self._statement(query)
        return statement.sql, args, statement.compiled._result_columns
