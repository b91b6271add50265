"""One HTTP response carrying subscription results: a graphql-sse stream (one operation,
or a reservation's many) or an Apollo multipart subscription.

It is a connection as the WebSocket handlers are one, and serves its operations the
same way: `jobProgress` and `jobUpdates` by the view's fan-out (`FastPath._serve`:
one execution per change, the frame written at once, a slow client's frames waiting
in the `Outbox`, latest state per job, bounded), anything else strawberry's way
(`schema.stream`, a `JobStream` whose `Mailbox` keeps the latest state per job for a
slow client), its frames written through the same outbox, awaited. The token's expiry
ends it (`TokenExpiry`), as graceful shutdown does (`Streams.close`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError
from starlette.types import Receive, Send
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from app import metrics
from app.errors import Unauthenticated
from app.graphql.context import Context
from app.graphql.streams.framing import Framing
from app.graphql.ws.expiry import TOKEN_EXPIRED, TokenExpiry
from app.graphql.ws.fastpath import FastPath
from app.graphql.ws.outbox import Outbox

if TYPE_CHECKING:
    from app.graphql.streams.endpoint import Streams

logger = logging.getLogger("app.graphql")

# The outbox's key of heartbeats (never a client's operation: see `start`), conflated.
HEARTBEAT = "\x00heartbeat"
# Seconds the last frame of a stream may take to reach a client that stopped reading.
LAST_WRITE_SECONDS = 5.0


def _error_json(message: str, code: str) -> str:
    return orjson.dumps({"message": message, "extensions": {"code": code}}).decode()


class HTTPStream(FastPath, TokenExpiry):
    """The operations one HTTP response carries, and their frames."""

    # Authenticated before the response started (TokenExpiry watches from then on).
    connection_acknowledged = True
    websocket = None

    def __init__(
        self, view: Any, context: Context, framing: Framing, streams: Streams, distinct: bool
    ) -> None:
        self.protocol = framing.protocol
        super().__init__()
        self.view = view
        self.context = context
        self.framing = framing
        self._streams = streams
        # Distinct: the response ends with its one operation. Otherwise (a single
        # connection reservation) it ends when the client leaves, or at shutdown.
        self._ends_when_idle = distinct
        # Operation id -> the task starting or running it (done once the fan-out has it).
        self._operations: dict[str, asyncio.Task[None]] = {}
        self._send: Send | None = None
        self._over = asyncio.Event()
        self._ending: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        # Distinct keys for frames that must never replace one another in the outbox.
        self._frames = itertools.count()
        # A single connection reservation's token (None for a distinct stream).
        self.token: str | None = None

    # -- the response ----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._send is not None

    async def run(
        self, send: Send, receive: Receive, first: tuple[str, GraphQLRequestData] | None = None
    ) -> None:
        """Start the response (then the `first` operation, if any) and carry frames until
        it is over or the client leaves."""
        await send({"type": "http.response.start", "status": 200, "headers": self.framing.headers})
        self._send = send
        open_streams = metrics.HTTP_STREAMS.labels(self.protocol)
        open_streams.inc()
        if first is not None:
            self.start(*first)
        if self.framing.opening:
            self.outbox().write(HEARTBEAT, self.framing.opening, next(self._frames))
        self._watch_expiry()
        self._beat_later()
        self._check_idle()
        left = asyncio.ensure_future(_disconnected(receive))
        over = asyncio.ensure_future(self._over.wait())
        try:
            await asyncio.wait({left, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            open_streams.dec()
            gone = left.done()
            left.cancel()
            over.cancel()
            await self._close()
            if not gone:
                # The end of the response (and the multipart closing delimiter).
                last = {"type": "http.response.body", "body": self.framing.closing.encode()}
                with suppress(Exception):
                    await asyncio.wait_for(send(last), LAST_WRITE_SECONDS)

    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self._send_text)
        return self._outbox

    async def _send_text(self, frame: str) -> None:
        if frame and self._send is not None:
            message = {"type": "http.response.body", "body": frame.encode(), "more_body": True}
            await self._send(message)

    def _beat_later(self) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(self.framing.heartbeat_interval, self._beat)

    def _beat(self) -> None:
        # Conflated: a client that is not reading has at most one heartbeat waiting.
        self.outbox().write(HEARTBEAT, self.framing.heartbeat, HEARTBEAT)
        self._beat_later()

    async def _close(self) -> None:
        self._stop_watching()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        tasks = [task for task in self._operations.values() if not task.done()]
        for task in tasks:
            task.cancel()
        self._operations.clear()
        await self._close_fast()
        for task in tasks:
            with suppress(BaseException):
                await task
        self._streams.forget(self)

    # -- operations ------------------------------------------------------------

    @property
    def operation_count(self) -> int:
        return len(self._operations)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self._operations

    def start(self, op_id: str, request: GraphQLRequestData) -> None:
        self._operations[op_id] = asyncio.ensure_future(self._run(op_id, request))

    def stop(self, op_id: str) -> None:
        """The client ended the operation: nothing more is sent for it."""
        task = self._operations.pop(op_id, None)
        if task is not None and not task.done():
            task.cancel()
        self._stop(op_id)
        if self._outbox is not None:
            self._outbox.drop(op_id)
        self._check_idle()

    def shut(self) -> None:
        """Shutting down: end once its operations have (their `complete` sent)."""
        self._ends_when_idle = True
        self._check_idle()

    async def _run(self, op_id: str, request: GraphQLRequestData) -> None:
        try:
            if await self._serve(op_id, request.query, request.variables, request.operation_name):
                return  # the fan-out sends its frames, and ends it (`finish`)
            await self._run_strawberry(op_id, request)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("a subscription over HTTP failed")
            error = _error_json("internal error", "INTERNAL_SERVER_ERROR")
            self._finish_operation(op_id, self.framing.ended(op_id, error))

    async def _run_strawberry(self, op_id: str, request: GraphQLRequestData) -> None:
        """strawberry's way, as its WebSocket handlers run an operation: every result,
        each written before the next is asked for (a slow client's states wait, the
        latest per job, in the subscription's `Mailbox`), then `complete`."""
        view = self.view
        source = await view.schema.stream(
            request.query,
            variable_values=request.variables,
            context_value=self.context,
            operation_name=request.operation_name,
            operation_extensions=request.extensions,
        )
        async with aclosing(source):
            async for result in source:
                if not isinstance(result, ExecutionResult):  # @defer / @stream
                    error = GraphQLError(
                        "incremental delivery (@defer, @stream) is not supported over this stream"
                    )
                    result = ExecutionResult(data=None, errors=[error])
                response = await view.process_result(self.context.request, result)
                outbox = self.outbox()
                outbox.write(op_id, self.next_frame(op_id, view.encode_json(response)), op_id)
                await outbox.flushed()
        self._finish_operation(op_id, [self.complete_frame(op_id)])

    def _finish_operation(self, op_id: str, frames: list[str]) -> None:
        if self._operations.pop(op_id, None) is None:
            return
        for frame in frames:
            self.outbox().write(op_id, frame, next(self._frames))
        self._check_idle()

    def _check_idle(self) -> None:
        if self._ends_when_idle and not self._operations and self._ending is None:
            self._ending = asyncio.ensure_future(self._end_when_written())

    async def _end_when_written(self) -> None:
        await asyncio.sleep(0)  # the `complete` of a finishing operation is written next
        if self._outbox is not None:
            await self._outbox.flushed()
        self._over.set()

    # -- FastPath's hooks --------------------------------------------------------

    def next_frame(self, op_id: str, payload: str) -> str:
        return self.framing.next(op_id, payload)

    def complete_frame(self, op_id: str) -> str:
        return self.framing.complete(op_id)

    def _forget(self, op_id: str) -> None:
        self._operations.pop(op_id, None)
        self._check_idle()

    async def refuse(self, op_id: str, error: GraphQLError) -> None:
        payload = orjson.dumps({"errors": [error.formatted]}).decode()
        self._finish_operation(op_id, [self.next_frame(op_id, payload), self.complete_frame(op_id)])

    # -- TokenExpiry's hook ------------------------------------------------------

    async def _close_expired(self) -> None:
        # As WebSocket closes the connection (4403): every operation ends with
        # UNAUTHENTICATED, then the response; the client comes back with a new token.
        error = _error_json(TOKEN_EXPIRED, Unauthenticated.code)
        for op_id in list(self._operations):
            task = self._operations.get(op_id)
            if task is not None and not task.done():
                task.cancel()
            self._stop(op_id)
            if self._outbox is not None:
                self._outbox.drop(op_id)
            self._finish_operation(op_id, self.framing.ended(op_id, error))
        self.shut()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
