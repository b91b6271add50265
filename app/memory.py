"""Memory back once a wave of subscribers has gone: a full collection, then freed heap returned.

With `app.main.GC_THRESHOLDS` a full collection comes minutes apart under load, and
what ended connections and subscriptions leave in reference cycles (uvicorn's
WebSocket protocol objects, graphql-core's per-operation state: ~45 MiB per 1,000
subscribers, see `drills/soak.py`) waits that long to be freed, so each wave added to
the last. Once no subscription is left a full collection is cheap (no live
subscription to traverse): `IdleCollection` runs one then, and asks glibc to hand
the freed heap back to the system, which it otherwise keeps for the process.

Requests leave garbage in cycles too (a parsed document's tokens link to each other),
and its size follows the bytes received rather than the objects allocated that the
thresholds count: a 1 MB document left ~6 MiB of it after a few dozen objects, and
300 of them (no subscription ever ending) grew a process to 1.9 GiB.
`ReceivedBytesCollection` runs a full collection after every so many bytes received
in large messages (request bodies, WebSocket messages), so the garbage waiting stays
a few times that.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.graphql.caches import MAX_CACHED_CHARS

logger = logging.getLogger("app")

# Subscriptions that must have ended since the last collection for the next one: a
# lone client coming and going does not set off a full collection each time.
IDLE_COLLECT_AFTER = 100

# Received messages larger than this (bytes) count towards `ReceivedBytesCollection`:
# the documents `app.graphql.caches` does not keep.
LARGE_MESSAGE = MAX_CACHED_CHARS
# Seconds without a large message after which what the last ones left is collected.
QUIET_SECONDS = 2.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError):
        return None
    return trim


def _full_collection(trim: Callable[[int], int] | None) -> tuple[int, float]:
    """A full collection, then the freed heap handed back: (objects freed, ms taken)."""
    started = time.perf_counter()
    found = gc.collect()
    if trim is not None:
        trim(0)
    return found, (time.perf_counter() - started) * 1000


class IdleCollection:
    """Told that no subscription (`JobEvents`) or no WebSocket connection (`WebSocketLimit`)
    is left, and how many ended since: past IDLE_COLLECT_AFTER, a full collection."""

    def __init__(self, after: int = IDLE_COLLECT_AFTER) -> None:
        self.after = after
        self.ended = 0
        self._trim = _malloc_trim()

    def __call__(self, ended: int) -> None:
        self.ended += ended
        if self.ended < self.after:
            return
        found, ms = _full_collection(self._trim)
        logger.info(
            "no subscription or connection left (%d ended): %d unreachable objects freed in %.0f ms",
            self.ended,
            found,
            ms,
        )
        self.ended = 0


class ReceivedBytesCollection:
    """ASGI middleware: a full collection (and the freed heap returned) after every
    `every` bytes received in large request bodies, query strings and WebSocket
    messages (over `LARGE_MESSAGE` bytes each).

    Small messages are not counted: the objects they make are what the thresholds
    count, and their documents are cached (app/graphql/caches.py). So this API's
    ordinary traffic never sets off a full collection, which live subscriptions pay
    for (app/main.py `GC_THRESHOLDS`); large documents, which it is for, do.
    """

    def __init__(self, app: ASGIApp, every: int) -> None:
        self.app = app
        self.every = every
        self.received = 0
        self._trim = _malloc_trim()
        # Once large messages stop coming, what the last of them left (less than
        # `every`) is collected too, QUIET_SECONDS later.
        self._quiet: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._count(len(scope.get("query_string", b"")))

        async def counted() -> Message:
            message = await receive()
            self._count(_size(message))
            return message

        await self.app(scope, counted, send)

    def _count(self, size: int) -> None:
        if size <= LARGE_MESSAGE:
            return
        self.received += size
        if self._quiet is not None:
            self._quiet.cancel()
        self._quiet = asyncio.get_running_loop().call_later(QUIET_SECONDS, self._collect)
        if self.received >= self.every:
            self._collect()

    def _collect(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None
        if not self.received:
            return
        found, ms = _full_collection(self._trim)
        logger.debug(
            "%d bytes received: %d unreachable objects freed in %.1f ms",
            self.received,
            found,
            ms,
        )
        self.received = 0


def _size(message: Message) -> int:
    body = message.get("body") or message.get("bytes") or message.get("text") or b""
    return len(body)
