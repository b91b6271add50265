"""The ASGI GraphQL view: HTTP (POST, GET for queries) and WebSocket at /graphql."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from app.errors import Unauthenticated
from app.graphql.context import Context
from app.graphql.http import GraphQLOverHTTP
from app.graphql.persisted import PersistedDocuments
from app.graphql.prepared import PreparedOperations
from app.graphql.streams import Streams
from app.graphql.ws import Fanout, LegacyWSHandler, Plans, TransportWSHandler
from app.settings import Settings
from app.urls import public_url
from app.web.graphiql import LocalGraphiQL

# The subprotocol served when a client offers several: the current protocol first. The
# client's order is no guide: gql (Python) offers ["graphql-ws", "graphql-transport-ws"],
# and the legacy protocol serves subscriptions only (its queries are refused).
SUBPROTOCOL_PREFERENCE = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
if TYPE_CHECKING:
    from app.tracing import Tracing

# Well inside the 30 s after which subscriptions-transport-ws clients give up.
KEEP_ALIVE_SECONDS = 12.0


def _json_text(data: object) -> str:
    """orjson, ~10x faster than json.dumps on a page of 50 jobs. Text, not bytes:
    strawberry sends bytes as binary WebSocket frames, which clients do not read."""
    return orjson.dumps(data).decode()


class GraphQLView(LocalGraphiQL, GraphQLOverHTTP):
    """GraphQL over HTTP (rules in app.graphql.http), subscriptions over HTTP
    (graphql-sse and Apollo multipart: app.graphql.streams) and over WebSocket at /graphql."""

    # strawberry's handlers, with `jobProgress` and `jobUpdates` fanned out (app.graphql.ws).
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(
        self, settings: Settings, tracing: Tracing | None = None, **options: object
    ) -> None:
        from app.graphql.schema import create_schema, query_limits, validation_rules

        options.setdefault("graphql_ide", "graphiql" if settings.graphiql else None)
        options.setdefault(
            "max_subscriptions_per_connection", settings.max_subscriptions_per_connection
        )
        # Browsers on the CORS origins may open WebSockets too (same-origin always can).
        options.setdefault("allowed_origins", settings.cors_origins)
        # Legacy graphql-ws clients expect `ka` messages (graphql-transport-ws has ping/pong).
        options.setdefault("keep_alive", True)
        options.setdefault("keep_alive_interval", KEEP_ALIVE_SECONDS)
        # Both protocols (LegacyWSHandler applies it too): a client that never sends
        # `connection_init` is closed with 4408 after this long.
        options.setdefault(
            "connection_init_wait_timeout", timedelta(seconds=settings.websocket_init_timeout)
        )
        # Tracing on: a span per GraphQL operation (app.tracing.graphql).
        extra = [tracing.extension()] if tracing is not None else []
        schema = create_schema(settings, extra_extensions=extra)
        super().__init__(schema, **options)  # type: ignore[arg-type]
        self.settings = settings
        # Tracing on: the WebSocket handlers make a span per operation.
        self.tracing = tracing
        # Automatic persisted queries and trusted documents, for HTTP and WebSocket alike.
        self.persisted = PersistedDocuments(settings)
        # Which documents the fan-out serves, and those refused before strawberry parses.
        self.plans = Plans(
            schema,
            query_limits(settings),
            validation_rules(settings),
            settings.max_query_tokens,
            settings.max_query_length,
        )
        # FAST_PATHS off: no fan-out, no prepared operations: strawberry's way for all.
        # Tracing on: strawberry's way too, where the operation span's extension runs.
        self.prepared = (
            PreparedOperations(
                schema,
                query_limits(settings),
                validation_rules(settings),
                settings.max_query_tokens,
                settings.max_query_length,
            )
            if settings.fast_paths and tracing is None
            else None
        )
        self.fanout = (
            Fanout(schema, schema.execution_context_class, _json_text)
            if settings.fast_paths
            else None
        )

        # Subscriptions over HTTP: graphql-sse (both modes) and Apollo multipart.
        self.streams = Streams(self, settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            if self.streams.wanted(request):
                await self.streams.respond(request, send)
                return
        await super().__call__(scope, receive, send)

    async def pick_websocket_subprotocol(self, request: WebSocket) -> str | None:
        """graphql-transport-ws whenever it is offered, else graphql-ws; None (the
        connection is closed with 4406) if the client offers neither."""
        offered = request.scope.get("subprotocols") or ()
        served = self.websocket_subprotocols
        return next(
            (p for p in SUBPROTOCOL_PREFERENCE if p in offered and p in served),
            None,
        )

    def encode_json(self, data: object) -> str | bytes:
        return _json_text(data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        # A WebSocket client is authenticated later, at `connection_init`.
        caller, problem = None, None
        if isinstance(request, Request):
            try:
                caller = request.app.state.verifier.verify(request.headers.get("authorization"))
            except Unauthenticated as exc:
                problem = exc
        return Context(
            request=request,
            response=response,
            settings=self.settings,
            database=request.state.database,
            events=request.state.events,
            cursors=request.app.state.cursors,
            caller=caller,
            auth_error=problem,
            public_url=public_url(self.settings, request.scope),
            outbox=request.app.state.outbox,
            webhook_config=request.app.state.webhooks,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a WebSocket client by `connection_init` payload or upgrade header."""
        params = context.connection_params or {}
        authorization = params.get("Authorization", params.get("authorization"))
        if authorization is None:
            authorization = context.request.headers.get("authorization")
        try:
            if authorization is not None and not isinstance(authorization, str):
                raise Unauthenticated("Authorization must be 'Bearer <token>'")
            context.caller = context.request.app.state.verifier.verify(authorization)
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from None
        return await super().on_ws_connect(context)
