"""Which subscription documents the fan-out serves, each parsed and validated once.

And which the handlers refuse before strawberry sees them: a document too long or too
deep to parse is an `error` (QUERY_TOO_COMPLEX), with FAST_PATHS on or off.

Only what the fan-out fully serves takes it: a valid subscription document without
directives whose one root field is `jobProgress` or `jobUpdates`. Anything else goes
strawberry's own way, which reports it as it always does. A document is validated
as strawberry validates it (app.graphql.limits: our limits, then strawberry's own
validation entry point with our rules), so its rules apply here too.
"""

from __future__ import annotations

from collections.abc import Collection

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Visitor,
    parse,
    specified_rules,
    visit,
)
from graphql.validation import ASTValidationRule

from app.graphql.caches import cacheable
from app.graphql.errors import QUERY_TOO_COMPLEX, assign_code
from app.graphql.limits import Limits, too_long, validate_within_limits
from app.graphql.metrics import name_label
from app.lru import LRU, MISSING

# Query texts whose plan (or refusal) is remembered; small ones only
# (`app.graphql.caches.cacheable`): a plan keeps its parsed document. As many as
# strawberry's parser cache keeps, for the same worst case (app/graphql/caches.py).
PLANS_KEPT = 128

# The root fields the fan-out serves.
FIELDS = ("jobProgress", "jobUpdates")


class Plan:
    """A subscription document the fan-out serves: one `jobProgress` or `jobUpdates`
    field at the root."""

    __slots__ = ("document", "field", "field_def", "name", "updates")

    def __init__(
        self, document: DocumentNode, field: FieldNode, field_def: GraphQLField, name: str
    ) -> None:
        self.document = document
        self.field = field
        self.field_def = field_def
        # Its operation's name as the metrics label it (app.graphql.metrics).
        self.name = name
        # `jobUpdates`: the tenant's changes its filter is concerned with, from now on.
        self.updates = field.name.value == "jobUpdates"


class _HasDirectives(Visitor):
    found = False

    def enter_directive(self, *_: object) -> None:
        self.found = True


class Plans:
    """Plans by (query text, operation name), the least recently used forgotten first."""

    def __init__(
        self,
        schema: strawberry.Schema,
        limits: Limits,
        rules: Collection[type[ASTValidationRule]],
        max_tokens: int,
        max_length: int,
    ) -> None:
        self.schema: GraphQLSchema = schema._schema  # strawberry's graphql-core schema
        self._limits = limits
        # What strawberry's executions validate with (graphql-core's, then ours);
        # strawberry's entry point adds its own.
        self._rules = (*specified_rules, *rules)
        self._max_tokens = max_tokens
        self._max_length = max_length
        self._plans: LRU[tuple[str, str | None], Plan | GraphQLError | None] = LRU(PLANS_KEPT)

    def get(self, query: object, operation_name: object) -> Plan | GraphQLError | None:
        """The plan for the document; None to leave it to strawberry; or the error of
        a document refused for its size (QUERY_TOO_COMPLEX), to send here."""
        if not isinstance(query, str) or not isinstance(operation_name, str | None):
            return None
        too_long_error = too_long(query, self._max_length)
        if too_long_error is not None:  # refused before anything parses it
            return too_long_error
        if not cacheable(query):  # planned for this subscription only
            return self._make(query, operation_name)
        key = (query, operation_name)
        plan = self._plans.use(key, MISSING)
        if plan is MISSING:
            plan = self._make(query, operation_name)
            self._plans.put(key, plan)
        return plan

    def _make(self, query: str, operation_name: str | None) -> Plan | GraphQLError | None:
        # Stricter than strawberry, never looser: whatever is refused here goes its way,
        # but a document too long or too deep to parse: strawberry's graphql-transport-ws
        # handler closes the socket (4400) on any syntax error, where a document over a
        # limit is an `error` message (QUERY_TOO_COMPLEX), as it is once parsed.
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError as error:
            return error if assign_code(error, None) == QUERY_TOO_COMPLEX else None
        if validate_within_limits(self.schema, document, self._limits, self._rules):
            return None
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1:
            return None
        operation = operations[0]
        if operation.operation is not OperationType.SUBSCRIPTION or (
            operation_name is not None
            and (operation.name is None or operation.name.value != operation_name)
        ):
            return None
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode):
            return None
        field = selections[0]
        subscription = self.schema.subscription_type
        if field.name.value not in FIELDS or subscription is None:
            return None
        directives = _HasDirectives()
        visit(document, directives)  # @skip, @include, @defer...: strawberry's way
        if directives.found:
            return None
        name = operation.name.value if operation.name else None
        return Plan(
            document, field, subscription.fields[field.name.value], name_label(document, name)
        )
