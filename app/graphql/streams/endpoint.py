"""Which HTTP requests to /graphql are subscription streams, and how each is answered.

- graphql-sse, distinct connections: GET or POST with `Accept: text/event-stream`;
  200 and the operation's events.
- graphql-sse, single connection: PUT reserves a stream (201, the token as text);
  GET with the token (`X-GraphQL-Event-Stream-Token` or `?token=`) and
  `Accept: text/event-stream` opens it; POST with the token runs an operation on it
  (202; its id in `extensions.operationId`); DELETE `?operationId=` stops one (200).
- Apollo multipart subscriptions: POST (or GET) with `Accept: multipart/mixed;
  subscriptionSpec="1.0"`; 200 and the operation's parts.

Authentication is the HTTP one (the `Authorization` header), checked before anything
starts: a request without a valid token is 401. A reservation's operations run as the
caller who reserved it (a WebSocket connection's run as its `connection_init`'s), and
its token is the secret that reaches it. At most MAX_HTTP_STREAMS streams and
reservations per process (503 past it); a reservation runs at most
MAX_SUBSCRIPTIONS_PER_CONNECTION operations at once, and is dropped unless its stream
is opened within WEBSOCKET_INIT_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Send
from strawberry.http import GraphQLRequestData

from app.auth import challenge
from app.errors import AppError, InvalidInput, NotFound, ProtocolConflict, Unavailable
from app.graphql.errors import QUERY_TOO_COMPLEX
from app.graphql.http import JSON, BadRequest
from app.graphql.request import RequestRefused
from app.graphql.streams.framing import MULTIPART, SSE, DistinctSSE, Framing, Multipart, SingleSSE
from app.graphql.streams.stream import HTTPStream
from app.graphql.ws.handlers import limit_reached_message
from app.settings import Settings

TOKEN_HEADER = "x-graphql-event-stream-token"
# Seconds a client refused for the stream limit is asked to wait.
RETRY_AFTER = "5"


class TooMany(AppError):
    code = QUERY_TOO_COMPLEX
    http_status = 429


def _ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """The media ranges of an Accept header (q=0 left out), with their parameters."""
    found = []
    for item in accept.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        values = {}
        for param in params:
            name, _, value = param.partition("=")
            values[name.strip().lower()] = value.strip().strip("\"'")
        if values.get("q", "1").strip() not in ("0", "0.0", "0.00", "0.000"):
            found.append((media_range.lower(), values))
    return found


def stream_framing(accept: str | None) -> Framing | None:
    """The transport an Accept header asks for: graphql-sse, Apollo multipart, or neither."""
    lowered = (accept or "").lower()
    if "event-stream" not in lowered and "multipart" not in lowered:
        return None  # most requests: not worth parsing
    for media_range, params in _ranges(lowered):
        if media_range == SSE:
            return DistinctSSE()
        if media_range == MULTIPART and params.get("subscriptionspec", "").startswith("1.0"):
            return Multipart()
    return None


class Streams:
    """The view's subscription streams over HTTP, and single connection reservations."""

    def __init__(self, view: Any, settings: Settings) -> None:
        self.view = view
        self.limit = settings.max_http_streams
        self.max_operations = settings.max_subscriptions_per_connection
        self.reservation_timeout = float(settings.websocket_init_timeout)
        self.open: set[HTTPStream] = set()
        self.reserved: dict[str, HTTPStream] = {}
        self.closing = False
        self._all_closed = asyncio.Event()

    @staticmethod
    def wanted(request: Request) -> bool:
        """Whether the request is for a stream (else it is an ordinary GraphQL request)."""
        method = request.method
        if method in ("PUT", "DELETE"):
            return True
        if _token(request) is not None:
            return True
        return stream_framing(request.headers.get("accept")) is not None

    async def respond(self, request: Request, send: Send) -> None:
        try:
            if request.method == "PUT":
                response = await self._reserve(request)
            elif _token(request) is not None or request.method == "DELETE":
                await self._single(request, send)
                return
            else:
                await self._distinct(request, send)
                return
        except RequestRefused as refused:
            response = self.view._refusal(refused, JSON)
        await response(request.scope, request.receive, send)

    # -- the two modes ---------------------------------------------------------

    async def _distinct(self, request: Request, send: Send) -> None:
        framing = stream_framing(request.headers.get("accept"))
        assert framing is not None
        self._check_capacity()
        context = await self._context(request)
        operation = await self._parameters(request, context)
        stream = HTTPStream(self.view, context, framing, self, distinct=True)
        self.open.add(stream)
        await stream.run(send, request.receive, first=("", operation))

    async def _reserve(self, request: Request) -> Response:
        self._check_capacity()
        context = await self._context(request)
        token = secrets.token_urlsafe(24)
        stream = HTTPStream(self.view, context, SingleSSE(), self, distinct=False)
        stream.token = token
        self.reserved[token] = stream
        self.open.add(stream)
        asyncio.get_running_loop().call_later(self.reservation_timeout, self._unclaimed, stream)
        return PlainTextResponse(token, status_code=201)

    async def _single(self, request: Request, send: Send) -> None:
        token = _token(request)
        if token is None:
            raise RequestRefused(400, InvalidInput(TOKEN_HEADER, "required: the reservation token"))
        stream = self.reserved.get(token)
        if stream is None:
            raise RequestRefused(
                404, NotFound("no such stream reservation: reserve one with PUT /graphql")
            )
        if request.method == "GET" and stream_framing(request.headers.get("accept")) is not None:
            if stream.connected:
                raise RequestRefused(
                    409, ProtocolConflict("this reservation's stream is already open")
                )
            await stream.run(send, request.receive)
            return
        response = await self._operation(request, stream)
        await response(request.scope, request.receive, send)

    async def _operation(self, request: Request, stream: HTTPStream) -> Response:
        if request.method == "DELETE":
            op_id = request.query_params.get("operationId")
            if not op_id:
                raise RequestRefused(400, InvalidInput("operationId", "required in the query"))
            stream.stop(op_id)
            return Response(status_code=200)
        if request.method != "POST":
            raise RequestRefused(
                405,
                BadRequest(
                    "with a reservation token: GET opens the stream (Accept: "
                    f"{SSE}), POST runs an operation, DELETE stops one"
                ),
                {"Allow": "GET, POST, DELETE"},
            )
        if not stream.connected:
            raise RequestRefused(
                409,
                ProtocolConflict(
                    "open the reservation's stream first (GET with Accept: text/event-stream)"
                ),
            )
        operation = await self._parameters(request, stream.context)
        op_id = (operation.extensions or {}).get("operationId")
        if not isinstance(op_id, str) or not op_id:
            raise RequestRefused(
                400, InvalidInput("extensions.operationId", "required: a non-empty string")
            )
        if op_id in stream:
            raise RequestRefused(409, ProtocolConflict(f"operation {op_id!r} is already running"))
        if stream.operation_count >= self.max_operations:
            raise RequestRefused(429, TooMany(limit_reached_message(self.max_operations)))
        stream.start(op_id, operation)
        return Response(status_code=202)

    # -- shared checks -----------------------------------------------------------

    async def _parameters(self, request: Request, context: Any) -> GraphQLRequestData:
        """The operation's parameters, its document sent or named by a persisted id, as
        GraphQL over HTTP takes them (app.graphql.persisted: APQ, trusted documents)."""
        operation: GraphQLRequestData = await self.view.parse_http_body(
            self.view.request_adapter_class(request)
        )
        operation.query = self.view.persisted_document(operation, context)
        return operation

    def _check_capacity(self) -> None:
        if self.closing:
            raise RequestRefused(
                503,
                Unavailable("the server is shutting down; try again"),
                {"Retry-After": RETRY_AFTER},
            )
        if len(self.open) >= self.limit:
            raise RequestRefused(
                503,
                Unavailable(
                    f"this server holds {self.limit} subscription streams (MAX_HTTP_STREAMS); "
                    "try again later"
                ),
                {"Retry-After": RETRY_AFTER},
            )

    async def _context(self, request: Request) -> Any:
        context = await self.view.get_context(request, Response())
        if context.caller is None:
            # As GraphQL over HTTP and REST answer a missing or refused token.
            error = context.unauthenticated()
            raise RequestRefused(error.http_status, error, challenge(error))
        return context

    # -- lifecycle ---------------------------------------------------------------

    def _unclaimed(self, stream: HTTPStream) -> None:
        if not stream.connected:
            self.forget(stream)

    def forget(self, stream: HTTPStream) -> None:
        self.open.discard(stream)
        if stream.token is not None and self.reserved.get(stream.token) is stream:
            del self.reserved[stream.token]
        if self.closing and not self.open:
            self._all_closed.set()

    async def close(self) -> None:
        """Shutting down: refuse new streams; each open one ends once its operations
        have sent `complete` (app.jobs.events ends them first)."""
        self.closing = True
        for stream in list(self.open):
            if stream.connected:
                stream.shut()
            else:
                self.forget(stream)
        if self.open:
            await self._all_closed.wait()


def _token(request: Request) -> str | None:
    return request.headers.get(TOKEN_HEADER) or request.query_params.get("token")
