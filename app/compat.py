"""Every private name of a dependency the gateway uses, each with where and why.

A private name (a leading underscore, an internal module, a method a library does not
document) can move in any release. Each use lives in the one module named here for its
dependency, and `tests/test_compat.py` resolves every name below against the installed
versions: an upgrade that moves one fails that test, naming the dependency, its
version, the name and what needs it, instead of failing somewhere at run time.
`FAST_PATHS=false` serves with the libraries' own paths where a fast path needs them.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Reach:
    """Private `names` of `target` ("module:Qualified.name", or "module" alone)."""

    distribution: str
    target: str
    names: tuple[str, ...]
    used_in: str
    why: str


REACHES: tuple[Reach, ...] = (
    # broadcaster: no public backend API, and it does not say when a connection is lost.
    Reach(
        "broadcaster",
        "broadcaster._backends.base:BroadcastBackend",
        (),
        "app/jobs/broker.py",
        "the backend interface; broadcaster only exports Broadcast, which never reconnects",
    ),
    Reach(
        "broadcaster",
        "broadcaster._backends.memory:MemoryBackend",
        (),
        "app/jobs/broker.py",
        "the memory:// backend, driven directly",
    ),
    Reach(
        "broadcaster",
        "broadcaster._backends.redis:RedisBackend",
        ("_conn", "_pubsub", "_ready", "_queue", "_listener", "_pubsub_listener"),
        "app/jobs/broker.py",
        "a Redis client without retries, and a listener that reports the connection lost",
    ),
    Reach(
        "broadcaster",
        "broadcaster._backends.postgres:PostgresBackend",
        ("_conn",),
        "app/jobs/broker.py",
        "the LISTEN connection, to hear that it closed",
    ),
    # databases: its SQLite backend opens a connection per query; ours pools them.
    Reach(
        "databases",
        "databases.backends.sqlite:SQLiteBackend",
        ("_pool", "_dialect", "_options", "_database_url"),
        "app/db/sqlite.py",
        "the pooled SQLite backend subclasses it",
    ),
    Reach(
        "databases",
        "databases.backends.sqlite:SQLiteConnection",
        ("_connection", "_dialect", "_pool"),
        "app/db/sqlite.py",
        "one round trip per query, statements compiled once",
    ),
    Reach(
        "databases",
        "databases.backends.postgres:PostgresConnection",
        ("_connection",),
        "app/db/postgres.py (HELD_CONNECTION)",
        "forget the held connection before giving it back, so a failed release is not a 500",
    ),
    Reach(
        "databases",
        "databases.backends.sqlite:SQLiteTransaction",
        ("_connection", "_is_root"),
        "app/db/sqlite.py (WriteTransaction)",
        "a transaction queues with the process's writes and begins IMMEDIATE (webhook outbox)",
    ),
    Reach(
        "databases",
        "databases.backends.postgres:PostgresBackend",
        ("_pool",),
        "app/db/postgres.py",
        "asyncpg's pool: its public counts (size, idle, max) for the pool metrics",
    ),
    Reach(
        "databases",
        "databases.core:Database",
        ("_backend",),
        "app/tracing/database.py",
        "a statement span's SQL text: the backend's compiled statements (or, databases' own "
        "SQLite backend, its `_dialect`); without it the span is named SQL",
    ),
    Reach(
        "databases",
        "databases.backends.sqlite:SQLitePool",
        (),
        "app/db/sqlite.py",
        "the pool keeps connections open",
    ),
    Reach(
        "databases",
        "databases.backends.sqlite:CompilationContext",
        (),
        "app/db/sqlite.py",
        "what databases' Record reads a compiled statement's columns from",
    ),
    Reach(
        "databases",
        "databases.backends.common.records:create_column_maps",
        (),
        "app/db/statements.py",
        "column maps built once per statement shape",
    ),
    Reach(
        "aiosqlite",
        "aiosqlite.core:Connection",
        ("_running", "_connection", "_conn", "_execute"),
        "app/db/sqlite.py",
        "a query in one trip to aiosqlite's thread; a dead pooled connection told apart",
    ),
    Reach(
        "sqlalchemy",
        "sqlalchemy.sql.compiler:SQLCompiler",
        (
            "_result_columns",
            "_ordered_columns",
            "_textual_ordered_columns",
            "_ad_hoc_textual",
            "_loose_column_name_matching",
            "_bind_processors",
            "_post_compile_expanded_state",
        ),
        "app/db/statements.py, app/db/sqlite.py, app/db/postgres.py",
        "a compiled statement's columns and bind processors, as databases itself reads them",
    ),
    Reach(
        "sqlalchemy",
        "sqlalchemy.engine.cursor:CursorResultMetaData",
        ("_key_to_index", "_processors"),
        "app/db/sqlite.py",
        "rows built from a statement compiled once",
    ),
    Reach(
        "sqlalchemy",
        "sqlalchemy.sql.elements:ClauseElement",
        ("_generate_cache_key",),
        "app/db/statements.py",
        "the statement cache's key, as SQLAlchemy's own engine keys its cache",
    ),
    # graphql-core: the plain-field executor and the overlapping-fields budget.
    Reach(
        "graphql-core",
        "graphql.validation.rules.overlapping_fields_can_be_merged",
        ("MAX_COMPLEXITY_BUDGET",),
        "app/graphql/limits.py",
        "the only knob on the rule's quadratic work (a module attribute)",
    ),
    Reach(
        "graphql-core",
        "graphql.execution.executor:Executor",
        ("execute_fields", "collect_subfields", "is_awaitable"),
        "app/graphql/execution.py",
        "plain fields read without the per-field machinery (PlainFieldsExecutor)",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext",
        ("build_per_event_executor",),
        "app/graphql/execution.py, app/graphql/ws/groups.py",
        "the execution context strawberry runs; the fan-out executes a change with it",
    ),
    # strawberry: its graphql-core schema, its own validation rules, error masking.
    Reach(
        "strawberry-graphql",
        "strawberry.schema.schema:Schema",
        ("_schema",),
        "app/graphql/limits.py, app/graphql/ws/plan.py, app/graphql/ws/groups.py, "
        "app/graphql/schema.py, app/graphql/prepared.py",
        "the graphql-core schema documents are validated against and prepared ones executed"
        " on (no public accessor); its built-in directives made readable by graphql-js 16 tools",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.schema.schema:validate_document",
        (),
        "app/graphql/limits.py",
        "strawberry's own validation entry point (it adds strawberry's rules): its fixes apply here",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.types.arguments:convert_arguments",
        (),
        "app/graphql/ws/groups.py",
        "a root field's arguments converted exactly as strawberry converts them for a resolver",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.schema.schema_converter:GraphQLCoreConverter",
        ("DEFINITION_BACKREF", "_is_default"),
        "app/graphql/ws/groups.py, app/graphql/execution.py",
        "a field's strawberry definition; whether a resolver is the default attribute read",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.extensions.mask_errors:MaskErrors",
        ("_process_result", "_process_errors"),
        "app/graphql/errors.py",
        "errors masked without a runtime Protocol check per result",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.http.async_base_view:AsyncBaseHTTPView",
        ("_get_stream_transport_from_headers", "should_render_graphql_ide", "execute_single"),
        "app/graphql/http.py",
        "leave streaming requests to strawberry; a GET naming a persisted document is no page;"
        " persisted and prepared operations run where strawberry executes one",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.subscriptions.protocols.graphql_transport_ws.handlers:BaseGraphQLTransportWSHandler",
        (
            "operations",
            "run_operation",
            "send_message",
            "connection_acknowledged",
            "cleanup_operation",
            "handle_invalid_message",
            "shutdown",
            "max_subscriptions_per_connection",
            "handle_message",
            "view",
            "context",
        ),
        "app/graphql/ws/handlers.py, app/graphql/ws/persisted.py",
        "the fan-out tried first in strawberry's operation task; the limit error given its code;"
        " persisted documents resolved before a message is read",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.subscriptions.protocols.graphql_ws.handlers:BaseGraphQLWSHandler",
        (
            "tasks",
            "handle_async_results",
            "send_message",
            "connection_acknowledged",
            "cleanup_operation",
            "cleanup",
            "handle",
            "handle_connection_init",
            "handle_message",
            "view",
            "context",
        ),
        "app/graphql/ws/handlers.py, app/graphql/ws/persisted.py",
        "the same on the legacy protocol; persisted documents resolved before a message is read",
    ),
    Reach(
        "strawberry-graphql",
        "strawberry.asgi:ASGIWebSocketAdapter",
        ("ws",),
        "app/graphql/ws/fastpath.py",
        "write a pre-encoded frame to Starlette's WebSocket without re-encoding it",
    ),
    # uvicorn: no hook bounds what a WebSocket client that does not read may cost.
    Reach(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
        (
            "on_message_begin",
            "on_headers_complete",
            "on_message_complete",
            "transport",
            "loop",
            "cycle",
            "server_state",
        ),
        "app/http_server.py",
        "a request head bounded in size and time (uvicorn bounds neither with httptools)",
    ),
    Reach(
        "uvicorn",
        "uvicorn._types:ASGIReceiveEvent",
        (),
        "app/wsprotocol.py",
        "the type of what the protocol hands the app",
    ),
    Reach(
        "uvicorn",
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
        (
            "frames",
            "read_paused",
            "handle_cont",
            "handle_ping",
            "data_received",
            "send_receive_event_to_app",
            "keepalive_timeout",
        ),
        "app/wsprotocol.py",
        "stop reading from a client that does not read; a fragmented message in one buffer",
    ),
)


def _resolve(target: str) -> object:
    module_name, _, qualified = target.partition(":")
    found: object = importlib.import_module(module_name)
    for part in filter(None, qualified.split(".")):
        found = getattr(found, part)
    return found


def _has(owner: object, name: str) -> bool:
    if hasattr(owner, name):
        return True
    # Instance attributes exist only once an instance does: look for their assignment
    # (or any use) in the source of the class and its bases from the same library.
    if inspect.isclass(owner):
        for klass in owner.__mro__:
            try:
                source = inspect.getsource(klass)
            except (OSError, TypeError):
                continue
            if f".{name}" in source or f"{name} =" in source or f"def {name}" in source:
                return True
    return False


def missing() -> list[str]:
    """What moved: one line per private name no longer where the gateway expects it."""
    problems = []
    for reach in REACHES:
        version = metadata.version(reach.distribution)
        where = f"{reach.distribution} {version}: {reach.target}"
        try:
            owner = _resolve(reach.target)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{where} is gone ({exc}); {reach.used_in} needs it: {reach.why}")
            continue
        for name in reach.names:
            if not _has(owner, name):
                problems.append(f"{where}.{name} is gone; {reach.used_in} needs it: {reach.why}")
    return problems
