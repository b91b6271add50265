"""ASGI middleware that guards every route before it runs: body size, open mode."""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.graphql.errors import QUERY_TOO_COMPLEX


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413, before any route reads it.

    The body is read here (up to the cap) and handed on whole, so a chunked body
    with no Content-Length is capped too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away; let the route see that as it would.
                await self.app(scope, _replay(message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay(whole, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"body: larger than {self.max_bytes} bytes (MAX_BODY_BYTES)"
        content: dict[str, object]
        if scope["path"].startswith("/graphql"):
            content = {"errors": [{"message": message, "extensions": {"code": QUERY_TOO_COMPLEX}}]}
        else:
            content = {"error": {"code": "PAYLOAD_TOO_LARGE", "message": message}}
        response = JSONResponse(content, status_code=413, headers={"Connection": "close"})
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay


class LoopbackOnly:
    """In open mode, refuse requests that reached the server on a non-loopback address.

    `python -m app serve` refuses such a --host outright; this also covers the
    ASGI app run by another server (`uvicorn app.main:app --host 0.0.0.0`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _is_loopback(scope.get("server")):
            message = "open mode (no AUTH_JWT_SECRET) serves loopback clients only"
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": message})
                return
            response = JSONResponse(
                {"error": {"code": "FORBIDDEN", "message": message}}, status_code=403
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_loopback(server: object) -> bool:
    # `server` is the local address the request came in on; a Unix socket has none,
    # and an in-process test client names a host rather than an address.
    if not isinstance(server, (tuple, list)) or not server:
        return True
    try:
        address = ipaddress.ip_address(str(server[0]))
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
