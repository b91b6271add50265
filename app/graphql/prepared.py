"""Prepared operations: a query or mutation over HTTP executed without strawberry's pipeline.

strawberry runs every request through its operation pipeline: an execution context,
three extensions built and each of their hooks entered (parse, validate, execute,
operation), the operation's type looked up, then graphql-core's execution. With the
caches the parse and the validation are lookups, but the pipeline around them is a
third of a `job(id)` request's CPU.

A document that parsed and validated once (the same rules, the same limits,
app.graphql.limits) is kept here, by its text and operation name, ready to execute: a
persisted operation (app.graphql.persisted) is the same text every time, and so is
any document a frontend sends again. Executing it is graphql-core's `execute` with the
schema's executor, followed by what the extensions do to a result: errors get their
codes (and unexpected ones are logged) as `Schema.process_errors` does, then are
masked as `MaskUnexpected` masks them (`app.graphql.errors.finish_errors`, one place
for both), and the operation is counted and timed as the `OperationMetrics` extension
does (`app.graphql.metrics.record`). Nothing else of the pipeline applies to an
operation that already passed it; with tracing on (its extension makes the operation's
span) the view prepares nothing.

Only what is sure to behave as strawberry's way takes this way: a document within
MAX_CACHED_CHARS (app/graphql/caches.py), one operation selected by the request, of a
type the method allows (anything else is raised as strawberry raises it). A new
extension with hooks on execution must be applied here too. `FAST_PATHS=false` turns
this off: every operation goes through strawberry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    execute,
    get_operation_ast,
    parse,
    specified_rules,
)
from graphql.validation import ASTValidationRule
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from app.graphql import metrics as operation_metrics
from app.graphql.caches import cacheable
from app.graphql.errors import finish_errors
from app.graphql.limits import Limits, too_long, validate_within_limits
from app.lru import LRU, MISSING

# Documents kept ready, by (text, operation name); the least recently used go first.
PREPARED_KEPT = 256


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode
    operation_type: OperationType
    # The selected operation's name (None: anonymous), as the metrics label it.
    operation_name: str | None = None


class PreparedOperations:
    """The view's prepared documents, and how one is executed."""

    def __init__(
        self,
        schema: strawberry.Schema,
        limits: Limits,
        rules: Collection[type[ASTValidationRule]],
        max_tokens: int,
        max_length: int,
    ) -> None:
        self.schema: GraphQLSchema = schema._schema  # strawberry's graphql-core schema
        self.executor_class = schema.execution_context_class
        self._limits = limits
        # What strawberry's executions validate with (graphql-core's, then ours);
        # strawberry's entry point adds its own.
        self._rules = (*specified_rules, *rules)
        self._max_tokens = max_tokens
        self._max_length = max_length
        self._kept: LRU[tuple[str, str | None], Prepared | None] = LRU(PREPARED_KEPT)

    def get(self, query: str | None, operation_name: str | None) -> Prepared | None:
        """The prepared operation; None to leave the request to strawberry (which then
        reports whatever is wrong with it as it always does)."""
        if not cacheable(query) or not isinstance(operation_name, str | None):
            return None
        assert query is not None
        key = (query, operation_name)
        prepared = self._kept.use(key, MISSING)
        if prepared is MISSING:
            prepared = self._prepare(query, operation_name)
            self._kept.put(key, prepared)
        return prepared

    def _prepare(self, query: str, operation_name: str | None) -> Prepared | None:
        if too_long(query, self._max_length) is not None:
            return None
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError:
            return None
        # As strawberry's executions validate (app.graphql.limits.LimitedValidation).
        if validate_within_limits(self.schema, document, self._limits, self._rules):
            return None
        operation = get_operation_ast(document, operation_name)
        if not isinstance(operation, OperationDefinitionNode):
            return None
        name = operation.name.value if operation.name is not None else None
        return Prepared(document, OperationType(operation.operation.value), name)

    async def execute(
        self,
        prepared: Prepared,
        *,
        allowed: Collection[OperationType],
        context: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        extensions: dict[str, Any] | None,
    ) -> ExecutionResult:
        if prepared.operation_type not in allowed:
            raise InvalidOperationTypeError(prepared.operation_type)
        started = time.perf_counter()
        outcome = execute(
            self.schema,
            prepared.document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            executor_class=self.executor_class,
            # strawberry's check, as its executions pass it (typed as a plain bool).
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
            operation_extensions=extensions,
        )
        result = await outcome if isinstance(outcome, Awaitable) else outcome
        errors = finish_errors(result.errors, prepared.document) if result.errors else None
        # As app.graphql.metrics.OperationMetrics counts strawberry's executions.
        operation_metrics.record(
            prepared.operation_type.value,
            operation_metrics.name_label(prepared.document, prepared.operation_name),
            operation_metrics.error_outcome(errors),
            time.perf_counter() - started,
        )
        return ExecutionResult(data=result.data, errors=errors)


__all__ = ["PREPARED_KEPT", "Prepared", "PreparedOperations"]
