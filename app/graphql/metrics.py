"""GraphQL operations counted by type, name and outcome, and queries and mutations timed.

`OperationMetrics` is a schema extension: it sees every operation strawberry runs, over
HTTP and WebSocket. The fan-out (app.graphql.ws) serves its subscriptions without
strawberry's execution and counts them with `record` when they end. A subscription is
counted when it ends (completed, stopped, or ended by an error: its outcome), not
timed: how long one lasts is up to its client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from app import metrics

UNKNOWN = "unknown"
SUBSCRIPTION = "subscription"
OK = "ok"

# One per process: the first names seen keep their label for its lifetime.
NAMES = metrics.OperationNames()


# Each label set's series, looked up once (`labels()` checks and locks each time);
# bounded as the labels are.
_SERIES: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def record(kind: str, name: str, outcome: str, seconds: float | None = None) -> None:
    key = (kind, name, outcome)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = (
            metrics.GRAPHQL_OPERATIONS.labels(kind, name, outcome),
            # (Subscriptions are not timed: no empty histogram for them.)
            metrics.GRAPHQL_DURATION.labels(kind, name) if seconds is not None else None,
        )
    series[0].inc()
    if seconds is not None and series[1] is not None:
        series[1].observe(seconds)


def name_label(document: DocumentNode | None, name: str | None) -> str:
    """The operation's name as a label: one of the document's operations' names (bounded
    by `NAMES`), `anonymous`, or `other` for a name the document does not have."""
    if name is None:
        return metrics.ANONYMOUS
    for definition in document.definitions if document is not None else ():
        if (
            isinstance(definition, OperationDefinitionNode)
            and definition.name is not None
            and definition.name.value == name
        ):
            return NAMES.label(name)
    return metrics.OTHER


def error_outcome(errors: list[GraphQLError] | None) -> str:
    if not errors:
        return OK
    return metrics.outcome((errors[0].extensions or {}).get("code"))


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        refused: str | None = None
        try:
            yield
        # strawberry raises these for the transport to answer (app.graphql.http: 400, 405).
        except (MissingQueryError, CannotGetOperationTypeError):
            refused = "BAD_USER_INPUT"
            raise
        except InvalidOperationTypeError:
            refused = "BAD_REQUEST"
            raise
        finally:
            self._record(started, refused)

    def _record(self, started: float, refused: str | None) -> None:
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # no document (it did not parse), or no such operation
            kind = UNKNOWN
        name = name_label(context.graphql_document, context.operation_name)
        result = context.result
        outcome = refused or error_outcome(
            result.errors if result is not None else context.pre_execution_errors
        )
        seconds = None if kind == SUBSCRIPTION else time.perf_counter() - started
        record(kind, name, outcome, seconds)
