"""The `databases.Database` the gateway talks through, with its per-call costs taken out.

`databases` (0.9.0, no further releases) does per call what can be done once:

- On SQLite it opens a new aiosqlite connection, a thread and a `sqlite3.connect`,
  for every `fetch_one`/`fetch_all` outside a transaction. Here connections are
  kept open in a pool of at most SQLITE_POOL_SIZE. Each asyncio task still has one
  connection of its own for its queries and transactions, exactly as with
  `databases`; a connection goes back to the pool when the task is done with it,
  and only outside a transaction. (As with PostgreSQL's pool, a task that holds a
  connection must not wait for other tasks that need one.)
  The busy timeout is a connection option and WAL is kept in the file, so both hold
  for pooled connections.
- It compiles every statement with SQLAlchemy (~100 µs each). Here the compiled
  form is kept per statement shape, keyed by SQLAlchemy's cache key (as its own
  engine does), and each call binds its own values to it. Statements whose SQL text
  depends on their values (`IN` lists, literal-rendered parameters) are compiled
  every time.
- On SQLite one query took three trips to aiosqlite's thread (execute, fetch, close
  the cursor); here it takes one.

Two fixes ride along. SQLite writes of one process queue for their turn instead of
polling SQLite's lock (see `SQLiteConnection._on_thread`): under a burst some
waited past the busy timeout. And `IN` lists of UUIDs reach SQLite as text (databases
sent them unconverted, which SQLite refused).

`app.db.create_database` builds it; nothing else imports `databases` internals.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite
import databases
from databases.backends import postgres, sqlite
from databases.backends.common.records import Record, create_column_maps
from databases.core import DatabaseURL
from sqlalchemy.engine.cursor import CursorResultMetaData
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.engine.row import Row
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import DDLElement

# Open SQLite connections (each a thread) one process keeps and uses at most.
SQLITE_POOL_SIZE = 8
# Statement shapes kept compiled, per database; the least recently used go first.
STATEMENT_CACHE_SIZE = 512

T = TypeVar("T")


class Database(databases.Database):
    SUPPORTED_BACKENDS = {  # noqa: RUF012 (databases reads it from the instance)
        **databases.Database.SUPPORTED_BACKENDS,
        "sqlite": "app.database:SQLiteBackend",
        "postgresql": "app.database:PostgresBackend",
        "postgres": "app.database:PostgresBackend",
    }


@dataclass
class Statement:
    """One statement shape, compiled once; `sql`/`names` as the driver wants them."""

    # SQLAlchemy's compiled form; its private parts are what databases itself uses.
    compiled: Any
    sql: str
    # Bind parameter names in the order the driver takes their values.
    names: Sequence[str]
    column_maps: Any = None
    # INSERT, UPDATE or DELETE.
    writes: bool = False
    # Bind processors by parameter name (type conversions such as UUID to text).
    processors: Any = None
    # SQLite only: the result metadata, the same for every run of the statement.
    metadata: Any = None
    context: Any = field(default=None, repr=False)

    def args(self, extracted: Sequence[Any] | None) -> list[Any]:
        params = self.compiled.construct_params(extracted_parameters=extracted)
        processors = self.processors
        return [
            processors[name](params[name]) if name in processors else params[name]
            for name in self.names
        ]


class StatementCache:
    def __init__(
        self, dialect: Dialect, prepare: Callable[[SQLCompiler], tuple[str, Sequence[str]]]
    ) -> None:
        self.dialect = dialect
        self.prepare = prepare
        self.entries: OrderedDict[Any, Statement] = OrderedDict()

    def get(self, query: ClauseElement) -> tuple[Statement, Sequence[Any] | None]:
        """The compiled statement and the values to bind to it this time."""
        key = query._generate_cache_key()
        if key is not None:
            statement = self.entries.get(key.key)
            if statement is not None:
                self.entries.move_to_end(key.key)
                return statement, key.bindparams
        compiled = query.compile(
            dialect=self.dialect,
            cache_key=key,
            compile_kwargs={"render_postcompile": True},
        )
        assert isinstance(compiled, SQLCompiler)
        sql, names = self.prepare(compiled)
        statement = Statement(
            compiled,
            sql,
            names,
            create_column_maps(compiled._result_columns),
            writes=bool(compiled.isinsert or compiled.isupdate or compiled.isdelete),
            processors=compiled._bind_processors,
        )
        # Values rendered into the SQL text (IN lists, literal_execute) make the text
        # depend on them: such a statement is never reused.
        if key is None or compiled.post_compile_params or compiled.literal_execute_params:
            expanded = compiled._post_compile_expanded_state
            if expanded is not None:
                # The expanded parameters (`id_1_1`, `id_1_2`, ...) have processors of
                # their own; databases looked for them under `id_1` and sent SQLite
                # raw UUIDs, which it refused.
                statement.processors = expanded.processors
            return statement, None
        self.entries[key.key] = statement
        if len(self.entries) > STATEMENT_CACHE_SIZE:
            self.entries.popitem(last=False)
        return statement, key.bindparams


# --- SQLite ---------------------------------------------------------------------------


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

    async def acquire(self) -> aiosqlite.Connection:
        await self.slots.acquire()
        try:
            while self.idle:
                connection = self.idle.pop()
                if connection._running and connection._connection is not None:
                    return connection
            return await super().acquire()
        except BaseException:
            self.slots.release()
            raise

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

    async def close(self) -> None:
        while self.idle:
            await super().release(self.idle.pop())


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


# --- PostgreSQL -----------------------------------------------------------------------


def _postgres_sql(compiled: SQLCompiler) -> tuple[str, Sequence[str]]:
    # As databases does: pyformat names become $1, $2, ... in sorted name order.
    names = sorted(compiled.params)
    mapping = {name: f"${index}" for index, name in enumerate(names, start=1)}
    return compiled.string % mapping, names


class PostgresBackend(postgres.PostgresBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self.statements = StatementCache(self._dialect, _postgres_sql)

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
        await pool.release(held)

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


__all__ = ["Database"]
