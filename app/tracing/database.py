"""A span per database statement, made where every statement is run: the `Database`.

Every statement of the gateway goes through one of `databases.Database`'s six query
methods (app/jobs/store.py, migrations aside), so a subclass of the class in use
wraps them, built only when tracing is on. A span is named as the semantic
conventions say (`SELECT jobs`, `UPDATE jobs`), as a child of the request, operation or
event delivery it serves (a statement outside all of them, such as the change feed's
polls, gets none), and carries `db.system.name`, the
operation, the table and the SQL text with its placeholders (`?`, `$1`), never the
values: the text is the one the backend compiled and keeps (app/db/statements.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from typing import Any

import databases
from opentelemetry.trace import Span, SpanKind, Tracer, get_current_span

# The most SQL text a span carries (a statement of ours is a few hundred characters).
MAX_SQL_CHARS = 2000


# The operation and the table of one of the gateway's statements, read off its SQL text:
# asking SQLAlchemy (`get_final_froms`, or any attribute of a lambda statement, which
# resolves it) cost ~1 ms a statement.
_TABLE = re.compile(r"\b(?:FROM|INTO)\s+\"?(\w+)", re.IGNORECASE)


def _describe(sql: str) -> tuple[str, str | None]:
    """(operation, table) of a statement's SQL text: `SELECT` and `jobs`."""
    words = sql.split(None, 2)
    if not words:
        return "SQL", None
    operation = words[0].upper()
    if operation == "UPDATE":
        return operation, words[1].strip('"') if len(words) > 1 else None
    found = _TABLE.search(sql)
    return operation, found.group(1) if found else None


def traced_database(base: type[databases.Database], tracer: Tracer) -> type[databases.Database]:
    """`base` (the class `app.db.connect` chose) with a span around each statement."""

    class TracedDatabase(base):  # type: ignore[valid-type,misc]
        @contextmanager
        def _span(self, query: Any) -> Iterator[Span | None]:
            if not get_current_span().is_recording():
                # Outside any request, operation or delivery (the change feed's polls,
                # a catch-up: no trace of its own for every background statement), or in
                # one the sampler left out: nothing to record, nothing to work out.
                yield None
                return
            text = self._sql(query)
            operation, table = _describe(text)
            attributes: dict[str, Any] = {
                "db.system.name": self.url.dialect,
                "db.operation.name": operation,
                "db.query.text": text[:MAX_SQL_CHARS],
            }
            if table:
                attributes["db.collection.name"] = table
            name = f"{operation} {table}" if table else operation
            with tracer.start_as_current_span(
                name, kind=SpanKind.CLIENT, attributes=attributes
            ) as span:
                yield span

        def _sql(self, query: Any) -> str:
            if isinstance(query, str):
                return query
            try:
                statements = getattr(self._backend, "statements", None)
                if statements is not None:
                    # The text the backend compiled and keeps (a lookup by cache key).
                    return str(statements.get(query)[0].sql)
                # databases' own backend (FAST_PATHS=false) keeps none: compiled here.
                return str(query.compile(dialect=self._backend._dialect))
            except Exception:  # the statement's own run reports what is wrong with it
                return "SQL"

        async def fetch_all(self, query: Any, values: Any = None) -> Any:
            with self._span(query):
                return await super().fetch_all(query, values)

        async def fetch_one(self, query: Any, values: Any = None) -> Any:
            with self._span(query):
                return await super().fetch_one(query, values)

        async def fetch_val(self, query: Any, values: Any = None, column: Any = 0) -> Any:
            with self._span(query):
                return await super().fetch_val(query, values, column=column)

        async def execute(self, query: Any, values: Any = None) -> Any:
            with self._span(query):
                return await super().execute(query, values)

        async def execute_many(self, query: Any, values: Any) -> Any:
            with self._span(query):
                return await super().execute_many(query, values)

        async def iterate(self, query: Any, values: Any = None) -> AsyncGenerator[Any, None]:
            with self._span(query):
                async for record in super().iterate(query, values):
                    yield record

    TracedDatabase.__name__ = TracedDatabase.__qualname__ = f"Traced{base.__name__}"
    return TracedDatabase
