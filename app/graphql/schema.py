"""The strawberry schema: types, extensions and error codes put together."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.types import ExecutionContext

from app.graphql.errors import assign_code, log_unexpected
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.types import SCALAR_OVERRIDES


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        document = execution_context.graphql_document if execution_context else None
        for error in errors:
            if assign_code(error, document) == "INTERNAL_SERVER_ERROR":
                log_unexpected(error)


def create_schema(**options: Any) -> Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        scalar_overrides=SCALAR_OVERRIDES,  # type: ignore[arg-type]
        extensions=[ParserCache, ValidationCache],
        **options,
    )
