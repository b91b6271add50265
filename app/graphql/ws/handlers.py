"""The two WebSocket protocols' handlers: strawberry's, with the fan-out tried first.

Each overrides the smallest hooks strawberry offers: the operation task's top-level
method (`run_operation`, `handle_async_results`) tries the fan-out and otherwise runs
strawberry's own. An operation served by the fan-out stays registered where
strawberry keeps its operations (`operations`, `tasks`), so strawberry's own checks
apply to it (the per-connection limit, an id in use) until it is over. Besides:
malformed messages get a protocol error (app.graphql.ws.messages), the per-connection
limit's error gets its code, the token's expiry closes the connection, and the legacy
protocol gets the current one's `connection_init` rules (one only, and in time).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLFormattedError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionErrorMessage,
    ErrorMessage,
    OperationMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)

from app.errors import Unauthenticated
from app.graphql.context import Context
from app.graphql.errors import QUERY_TOO_COMPLEX
from app.graphql.ws.expiry import TOKEN_EXPIRED, TokenExpiry
from app.graphql.ws.fastpath import FastPath
from app.graphql.ws.messages import MalformedMessage, check_legacy, check_transport
from app.graphql.ws.persisted import PersistedOperations
from app.logs import operation_log

# What graphql-transport-ws closes with, and the legacy protocol now too.
INIT_TIMEOUT = (4408, "Connection initialisation timeout")
TOO_MANY_INITS = (4429, "Too many initialisation requests")
# The most a WebSocket close frame's reason may hold (RFC 6455: 125 bytes less the code).
MAX_REASON_BYTES = 123

# The error strawberry answers an operation past `max_subscriptions_per_connection` with
# (both protocols), bare; it is sent with our code and a message saying what the limit is.
STRAWBERRY_LIMIT_MESSAGE = "Subscription limit reached"


def close_reason(text: str) -> str:
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def limit_reached_message(limit: int | None) -> str:
    """What a connection (or a graphql-sse reservation) past its limit is told."""
    return f"subscription limit reached: one connection runs at most {limit} operations at a time"


def _limit_reached(limit: int | None) -> GraphQLFormattedError:
    return GraphQLError(
        limit_reached_message(limit), extensions={"code": QUERY_TOO_COMPLEX}
    ).formatted


def _is_limit_error(error: object) -> bool:
    return (
        isinstance(error, dict)
        and error.get("message") == STRAWBERRY_LIMIT_MESSAGE
        and "extensions" not in error
    )


class TransportWSHandler(
    PersistedOperations, FastPath, TokenExpiry, BaseGraphQLTransportWSHandler[Context, None]
):
    """graphql-transport-ws, with `jobProgress` and `jobUpdates` fanned out."""

    _next = ('{"id":', ',"type":"next","payload":', "}")
    _complete = ('{"id":', ',"type":"complete"}')
    protocol = "graphql-transport-ws"

    async def handle_message(self, message: Message) -> None:
        refused = self.persisted_document(message)
        if refused is not None:
            await self.refuse(*refused)
            return
        try:
            check_transport(message)
        except MalformedMessage as exc:
            # The protocol: "receiving a message of a type or format which is not
            # specified in this document" closes the socket with 4400.
            await self.handle_invalid_message(close_reason(exc.message))
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if message.get("payload", {}) is None:
            # The protocol allows a null payload; strawberry closes the connection (4400).
            message = ConnectionInitMessage(type="connection_init")
        await super().handle_connection_init(message)
        self._watch_expiry()

    async def _close_expired(self) -> None:
        # As a refused `connection_init` is closed: the client's next connection sends a new token.
        await self.websocket.close(code=4403, reason=TOKEN_EXPIRED)

    async def send_message(self, message: Message) -> None:
        if message["type"] == "error" and _is_limit_error(message["payload"][0]):
            payload = [_limit_reached(self.max_subscriptions_per_connection)]
            message = {"id": message["id"], "type": "error", "payload": payload}
        await super().send_message(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        op = operation
        with operation_log(op.query, op.operation_name):
            tracing = self.view.tracing
            if tracing is None:
                await self._run_operation(operation)
                return
            with tracing.websocket_operation(op.id, op.query, op.operation_name):
                await self._run_operation(operation)

    async def _run_operation(self, operation: Operation[Context, None]) -> None:
        # Served by the fan-out, the operation stays in `operations` until it is over
        # (`_forget`, `cleanup_operation`); its task ends here.
        op = operation
        if not await self._serve(op.id, op.query, op.variables, op.operation_name):
            with self.running():
                await super().run_operation(operation)

    def _forget(self, op_id: str) -> None:
        self.operations.pop(op_id, None)

    async def refuse(self, op_id: str, error: GraphQLError) -> None:
        self._forget(op_id)
        await self.send_message({"id": op_id, "type": "error", "payload": [error.formatted]})

    async def cleanup_operation(self, operation_id: str) -> None:
        if self._stop(operation_id) is not None:
            self._forget(operation_id)
            return
        await super().cleanup_operation(operation_id)

    async def shutdown(self) -> None:
        # (strawberry's `handle` ends with it, once per connection.)
        try:
            self._stop_watching()
            await super().shutdown()
            await self._close_fast()
        finally:
            self.disconnected()


class LegacyWSHandler(
    PersistedOperations, FastPath, TokenExpiry, BaseGraphQLWSHandler[Context, None]
):
    """The legacy graphql-ws protocol, with `jobProgress` and `jobUpdates` fanned out."""

    _next = ('{"type":"data","id":', ',"payload":', "}")
    _complete = ('{"type":"complete","id":', "}")
    protocol = "graphql-ws"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_received = False
        self._init_timeout: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        # The current protocol's rule, which strawberry applies to it alone: a
        # connection that has not sent `connection_init` in time is closed (4408).
        delay = self.view.connection_init_wait_timeout.total_seconds()
        timer = asyncio.get_running_loop().call_later(delay, self._init_timed_out)
        try:
            await super().handle()
        finally:
            timer.cancel()
            if self._init_timeout is not None:
                self._init_timeout.cancel()

    def _init_timed_out(self) -> None:
        if not self._init_received:
            self._init_timeout = asyncio.ensure_future(self._close(*INIT_TIMEOUT))

    async def _close(self, code: int, reason: str) -> None:
        with suppress(Exception):  # the client is gone already: nothing to close
            await self.websocket.close(code=code, reason=reason)

    async def handle_message(self, message: OperationMessage) -> None:
        refused = self.persisted_document(message)
        if refused is not None:
            await self.refuse(*refused)
            return
        try:
            check_legacy(message)
        except MalformedMessage as exc:
            await self._refuse(exc)
            return
        await super().handle_message(message)

    async def _refuse(self, exc: MalformedMessage) -> None:
        """A malformed message is answered as subscriptions-transport-ws answers one:
        an `error` for the operation it starts, else a `connection_error`; the
        connection stays open."""
        if exc.operation_id is not None:
            error: GraphQLFormattedError = {
                "message": exc.message,
                "extensions": {"code": exc.code},
            }
            await self.send_message(ErrorMessage(type="error", id=exc.operation_id, payload=error))
        else:
            payload: dict[str, object] = {"code": exc.code, "message": exc.message}
            await self.send_message(
                ConnectionErrorMessage(type="connection_error", payload=payload)
            )

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        # One per connection, as in the current protocol: a second one would run
        # `on_ws_connect` again and start another keep-alive task, never cancelled.
        if self._init_received:
            await self.websocket.close(*TOO_MANY_INITS)
            return
        self._init_received = True
        await super().handle_connection_init(message)
        self._watch_expiry()

    async def _close_expired(self) -> None:
        # As a refused `connection_init` is answered.
        payload: dict[str, object] = {"code": Unauthenticated.code, "message": TOKEN_EXPIRED}
        await self.send_message(ConnectionErrorMessage(type="connection_error", payload=payload))
        await self.websocket.close(code=1011, reason="")

    async def send_message(self, message: OperationMessage) -> None:
        if message["type"] == "error" and _is_limit_error(message.get("payload")):
            payload = _limit_reached(self.max_subscriptions_per_connection)
            message = ErrorMessage(type="error", id=message["id"], payload=payload)
        await super().send_message(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        with operation_log(query, operation_name):
            tracing = self.view.tracing
            if tracing is None:
                await self._handle_async_results(operation_id, query, operation_name, variables)
                return
            with tracing.websocket_operation(operation_id, query, operation_name):
                await self._handle_async_results(operation_id, query, operation_name, variables)

    async def _handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        # Served by the fan-out, the operation's (finished) task stays in `tasks` until
        # it is over (`_forget`, `cleanup_operation`): strawberry counts it there.
        try:
            served = await self._serve(operation_id, query, variables, operation_name)
        except asyncio.CancelledError:  # stopped while starting: confirmed, as strawberry does
            self._forget(operation_id)
            await self.send_message({"type": "complete", "id": operation_id})
            return
        if not served:
            with self.running():
                await super().handle_async_results(operation_id, query, operation_name, variables)

    def _forget(self, op_id: str) -> None:
        self.tasks.pop(op_id, None)

    async def refuse(self, op_id: str, error: GraphQLError) -> None:
        self._forget(op_id)
        await self.send_message(ErrorMessage(type="error", id=op_id, payload=error.formatted))

    async def cleanup_operation(self, operation_id: str) -> None:
        if self._stop(operation_id) is not None:
            self._forget(operation_id)
            # The legacy protocol confirms a stop.
            before, after = self._complete
            quoted = orjson.dumps(operation_id).decode()
            self.outbox().write(operation_id, f"{before}{quoted}{after}", final=True)
            return
        await super().cleanup_operation(operation_id)

    async def cleanup(self) -> None:
        # (strawberry's `handle` ends with it, once per connection.)
        try:
            self._stop_watching()
            await self._close_fast()
            await super().cleanup()
        finally:
            self.disconnected()
