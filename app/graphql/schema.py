"""The strawberry schema: types, extensions and error codes put together."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache
from strawberry.types import ExecutionContext

from app.graphql.errors import MaskUnexpected, assign_code, log_unexpected
from app.graphql.execution import PlainFieldsExecutor
from app.graphql.limits import LimitedValidation, Limits
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
        for error in errors:
            if assign_code(error, document) == "INTERNAL_SERVER_ERROR":
                log_unexpected(error)


class ReportedParserCache(ParserCache):
    """strawberry's ParserCache, but a document that does not parse is left to strawberry.

    ParserCache parses in its hook, outside strawberry's handling of parse errors: over
    HTTP a catch-all reports the error, but over WebSocket the subscription only
    completed (graphql-transport-ws) or said nothing (graphql-ws). Left unparsed here,
    strawberry parses the text itself, reports the error, and the error gets its code
    (a syntax error, or QUERY_TOO_COMPLEX for a document too long or deep to parse).
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except GraphQLError:
            pass  # parsed again, once, by strawberry; bounded by the token cap
        yield


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
    return [
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(rules),
        ReportedParserCache,
        lambda: LimitedValidation(limits),
        MaskUnexpected,
    ]
