"""Statements compiled once per shape, for both backends (app/db/sqlite.py, postgres.py).

`databases` (0.9.0, no further releases) compiles every statement with SQLAlchemy
(~100 µs each). Here the compiled form is kept per statement shape, keyed by
SQLAlchemy's cache key (as its own engine does), and each call binds its own values to
it. Statements whose SQL text depends on their values (`IN` lists, literal-rendered
parameters) are compiled every time; their expanded parameters get their own bind
processors, so `IN` lists of UUIDs reach SQLite as text (databases sent them
unconverted, which SQLite refused).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from databases.backends.common.records import create_column_maps
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# Statement shapes kept compiled, per database; the least recently used go first.
STATEMENT_CACHE_SIZE = 512


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
