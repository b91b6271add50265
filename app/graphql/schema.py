"""The strawberry schema: types, extensions and error codes put together."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.types import ExecutionContext

from app.graphql.errors import MaskUnexpected, process_errors
from app.graphql.execution import PlainFieldsExecutor
from app.graphql.limits import LimitedParser, LimitedValidation, Limits
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.subscriptions import Subscription
from app.graphql.types import SCALAR_OVERRIDES
from app.settings import Settings


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        document = execution_context.graphql_document if execution_context else None
        process_errors(errors, document)


def create_schema(settings: Settings | None = None, **options: Any) -> Schema:
    settings = settings or Settings()
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # FAST_PATHS off: strawberry's default, graphql-core's own execution.
        execution_context_class=PlainFieldsExecutor if settings.fast_paths else None,
        scalar_overrides=SCALAR_OVERRIDES,  # type: ignore[arg-type]
        extensions=_extensions(settings),
        **options,
    )


def query_limits(settings: Settings) -> Limits:
    """What a document may ask (app.graphql.limits), checked before any other rule."""
    return Limits(
        depth=settings.max_query_depth,
        aliases=settings.max_query_aliases,
        selections=settings.max_query_selections,
    )


def validation_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The rules a document must pass beyond graphql-core's: introspection, if it is off."""
    return [] if settings.graphql_introspection else [NoSchemaIntrospectionCustomRule]


def _extensions(settings: Settings) -> list[Any]:
    """Per-request extension factories; the limits and rules are built once, here.

    Building the validation rules once (rather than new rule classes per request)
    keeps the validation cache (`LimitedValidation`) hitting: it is keyed by them.
    """
    limits = query_limits(settings)
    rules = validation_rules(settings)
    max_tokens = settings.max_query_tokens
    max_length = settings.max_query_length
    return [
        # The length and token caps; small documents cached (app/graphql/caches.py).
        lambda: LimitedParser(max_length, max_tokens),
        # The limits first, then graphql-core's, strawberry's and our rules.
        lambda: LimitedValidation(limits, rules),
        MaskUnexpected,
    ]
