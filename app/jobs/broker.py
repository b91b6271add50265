"""The broadcast broker connection, kept alive: it reconnects by itself after an outage.

broadcaster's backends (memory://, redis:// and postgres:// LISTEN/NOTIFY) neither
notice a lost connection nor reconnect: a restarted Redis leaves every subscriber
waiting forever. `Broker` holds one backend at a time. It hands each message to
`on_message`, checks every HEALTH_INTERVAL seconds that a message makes the round
trip, and on any failure (the listener's connection closed, a publish or a round
trip failed) throws the backend away and opens a new one, retrying with backoff
until the broker is back. Then it calls `on_reconnect(since)`: messages published
while it was away are lost (pub/sub keeps nothing), so the caller catches up on
what changed since the last moment the broker was known to deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._backends.redis import RedisBackend
from redis import asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app import metrics
from app.errors import Unavailable
from app.logs import Throttle
from app.outages import reason

logger = logging.getLogger("app.events")

# One channel for all job changes; a PostgreSQL LISTEN name, so an identifier.
CHANNEL = "jobs_gateway_events"
# Seconds to wait for the broker when connecting, or for a ping's round trip.
BROKER_TIMEOUT = 5.0
# Seconds a publish may take before the broker counts as lost (a request waits on it).
PUBLISH_TIMEOUT = 2.0
# Seconds between round-trip checks, and how long one may take.
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 3.0
# Seconds between reconnection attempts: doubling from the first to the last.
RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 2.0
# Seconds between two log lines while the broker stays unreachable.
LOG_EVERY = 10.0

_PING_PREFIX = '{"ping":'


class BroadcastUnavailable(RuntimeError):
    """The broker cannot be reached (or does not deliver); the message says which."""


OnLost = Callable[[str], None]


class _RedisBackend(RedisBackend):
    """broadcaster 0.3.1's Redis backend, with two fixes.

    Its listener was woken before redis-py recorded the subscription, then found no
    channel, stopped listening and waited for a wake-up that never came: here it is
    woken once the subscription is recorded. And redis-py retried a lost connection
    silently, resubscribing after a gap whose messages were gone without anyone
    knowing: here nothing is retried, a lost connection is reported (`on_lost`) and
    the `Broker` reconnects and catches up.
    """

    def __init__(self, url: str, on_lost: OnLost) -> None:
        # Not super().__init__: the client it builds would be replaced unused.
        self._conn = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
        self._pubsub = self._conn.pubsub()
        self._ready = asyncio.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._listener: asyncio.Task[None] | None = None
        self._on_lost = on_lost

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()

    async def _pubsub_listener(self) -> None:
        try:
            await super()._pubsub_listener()
        except Exception as exc:
            self._on_lost(f"the subscription connection failed: {reason(exc)}")


class _PostgresBackend(PostgresBackend):
    """LISTEN/NOTIFY on one asyncpg connection; its closing is reported (`on_lost`)."""

    def __init__(self, url: str, on_lost: OnLost) -> None:
        super().__init__(url)
        self._on_lost = on_lost
        # The one connection runs one statement at a time.
        self._publishing = asyncio.Lock()

    async def connect(self) -> None:
        await super().connect()
        self._conn.add_termination_listener(self._terminated)

    def _terminated(self, connection: object) -> None:
        self._on_lost("the LISTEN connection closed")

    async def disconnect(self) -> None:
        self._conn.remove_termination_listener(self._terminated)
        await super().disconnect()

    async def publish(self, channel: str, message: str) -> None:
        async with self._publishing:
            await super().publish(channel, message)


def _backend(url: str, on_lost: OnLost) -> BroadcastBackend:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        return _RedisBackend(url, on_lost)
    if scheme in ("postgres", "postgresql"):
        return _PostgresBackend(url, on_lost)
    if scheme == "memory":
        return MemoryBackend(url)
    raise ValueError(f"unsupported BROADCAST_URL scheme {scheme!r}")


class Broker:
    """One live connection to the broker at a time; see the module's docstring."""

    def __init__(
        self,
        url: str,
        on_message: Callable[[str], None],
        on_reconnect: Callable[[datetime], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._backend: BroadcastBackend | None = None
        self._listener: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._pings: dict[str, asyncio.Future[None]] = {}
        # Set when something shows the connection is gone; the supervisor acts on it.
        self._trouble = asyncio.Event()
        self._trouble_reason = ""
        self._up = False
        # Why the broker is down, and the last moment it was known to deliver.
        self.problem: str | None = None
        self.down_since: datetime | None = None
        self._last_ok = datetime.now(UTC)
        # A catch-up that has yet to succeed: everything changed since this moment.
        self._catch_up_since: datetime | None = None
        # Why the last catch-up failed, while it has yet to succeed (/readyz says so).
        self.catch_up_problem: str | None = None
        self.reconnects = 0
        self._still_down = Throttle(LOG_EVERY)

    @property
    def up(self) -> bool:
        """Whether the connection delivers (as far as is known); the `broker_up` gauge."""
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        metrics.BROKER_UP.set(1 if value else 0)

    @property
    def is_memory(self) -> bool:
        return urlsplit(self.url).scheme == "memory"

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect; returns once a message makes the round trip, else BroadcastUnavailable."""
        await self._open()
        if not self.is_memory:  # an in-process queue never goes away
            self._supervisor = asyncio.create_task(self._supervise(), name="broker-health")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(BaseException):
                await self._supervisor
            self._supervisor = None
        await self._close()
        self.up = False

    async def _open(self) -> None:
        self._trouble.clear()
        backend = _backend(self.url, self._lost)
        try:
            async with asyncio.timeout(BROKER_TIMEOUT):
                await backend.connect()
                await backend.subscribe(CHANNEL)
        except Exception as exc:
            await self._dispose(backend)
            raise BroadcastUnavailable(f"cannot reach the broadcast broker: {reason(exc)}") from exc
        except BaseException:  # cancelled (the process stops): leave nothing open
            await self._dispose(backend)
            raise
        self._backend = backend
        self._listener = asyncio.create_task(self._listen(backend), name="broker-listener")
        try:
            await self._round_trip(BROKER_TIMEOUT)
        except BroadcastUnavailable:
            await self._close()
            raise
        self.up = True
        self.problem = None
        self.down_since = None
        self._last_ok = datetime.now(UTC)

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
            self._listener = None
        if self._backend is not None:
            backend, self._backend = self._backend, None
            await self._dispose(backend)

    @staticmethod
    async def _dispose(backend: BroadcastBackend) -> None:
        # A dead connection may fail to close, or hang closing: neither matters any more.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(BROKER_TIMEOUT):
                await backend.disconnect()
        listener = getattr(backend, "_listener", None)  # the Redis backend's reader task
        if isinstance(listener, asyncio.Task):
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener

    # -- staying connected ---------------------------------------------------------

    def _lost(self, reason: str) -> None:
        if not self._trouble.is_set():
            self._trouble_reason = reason
            self._trouble.set()

    async def _supervise(self) -> None:
        while True:
            try:
                await self._check()
            except Exception:
                # A bug here must not end the supervision: the next round tries again.
                logger.exception("supervising the broadcast broker failed")
                await asyncio.sleep(HEALTH_INTERVAL)

    async def _check(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEALTH_INTERVAL):
                await self._trouble.wait()
        if not self._trouble.is_set():
            try:
                await self._round_trip(HEALTH_TIMEOUT)
            except BroadcastUnavailable as exc:
                self._lost(str(exc))
            else:
                self._last_ok = datetime.now(UTC)
        if self._trouble.is_set():
            await self._reconnect(self._trouble_reason)
        if self._catch_up_since is not None and self.up:
            await self._catch_up()

    async def _reconnect(self, why: str) -> None:
        self.up = False
        self.problem = why
        self.down_since = down_since = self._last_ok
        started = time.monotonic()
        logger.warning("broadcast broker lost (%s); reconnecting", why)
        await self._close()
        delay = RECONNECT_FIRST_DELAY
        while True:
            try:
                await self._open()
                break
            except BroadcastUnavailable as exc:
                self.problem = str(exc)
                self._log_still_down()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
        self.reconnects += 1
        metrics.BROKER_RECONNECTS.inc()
        logger.warning(
            "broadcast broker back after %.1fs; catching subscribers up", time.monotonic() - started
        )
        # An earlier catch-up that has not succeeded yet reaches further back.
        self._catch_up_since = self._catch_up_since or down_since
        await self._catch_up()

    async def _catch_up(self) -> None:
        since = self._catch_up_since
        if since is None or self._on_reconnect is None:
            self._catch_up_since = None
            return
        try:
            await self._on_reconnect(since)
        except (BroadcastUnavailable, Unavailable) as exc:
            # Tried again on the next round (the broker went again, or the database is down).
            logger.warning("catching up after the broker outage failed, retrying: %s", exc)
            self._catch_up_failed(since, str(exc))
        except Exception as exc:
            logger.exception("catching up after the broker outage failed; retrying")
            self._catch_up_failed(since, reason(exc))
        else:
            self._catch_up_since = None
            self.catch_up_problem = None

    def _catch_up_failed(self, since: datetime, why: str) -> None:
        self.catch_up_problem = (
            f"subscribers are not caught up on changes since {since:%H:%M:%S} UTC "
            f"(the broker was unreachable); retrying each second: {why}"
        )

    def _log_still_down(self) -> None:
        if self._still_down.ready():
            logger.warning("broadcast broker still unreachable: %s", self.problem)

    # -- messages --------------------------------------------------------------

    async def publish(self, message: str) -> None:
        """Send one message; BroadcastUnavailable (at once while it is down) if it cannot."""
        backend = self._backend
        if not self.up or backend is None:
            raise BroadcastUnavailable(self.describe_down())
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await backend.publish(CHANNEL, message)
        except Exception as exc:
            self._lost(f"a publish failed: {reason(exc)}")
            raise BroadcastUnavailable(
                f"the broadcast broker failed a publish: {reason(exc)}"
            ) from exc

    async def ping(self, within: float = BROKER_TIMEOUT) -> None:
        """Check that a message makes the round trip; BroadcastUnavailable says why not."""
        if not self.up:
            raise BroadcastUnavailable(self.describe_down())
        await self._round_trip(within)

    def describe_down(self) -> str:
        since = self.down_since.strftime("%H:%M:%S UTC") if self.down_since else "start"
        return f"the broadcast broker is unreachable (since {since}): {self.problem}; reconnecting"

    async def _round_trip(self, within: float) -> None:
        backend = self._backend
        if backend is None:
            raise BroadcastUnavailable(self.describe_down())
        token = uuid.uuid4().hex
        arrived = asyncio.get_running_loop().create_future()
        self._pings[token] = arrived
        try:
            async with asyncio.timeout(within):
                await backend.publish(CHANNEL, json.dumps({"ping": token}))
                await arrived
        except Exception as exc:
            why = f"no answer within {within:g}s" if isinstance(exc, TimeoutError) else reason(exc)
            raise BroadcastUnavailable(f"the broadcast broker does not deliver: {why}") from exc
        finally:
            self._pings.pop(token, None)

    async def _listen(self, backend: BroadcastBackend) -> None:
        try:
            while True:
                event = await backend.next_published()
                message = event.message
                if message.startswith(_PING_PREFIX):
                    self._pong(message)
                else:
                    self._on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(f"the listener failed: {reason(exc)}")

    def _pong(self, message: str) -> None:
        try:
            token = json.loads(message)["ping"]
        except (ValueError, KeyError, TypeError):
            return
        arrived = self._pings.get(token)
        if arrived is not None and not arrived.done():
            arrived.set_result(None)
