"""A WebSocket connection (or a subscription stream over HTTP) lives no longer than
the token it was opened with.

When the token expires the connection is closed (each protocol says how, in its
handler's `_close_expired`; app.graphql.streams.stream for HTTP), and the client
connects again with a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.graphql.context import Context

TOKEN_EXPIRED = "token has expired"


class TokenExpiry:
    """Closes the connection when its caller's token expires."""

    context: Context
    connection_acknowledged: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._expiry: asyncio.TimerHandle | None = None
        self._expiring: asyncio.Task[None] | None = None

    def _watch_expiry(self) -> None:
        """Called once `connection_init` has been answered."""
        caller = self.context.caller
        if self.connection_acknowledged and caller is not None and caller.expires is not None:
            delay = max(0.0, caller.expires - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiring = asyncio.ensure_future(self._close_expired())

    async def _close_expired(self) -> None:
        raise NotImplementedError

    def _stop_watching(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
