"""Traces (OpenTelemetry), built only when the OTEL_* variables switch them on.

Nothing here is imported while tracing is off: no OpenTelemetry module loaded, no
middleware, extension, database subclass or event hook installed, so the gateway runs
exactly as it does without it. On, `Tracing` hands each part its hook:

- `middleware`: a span per HTTP request and WebSocket connection (app.tracing.http);
- `extension`: a child span per GraphQL operation (app.tracing.graphql);
- `websocket_operation`: a span per WebSocket operation (the handlers);
- `database_class`: a span per statement (app.tracing.database);
- `events`: publish and delivery spans of job events (app.tracing.events).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import databases
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer, get_current_span
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from strawberry.extensions import SchemaExtension

from app.tracing.database import traced_database
from app.tracing.events import EventSpans
from app.tracing.graphql import operation_spans, websocket_operation
from app.tracing.http import middleware_options
from app.tracing.provider import tracer_provider

INSTRUMENTATION = "app"


class Tracing:
    def __init__(self, provider: TracerProvider, owned: bool) -> None:
        self.provider = provider
        # Built here from the environment (shut down, spans flushed, at the end), or
        # handed in (tests, an embedding application), then left to its owner.
        self._owned = owned
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION)

    @classmethod
    def start(cls, exporters: Sequence[str], provider: TracerProvider | None = None) -> Tracing:
        if provider is not None:
            return cls(provider, owned=False)
        return cls(tracer_provider(exporters), owned=True)

    def shutdown(self) -> None:
        if self._owned:
            self.provider.shutdown()

    def middleware(self, routes: Sequence[BaseRoute]) -> Middleware:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return Middleware(OpenTelemetryMiddleware, **middleware_options(routes, self.provider))

    def extension(self) -> type[SchemaExtension]:
        return operation_spans(self.tracer)

    def websocket_operation(
        self, op_id: str, query: object, operation_name: object
    ) -> AbstractContextManager[None]:
        return websocket_operation(self.tracer, op_id, query, operation_name)

    def database_class(self, base: type[databases.Database]) -> type[databases.Database]:
        return traced_database(base, self.tracer)

    def events(self, broker_url: str) -> EventSpans:
        return EventSpans(self.tracer, broker_url)

    @staticmethod
    def trace_id() -> str | None:
        """The current trace's id (32 hex digits), for log lines; None outside one."""
        context = get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None


def describe(exporters: Sequence[str]) -> str:
    """One line for the start log: where spans go."""
    import os
    from urllib.parse import urlsplit

    endpoint = urlsplit(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4318"
    )
    # Scheme, host and port only: a URL's user, password or query may hold credentials.
    where = f"{endpoint.scheme}://{endpoint.hostname}" + (
        f":{endpoint.port}" if endpoint.port else ""
    )
    return ", ".join(f"otlp to {where}" if name == "otlp" else name for name in exporters)


__all__ = ["Tracing", "describe"]
