"""At most MAX_WEBSOCKET_CONNECTIONS WebSocket connections open at once, per process.

uvicorn's `--limit-concurrency` does not apply to WebSocket upgrades (it answers 503
to HTTP requests only), yet counts open WebSockets against HTTP: many WebSockets
would have it refuse every HTTP request, `/healthz` included. Here WebSockets are
counted alone; one past the limit is accepted and closed at once with 1013 "Try
Again Later", which clients (graphql-ws among them) retry after a back-off. Browsers
cannot read an HTTP status refusing a handshake; they can read a close code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.logs import Throttle

logger = logging.getLogger("app")

TRY_AGAIN_LATER = 1013
# At most one warning this often while connections are being refused.
WARN_EVERY_SECONDS = 60.0


class WebSocketLimit:
    def __init__(
        self, app: ASGIApp, limit: int, on_idle: Callable[[int], None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.open = 0
        # Told, with how many closed since, each time the last connection has closed:
        # a wave of connections leaves its memory to a collection (app/memory.py).
        self._on_idle = on_idle
        self._closed = 0
        self._refused = 0
        self._warnings = Throttle(WARN_EVERY_SECONDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        if self.open >= self.limit:
            await self._refuse(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            self._closed += 1
            if self.open == 0 and self._on_idle is not None:
                closed, self._closed = self._closed, 0
                self._on_idle(closed)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._warn()
        if (await receive())["type"] != "websocket.connect":
            return
        # The client's own subprotocol: a browser fails a handshake that names none,
        # and then sees 1006 rather than our code.
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        reason = f"Try Again Later: this server holds {self.limit} WebSocket connections"
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": reason})

    def _warn(self) -> None:
        self._refused += 1
        if self._warnings.ready():
            logger.warning(
                "refused %d WebSocket connection(s): %d open, the most this process holds "
                "(MAX_WEBSOCKET_CONNECTIONS)",
                self._refused,
                self.open,
            )
            self._refused = 0
