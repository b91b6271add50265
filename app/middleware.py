"""ASGI middleware that guards every route before it runs: body size, open mode."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.graphql.errors import QUERY_TOO_COMPLEX
from app.settings import Settings


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
    """Open mode (no token needed) is for this machine alone; refuse anything else.

    - a request that reached the server on a non-loopback address (`python -m app
      serve` refuses such a --host outright; this also covers `uvicorn app.main:app
      --host 0.0.0.0`);
    - a `Host` other than localhost / a loopback address / PUBLIC_URL's host: a
      DNS-rebinding page would name its own host;
    - a browser request from another origin (a page the developer happens to have
      open), unless CORS_ORIGINS names it.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = {"localhost", urlsplit(settings.public_url).hostname or "localhost"}
        self.origins = {*settings.cors_origins, settings.public_url}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self._problem(scope) if scope["type"] in ("http", "websocket") else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        message = f"open mode (no AUTH_JWT_SECRET) serves this machine only: {problem}"
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        response = JSONResponse({"error": {"code": "FORBIDDEN", "message": message}}, 403)
        await response(scope, receive, send)

    def _problem(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        server = scope.get("server")
        # An in-process test client names a host rather than an address; a Unix
        # socket has none. Only a real listening address is checked.
        if isinstance(server, (tuple, list)) and server and _address(str(server[0])):
            if not _is_loopback(str(server[0])):
                return "request arrived on a non-loopback address"
            host = urlsplit(f"//{headers.get('host', '')}").hostname or ""
            if not (_is_loopback(host) or host in self.hosts):
                return f"Host {host!r} is not this machine"
        origin = headers.get("origin")
        if origin is not None and not {"*", origin.rstrip("/")} & self.origins:
            hostname = urlsplit(origin).hostname or ""
            if not (_is_loopback(hostname) or hostname == "localhost"):
                return f"cross-origin request from {origin!r} (CORS_ORIGINS can allow it)"
        return None


# Every request names the same few addresses and hosts; parsing one costs ~10 µs.
@lru_cache(maxsize=256)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
