"""`databases`' SQLite backend with its per-call costs taken out.

- `databases` opens a new aiosqlite connection, a thread and a `sqlite3.connect`, for
  every `fetch_one`/`fetch_all` outside a transaction. Here connections are kept open
  in a pool of at most SQLITE_POOL_SIZE. Each asyncio task still has one connection of
  its own for its queries and transactions, exactly as with `databases`; a connection
  goes back to the pool when the task is done with it, and only outside a transaction.
  (As with PostgreSQL's pool, a task that holds a connection must not wait for other
  tasks that need one.) The busy timeout is a connection option and WAL is kept in the
  file, so both hold for pooled connections.
- Statements are compiled once per shape (app/db/statements.py).
- One query took three trips to aiosqlite's thread (execute, fetch, close the cursor);
  here it takes one.
- Writes of one process queue for their turn instead of polling SQLite's lock (see
  `SQLiteConnection._on_thread`): under a burst some waited past the busy timeout.
  A transaction takes its turn as a whole (`WriteTransaction`): a job change and the
  webhook deliveries it causes commit together (app.jobs.store).

`app.db.connect.Database` names `SQLiteBackend`; `FAST_PATHS=false` uses databases' own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from databases.backends import sqlite
from databases.backends.common.records import Record
from databases.core import DatabaseURL
from sqlalchemy.engine.cursor import CursorResultMetaData
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.engine.row import Row
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import DDLElement

from app import metrics
from app.db.statements import Statement, StatementCache

# Open SQLite connections (each a thread) one process keeps and uses at most.
SQLITE_POOL_SIZE = 8

T = TypeVar("T")


class SQLitePool(sqlite.SQLitePool):
    """At most SQLITE_POOL_SIZE open connections; tasks wait their turn for one.

    Each connection is a thread. A few are plenty for SQLite (one writer at a time,
    queries of a millisecond); without a bound a burst of 1,000 requests opened
    1,000 connections and threads at once.
    """

    def __init__(self, url: DatabaseURL, **options: Any) -> None:
        super().__init__(url, **options)
        self.idle: list[aiosqlite.Connection] = []
        self.slots = asyncio.Semaphore(SQLITE_POOL_SIZE)
        metrics.DB_CONNECTIONS_MAX.inc(SQLITE_POOL_SIZE)

    async def acquire(self) -> aiosqlite.Connection:
        if self.slots.locked():
            metrics.DB_POOL_WAITS.inc()
        await self.slots.acquire()
        try:
            while self.idle:
                connection = self.idle.pop()
                if connection._running and connection._connection is not None:
                    break
            else:
                connection = await super().acquire()
        except BaseException:
            self.slots.release()
            raise
        metrics.DB_CONNECTIONS_IN_USE.inc()
        return connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        try:
            # A connection left inside a transaction (a task cancelled between BEGIN
            # and COMMIT) is closed, which rolls it back, rather than handed on.
            if connection._connection is not None and not connection.in_transaction:
                self.idle.append(connection)
                return
            await super().release(connection)
        finally:
            self.slots.release()
            metrics.DB_CONNECTIONS_IN_USE.dec()

    async def close(self) -> None:
        while self.idle:
            await super().release(self.idle.pop())
        metrics.DB_CONNECTIONS_MAX.dec(SQLITE_POOL_SIZE)


class SQLiteRecord(Record):
    """databases' Record over SQLAlchemy's own Row: `record._mapping["name"]` is a
    lookup in C (databases' Row subclass did it in Python, ~2 µs a column)."""

    __slots__ = ()

    @property
    def _mapping(self) -> Any:
        return self._row._mapping

    def __iter__(self) -> Any:
        return iter(self._row._mapping.keys())


def _sqlite_sql(compiled: SQLCompiler) -> tuple[str, Sequence[str]]:
    return compiled.string, list(compiled.positiontup or ())


class SQLiteBackend(sqlite.SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self._pool = SQLitePool(self._database_url, **self._options)
        self.statements = StatementCache(self._dialect, _sqlite_sql)
        self.writes = asyncio.Lock()

    async def disconnect(self) -> None:
        assert isinstance(self._pool, SQLitePool)
        await self._pool.close()
        await super().disconnect()

    def connection(self) -> SQLiteConnection:
        assert isinstance(self._pool, SQLitePool)
        return SQLiteConnection(self._pool, self._dialect, self.statements, self.writes)


class SQLiteConnection(sqlite.SQLiteConnection):
    def __init__(
        self,
        pool: SQLitePool,
        dialect: Dialect,
        statements: StatementCache,
        writes: asyncio.Lock,
    ) -> None:
        super().__init__(pool, dialect)
        self.statements = statements
        self.writes = writes

    def transaction(self) -> WriteTransaction:
        return WriteTransaction(self, self.writes)

    async def _on_thread(self, statement: Statement, work: Callable[[], T]) -> T:
        """Run `work` on the connection's thread; one autocommit write at a time.

        SQLite lets one connection write at a time; the others wait in its busy
        handler, which polls with sleeps of up to 100 ms and favours newcomers, so
        under a burst of writes some waited past the busy timeout ("database is
        locked"). Writes of this process queue here instead, first come first served;
        the busy timeout still covers other processes. A write inside a transaction
        does not queue: its transaction may already hold SQLite's lock.
        """
        connection = self._connection
        assert connection is not None, "Connection is not acquired"
        if statement.writes and not connection.in_transaction:
            async with self.writes:
                return await connection._execute(work)  # type: ignore[no-untyped-call,no-any-return]
        return await connection._execute(work)  # type: ignore[no-untyped-call,no-any-return]

    def _statement(self, query: ClauseElement) -> tuple[Statement, list[Any]]:
        statement, extracted = self.statements.get(query)
        if statement.context is None:
            context: Any = self._dialect.execution_ctx_cls()
            context.dialect = self._dialect
            compiled = statement.compiled
            context.result_column_struct = (
                compiled._result_columns,
                compiled._ordered_columns,
                compiled._textual_ordered_columns,
                compiled._ad_hoc_textual,
                compiled._loose_column_name_matching,
            )
            statement.context = sqlite.CompilationContext(context)
        return statement, statement.args(extracted)

    async def _run(
        self, query: ClauseElement, rows: int | None
    ) -> tuple[Statement, Any, list[Any]]:
        """Execute and fetch on aiosqlite's thread in one trip: (statement, description, rows)."""
        assert self._connection is not None, "Connection is not acquired"
        statement, args = self._statement(query)
        connection = self._connection

        def work() -> tuple[Any, list[Any]]:
            cursor = connection._conn.execute(statement.sql, args)
            try:
                found = cursor.fetchall() if rows is None else cursor.fetchmany(rows)
                return cursor.description, found
            finally:
                cursor.close()

        description, found = await self._on_thread(statement, work)
        return statement, description, found

    def _records(
        self, statement: Statement, description: Any, found: list[Any]
    ) -> list[SQLiteRecord]:
        if statement.metadata is None or statement.metadata[0] != description:
            metadata = CursorResultMetaData(statement.context, description)
            statement.metadata = (description, metadata)
        metadata = statement.metadata[1]
        result_columns = statement.compiled._result_columns
        processors, keymap = metadata._processors, metadata._key_to_index
        return [
            SQLiteRecord(
                Row(metadata, processors, keymap, row),
                result_columns,
                self._dialect,
                statement.column_maps,
            )
            for row in found
        ]

    async def fetch_all(self, query: ClauseElement) -> list[Any]:
        statement, description, found = await self._run(query, None)
        return self._records(statement, description, found)

    async def fetch_one(self, query: ClauseElement) -> SQLiteRecord | None:
        statement, description, found = await self._run(query, 1)
        records = self._records(statement, description, found)
        return records[0] if records else None

    async def execute(self, query: ClauseElement) -> Any:
        assert self._connection is not None, "Connection is not acquired"
        statement, args = self._statement(query)
        connection = self._connection

        def work() -> Any:
            cursor = connection._conn.execute(statement.sql, args)
            try:
                return cursor.rowcount if cursor.lastrowid == 0 else cursor.lastrowid
            finally:
                cursor.close()

        return await self._on_thread(statement, work)

    def _compile(self, query: ClauseElement) -> Any:
        # `iterate` and DDL still go through databases' own code, which calls this.
        if isinstance(query, DDLElement):
            return super()._compile(query)
        statement, args = self._statement(query)
        return statement.sql, args, statement.compiled._result_columns, statement.context


class WriteTransaction(sqlite.SQLiteTransaction):
    """A transaction that queues with this process's writes and holds SQLite's write
    lock from BEGIN (IMMEDIATE): its statements need not queue again (they run inside
    it), and two transactions never both read and then deadlock upgrading to write."""

    def __init__(self, connection: SQLiteConnection, writes: asyncio.Lock) -> None:
        super().__init__(connection)
        self._writes = writes
        self._holding = False

    async def start(self, is_root: bool, extra_options: dict[Any, Any]) -> None:
        if not is_root:
            await super().start(is_root, extra_options)
            return
        self._is_root = True
        await self._writes.acquire()
        self._holding = True
        try:
            assert self._connection._connection is not None, "Connection is not acquired"
            async with self._connection._connection.execute("BEGIN IMMEDIATE") as cursor:
                await cursor.close()
        except BaseException:
            self._release()
            raise

    async def commit(self) -> None:
        try:
            await super().commit()
        finally:
            self._release()

    async def rollback(self) -> None:
        try:
            await super().rollback()
        finally:
            self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self._writes.release()
