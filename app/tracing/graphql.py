"""GraphQL operation spans: a child of the HTTP request's span or the WebSocket operation's.

strawberry's own `OpenTelemetryExtension` does not fit: it records every resolver's
arguments as span attributes (variable values, which must never leave), makes a span
per resolved field (and, having a `resolve` hook, turns the plain-field executor off,
app/graphql/execution.py), and never sees the subscriptions the fan-out serves. This
extension has one hook, `on_operation`: one span per operation, named as the
semantic conventions say (`mutation CreateJob`; an anonymous one by its first root
field, `mutation createJob`), with `graphql.operation.type` and `.name`, never the
document's values nor the variables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from graphql import DocumentNode, FieldNode, OperationDefinitionNode, parse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from strawberry.extensions import SchemaExtension

# Operation ids are the client's: at most this many characters go into a span.
MAX_ID_CHARS = 64


def describe(
    document: DocumentNode | None, name: str | None
) -> tuple[str | None, str | None, str | None]:
    """(type, name, first root field) of the operation `name` picks in `document`."""
    if document is None:
        return None, name, None
    chosen: OperationDefinitionNode | None = None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name is not None and definition.name.value == name)
        ):
            chosen = definition
            break
    if chosen is None:
        return None, name, None
    root = next(
        (s.name.value for s in chosen.selection_set.selections if isinstance(s, FieldNode)),
        None,
    )
    return chosen.operation.value, chosen.name.value if chosen.name else None, root


def span_name(kind: str | None, name: str | None, root: str | None) -> str:
    return " ".join(part for part in (kind or "GraphQL", name or root) if part)


def describe_span(span: Span, kind: str | None, name: str | None, root: str | None) -> None:
    span.update_name(span_name(kind, name, root))
    if kind:
        span.set_attribute("graphql.operation.type", kind)
    if name:
        span.set_attribute("graphql.operation.name", name)


def operation_spans(tracer: Tracer) -> type[SchemaExtension]:
    """The extension class for `tracer` (strawberry builds one instance per operation)."""

    class OperationSpans(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            span = tracer.start_span("GraphQL", kind=SpanKind.INTERNAL)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                yield
            finally:
                otel_context.detach(token)
                self._finish(span)

        def _finish(self, span: Span) -> None:
            execution = self.execution_context
            kind, name, root = describe(execution.graphql_document, execution.operation_name)
            describe_span(span, kind, name, root)
            result: Any = execution.result
            errors = list(execution.pre_execution_errors or ()) or list(
                getattr(result, "errors", None) or ()
            )
            if errors:
                codes = sorted({str((e.extensions or {}).get("code", "")) for e in errors} - {""})
                span.set_status(Status(StatusCode.ERROR, ", ".join(codes) or None))
                if codes:
                    span.set_attribute("graphql.error.codes", codes)
            span.end()

    return OperationSpans


@contextmanager
def websocket_operation(
    tracer: Tracer, op_id: str, query: object, operation_name: object
) -> Iterator[None]:
    """The span of one WebSocket operation (a subscribe/start message), current while it
    is handled: strawberry's path until the operation ends, the fan-out's until it has
    set the subscription up and sent its first frame."""
    kind = name = root = None
    if isinstance(query, str):
        try:
            kind, name, root = describe(parse(query, max_tokens=1000), _name(operation_name))
        except Exception:  # strawberry's way reports a bad document; the span is unnamed
            pass
    with tracer.start_as_current_span(
        f"WebSocket {span_name(kind, name, root)}", kind=SpanKind.INTERNAL
    ) as span:
        if kind:
            span.set_attribute("graphql.operation.type", kind)
        if name:
            span.set_attribute("graphql.operation.name", name)
        span.set_attribute("graphql.operation.id", op_id[:MAX_ID_CHARS])
        yield


def _name(value: object) -> str | None:
    return value if isinstance(value, str) else None
