"""A GraphQL-over-HTTP request's parameters, checked (GET's query string or a POST's
JSON object, with the persisted document it may name), and `RequestRefused`, how the
view answers a request no operation of which may run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strawberry.http import GraphQLRequestData

from app.errors import AppError, InvalidInput
from app.graphql.persisted import Named, named


class RequestRefused(Exception):
    """Answer with `status` and this one error; no GraphQL operation runs."""

    def __init__(
        self, status: int, error: AppError, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})


@dataclass
class RequestData(GraphQLRequestData):
    """A request's parameters, with the persisted document it names (app.graphql.persisted)."""

    persisted: Named | None = None


def get_parameters(query_params: Mapping[str, Any]) -> GraphQLRequestData:
    parameters: dict[str, Any] = {}
    for name, value in query_params.items():
        if isinstance(value, list):
            raise RequestRefused(400, InvalidInput(name, "given more than once"))
        if name in ("variables", "extensions") and value:
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise RequestRefused(400, InvalidInput(name, f"not valid JSON ({exc})")) from None
        parameters[name] = value or None
    return checked_parameters(parameters)


def checked_parameters(parameters: object) -> GraphQLRequestData:
    """Check the spec's request parameters; any other shape is the client's error."""
    if not isinstance(parameters, dict):
        raise RequestRefused(400, InvalidInput("body", "must be a JSON object"))
    try:
        persisted = named(parameters)
    except InvalidInput as exc:
        raise RequestRefused(400, exc) from None
    query = parameters.get("query")
    if query is None and persisted is None:
        raise RequestRefused(400, InvalidInput("query", "required: the GraphQL document"))
    _expect(parameters, "query", str, "a string")
    _expect(parameters, "operationName", str, "a string or null")
    _expect(parameters, "variables", dict, "an object or null")
    _expect(parameters, "extensions", dict, "an object or null")
    return RequestData(
        query=query,
        variables=parameters.get("variables"),
        operation_name=parameters.get("operationName"),
        extensions=parameters.get("extensions"),
        persisted=persisted,
    )


def _expect(parameters: Mapping[str, Any], name: str, kind: type, described: str) -> None:
    value = parameters.get(name)
    if value is not None and not isinstance(value, kind):
        raise RequestRefused(400, InvalidInput(name, f"must be {described}"))
