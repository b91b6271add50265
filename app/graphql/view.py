"""The ASGI GraphQL view: HTTP (POST, GET for queries) and WebSocket at /graphql."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.graphql.context import Context
from app.graphql.http import GraphQLOverHTTP
from app.jobs.service import Jobs
from app.settings import Settings


class GraphQLView(GraphQLOverHTTP):
    """GraphQL over HTTP (rules in app.graphql.http) and over WebSocket at /graphql."""

    def __init__(self, settings: Settings, **options: object) -> None:
        from app.graphql.schema import create_schema

        super().__init__(create_schema(), **options)  # type: ignore[arg-type]
        self.settings = settings

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            request=request,
            response=response,
            settings=self.settings,
            jobs=Jobs(request.state.database, tenant="default"),
        )
