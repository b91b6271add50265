"""The strawberry schema: types, extensions and error codes put together."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.types import ExecutionContext

from app.graphql.caches import SmallParserCache, SmallValidationCache
from app.graphql.errors import MaskUnexpected, assign_code, log_unexpected
from app.graphql.execution import PlainFieldsExecutor
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.subscriptions import SharedEventResults, Subscription
from app.graphql.types import SCALAR_OVERRIDES
from app.settings import Settings


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        document = execution_context.graphql_document if execution_context else None
        for error in errors:
            if assign_code(error, document) == "INTERNAL_SERVER_ERROR":
                log_unexpected(error)


class Executor(SharedEventResults, PlainFieldsExecutor):
    """One execution per change for all subscribers that asked the same
    (`SharedEventResults`); plain fields read without graphql-core's per-field
    machinery (`PlainFieldsExecutor`)."""


def create_schema(settings: Settings | None = None, **options: Any) -> Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        execution_context_class=Executor,
        scalar_overrides=SCALAR_OVERRIDES,  # type: ignore[arg-type]
        extensions=_extensions(settings or Settings()),
        **options,
    )


def validation_rules(settings: Settings) -> list[Any]:
    """The rules a document must pass beyond graphql-core's: the limits, introspection."""
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


def _extensions(settings: Settings) -> list[Any]:
    """Per-request extension factories; the limits' rules are built once, here.

    Building the validation rules once (rather than a new limiter, and so a new
    rule class, per request) keeps ValidationCache hitting: it is keyed by them.
    """
    rules = validation_rules(settings)
    max_tokens = settings.max_query_tokens
    return [
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(rules),
        # Small documents only (app/graphql/caches.py).
        SmallParserCache,
        SmallValidationCache,
        MaskUnexpected,
    ]
