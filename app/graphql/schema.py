"""The strawberry schema: types, extensions and error codes put together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import DirectiveLocation, GraphQLDirective, GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.types import ExecutionContext

from app.graphql.errors import MaskUnexpected, process_errors
from app.graphql.execution import PlainFieldsExecutor
from app.graphql.limits import LimitedParser, LimitedValidation, Limits
from app.graphql.metrics import OperationMetrics
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.subscriptions import Subscription
from app.graphql.types import SCALAR_OVERRIDES
from app.settings import Settings

# Directive locations newer than graphql-js 16 (what most tools still ship): its
# `__DirectiveLocation` cannot represent them, so a client schema built from our
# introspection with one listed fails (codegen's introspection plugin and
# graphql-inspector: "Unexpected invariant triggered"; re-parsing the printed SDL:
# 'Unexpected Name "DIRECTIVE_DEFINITION"'). graphql-core 3.3 lists it on @deprecated.
NEWER_THAN_GRAPHQL_JS_16 = frozenset({DirectiveLocation.DIRECTIVE_DEFINITION})


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        document = execution_context.graphql_document if execution_context else None
        process_errors(errors, document)


def portable_directive(directive: GraphQLDirective) -> GraphQLDirective:
    """`directive` without the locations graphql-js 16 cannot represent.

    Only @deprecated has one (DIRECTIVE_DEFINITION), and no directive of this schema is
    deprecated, so nothing is lost; graphql-js 17 tools read either. A copy: the
    directive object is graphql-core's, shared by every schema in the process.
    """
    kept = tuple(where for where in directive.locations if where not in NEWER_THAN_GRAPHQL_JS_16)
    if len(kept) == len(directive.locations):
        return directive
    kwargs = directive.to_kwargs()
    kwargs["locations"] = kept
    return GraphQLDirective(**kwargs)


def create_schema(
    settings: Settings | None = None, extra_extensions: Sequence[Any] = (), **options: Any
) -> Schema:
    """`extra_extensions` run after ours (tracing's operation spans, when on)."""
    settings = settings or Settings()
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # FAST_PATHS off: strawberry's default, graphql-core's own execution.
        execution_context_class=PlainFieldsExecutor if settings.fast_paths else None,
        scalar_overrides=SCALAR_OVERRIDES,  # type: ignore[arg-type]
        extensions=[*_extensions(settings), *extra_extensions],
        **options,
    )
    # strawberry takes no built-in directives of ours; `_schema`, its graphql-core
    # schema, is the only handle on them (app/compat.py).
    core = schema._schema
    core.directives = tuple(portable_directive(d) for d in core.directives)
    return schema


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
        # Operations counted and timed (app.metrics), their error codes assigned by now.
        OperationMetrics,
    ]
