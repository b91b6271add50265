"""ASGI middleware that guards every route before it runs: body size, open mode."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.graphql.errors import QUERY_TOO_COMPLEX
from app.net import address, is_local_host, is_loopback
from app.responses import error_body, error_response
from app.settings import Settings

# Every answer says its Content-Type is meant: a browser must not sniff a JSON
# error into HTML. `python -m app serve` has uvicorn add these to every response it
# sends, its own too (app/http_server.py).
RESPONSE_HEADERS = [("X-Content-Type-Options", "nosniff")]


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413, or not sent whole within
    `timeout` seconds with 408, before any route reads it.

    The body is read here (up to the cap) and handed on whole, so a chunked body
    with no Content-Length is capped too, and a client that sends a body slowly (or
    never finishes it) holds its connection for `timeout` seconds at most.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse_too_large(scope, receive, send)
            return
        # No body to wait for (most GETs): the server hands over the empty body at
        # once, and a timer would cost ~5 µs a request.
        no_body = length in ("", "0") and "transfer-encoding" not in headers
        try:
            first = await (self._read(receive) if no_body else self._read_in_time(receive))
        except TimeoutError:
            message = f"body: not received within {self.timeout:g} s (REQUEST_BODY_TIMEOUT)"
            await _refuse(scope, receive, send, 408, "REQUEST_TIMEOUT", "BAD_REQUEST", message)
            return
        if first is None:
            await self._refuse_too_large(scope, receive, send)
            return
        await self.app(scope, _replay(first, receive), send)

    async def _read_in_time(self, receive: Receive) -> Message | None:
        async with asyncio.timeout(self.timeout):
            return await self._read(receive)

    async def _read(self, receive: Receive) -> Message | None:
        """The whole body as one message (or the disconnect that cut it); None if too large."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away; let the route see that as it would.
                return message
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return {"type": "http.request", "body": bytes(body), "more_body": False}

    async def _refuse_too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"body: larger than {self.max_bytes} bytes (MAX_BODY_BYTES)"
        await _refuse(scope, receive, send, 413, "PAYLOAD_TOO_LARGE", QUERY_TOO_COMPLEX, message)


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    rest_code: str,
    graphql_code: str,
    message: str,
) -> None:
    """Answer before the route ran, in the shape of the API asked (GraphQL or REST);
    the connection is closed: the rest of the body is never read."""
    content: object
    if scope["path"].startswith("/graphql"):
        content = {"errors": [{"message": message, "extensions": {"code": graphql_code}}]}
    else:
        content = error_body(rest_code, message)
    response = JSONResponse(content, status_code=status, headers={"Connection": "close"})
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
    """Open mode (no token needed) is for this machine alone; refuse anything else.

    - a request that reached the server on a non-loopback address (`python -m app
      serve` refuses such a --host outright; this also covers `uvicorn app.main:app
      --host 0.0.0.0`), or that a proxy on this machine forwarded for another;
    - a `Host` other than localhost / a loopback address / PUBLIC_URL's host: a
      DNS-rebinding page would name its own host;
    - a browser request from another origin (a page the developer happens to have
      open), unless CORS_ORIGINS names it.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        # Unset, PUBLIC_URL is the served (loopback) address itself: nothing to add.
        public = settings.public_url
        self.hosts = {"localhost", (urlsplit(public).hostname if public else None) or "localhost"}
        self.origins = {*settings.cors_origins, *([public] if public else [])}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            problem = self._problem(scope)
        except MalformedHeader as exc:
            await _deny(scope, receive, send, 400, "BAD_REQUEST", str(exc))
            return
        if problem is None:
            await self.app(scope, receive, send)
            return
        message = f"open mode (no AUTH_JWT_SECRET) serves this machine only: {problem}"
        await _deny(scope, receive, send, 403, "FORBIDDEN", message)

    def _problem(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        server = scope.get("server")
        # An in-process test client names a host rather than an address; a Unix
        # socket has none. Only a real listening address is checked.
        if isinstance(server, (tuple, list)) and server and address(str(server[0])):
            if not is_loopback(str(server[0])):
                return "request arrived on a non-loopback address"
            # A proxy on this machine connects from loopback; uvicorn puts the
            # client it names (X-Forwarded-For) here.
            client = scope.get("client")
            if client and address(str(client[0])) and not is_loopback(str(client[0])):
                return f"request from {client[0]}, not from this machine (a proxy forwarded it)"
            host = _hostname("Host", headers.get("host", ""), "//")
            if not (is_loopback(host) or host in self.hosts):
                return f"Host {host!r} is not this machine"
        origin = headers.get("origin")
        if origin is not None and not {"*", origin.rstrip("/")} & self.origins:
            hostname = _hostname("Origin", origin)
            if not is_local_host(hostname):
                return f"cross-origin request from {origin!r} (CORS_ORIGINS can allow it)"
        return None


class MalformedHeader(ValueError):
    """A Host or Origin header that is not a host or an origin at all."""


def _hostname(name: str, value: str, prefix: str = "") -> str:
    try:
        return urlsplit(prefix + value).hostname or ""
    except ValueError:  # e.g. an unclosed IPv6 bracket: "[::1"
        raise MalformedHeader(f"{name}: malformed ({value[:100]!r})") from None


async def _deny(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
) -> None:
    """A JSON error; on a WebSocket upgrade too, where the server can answer the
    handshake with one (uvicorn can), else the handshake is refused (1008)."""
    headers = None
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        # uvicorn adds its configured headers to HTTP answers, not to this one.
        headers = dict(RESPONSE_HEADERS)
    response = error_response(status, code, message, headers)
    await response(scope, receive, send)
