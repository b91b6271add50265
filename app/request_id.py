"""A request id for every request: the client's `X-Request-ID` if sane, else a new one.

It is answered in the response's `X-Request-ID` header and written in every log line
of the request (app.logs.LogContext), with the trace id when tracing is on, so an
operator can go from a client's report to the lines and the trace of its request.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import LOG_CONTEXT, LogContext

HEADER = b"x-request-id"
# A client's id is kept when it is 1-128 printable characters without spaces (a UUID,
# a proxy's id...); anything else (control characters, a megabyte) gets a new one.
_SANE = re.compile(rb"[\x21-\x7e]{1,128}")


def new_request_id() -> str:
    # Unique, not secret: no system call per request (os.urandom) is needed for it.
    return f"{random.getrandbits(128):032x}"


def request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == HEADER:
            if _SANE.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return new_request_id()


class RequestId:
    """Outermost but for tracing: every later part of the request logs with its id.

    `trace_id`, given when tracing is on, reads the current span's trace id (the
    tracing middleware runs outside this one).
    """

    def __init__(self, app: ASGIApp, trace_id: Callable[[], str | None] | None = None) -> None:
        self.app = app
        self.trace_id = trace_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        context = LogContext(rid, self.trace_id() if self.trace_id is not None else None)
        token = LOG_CONTEXT.set(context)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
        else:
            header = (HEADER, rid.encode("ascii"))

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), header]
                await send(message)

            await self.app(scope, receive, send_with_id)
        # Not reset when the request fails: the error handler outside (app.main's
        # `unexpected`) logs the failure with the request's id, tenant and trace.
        LOG_CONTEXT.reset(token)
