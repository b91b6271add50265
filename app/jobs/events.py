"""Job changes as events: published after each committed change, heard by every process.

`JobEvents.publish` sends a changed job through `broadcaster` (memory://, redis://
or postgres:// LISTEN/NOTIFY). Each process holds ONE broker subscription; its
listener hands every event to the local subscribers' `Mailbox`es without ever
waiting on one of them, so a slow or vanished client holds up nobody. A mailbox
is bounded: when its client falls behind, it keeps each job's latest state only.

Subscriptions are opened through `app.jobs.service.Jobs`, which scopes them to
the caller's tenant; every event carries its job's tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import weakref
from collections import OrderedDict, deque
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from broadcaster import Broadcast
from broadcaster._backends.redis import RedisBackend

from app.errors import SubscriptionInterrupted
from app.jobs.model import Job, JobFilter, JobStatus

logger = logging.getLogger("app.events")

# One channel for all job changes; a PostgreSQL LISTEN name, so an identifier.
CHANNEL = "jobs_gateway_events"
# States a subscriber may have pending before its mailbox keeps only each job's latest.
MAILBOX_LIMIT = 64
# Jobs whose last dispatched state the listener remembers, to drop late duplicates.
RECENT_JOBS = 10_000
# Seconds to wait for the broker: a publish, or a ping's round trip.
BROKER_TIMEOUT = 5.0
# Seconds open subscriptions get to end when the process stops.
CLOSE_TIMEOUT = 5.0


class BroadcastUnavailable(RuntimeError):
    """The broker cannot be reached (or does not deliver); the message says which."""


def order_key(job: Job) -> tuple[datetime, bool, bool, int]:
    """Where a state stands in its job's history.

    The state rules only ever move each part forward (updated_at never goes back,
    a job ends once and is deleted once, progress never goes down), so a later
    state never has a smaller key, and two states with equal keys look the same.
    """
    return (job.updated_at, job.deleted_at is not None, job.status.is_terminal, job.progress)


def concerns(job_filter: JobFilter, job: Job) -> bool:
    """Whether a `jobUpdates` subscriber with this filter hears of this change.

    A job is sent when it matches after the change; a deletion also goes to those it
    matched before, so lists can drop it (deleting changes nothing else).
    """
    if job_filter.matches(job):
        return True
    return job.deleted_at is not None and job_filter.matches(replace(job, deleted_at=None))


# A job at its largest (100 inputs, a 200-character tenant) encodes to about 4.6 KB,
# under PostgreSQL's 8,000-byte NOTIFY limit. Carrying the whole job spares every
# process a database read per event.
def encode(job: Job) -> str:
    return json.dumps(
        {
            "id": str(job.id),
            "tenant": job.tenant,
            "status": int(job.status),
            "progress": job.progress,
            "profile": str(job.profile),
            "video": str(job.video),
            "inputs": [str(value) for value in job.inputs],
            "created_at": job.created_at.isoformat(),
            "updated_at": job.updated_at.isoformat(),
            "deleted_at": job.deleted_at.isoformat() if job.deleted_at else None,
            "seq": job.seq,
        },
        separators=(",", ":"),
    )


def decode(fields: dict[str, Any]) -> Job:
    deleted_at = fields["deleted_at"]
    return Job(
        id=uuid.UUID(fields["id"]),
        tenant=fields["tenant"],
        status=JobStatus(fields["status"]),
        progress=int(fields["progress"]),
        profile=uuid.UUID(fields["profile"]),
        video=uuid.UUID(fields["video"]),
        inputs=tuple(uuid.UUID(value) for value in fields["inputs"]),
        created_at=datetime.fromisoformat(fields["created_at"]),
        updated_at=datetime.fromisoformat(fields["updated_at"]),
        deleted_at=datetime.fromisoformat(deleted_at) if deleted_at else None,
        seq=int(fields["seq"]),
    )


class _RedisBackend(RedisBackend):
    """broadcaster 0.3.1's Redis backend, minus a race that loses every event.

    It wakes its listener before redis-py records the subscription; the listener
    then finds no channel, stops listening and waits for a wake-up that never
    comes. Here the listener is woken once the subscription is recorded.
    """

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()


def _broadcast(url: str) -> Broadcast:
    if urlsplit(url).scheme in ("redis", "rediss"):
        return Broadcast(backend=_RedisBackend(url))
    return Broadcast(url)


class Mailbox:
    """One subscriber's pending job states. The listener puts, never waits."""

    __slots__ = ("_pending", "_waiter", "closed", "job_filter", "job_id", "overflowed", "tenant")

    def __init__(
        self, tenant: str, job_id: uuid.UUID | None = None, job_filter: JobFilter | None = None
    ) -> None:
        self.tenant = tenant
        self.job_id = job_id
        self.job_filter = job_filter
        self._pending: deque[Job] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.overflowed = False

    def put(self, job: Job) -> None:
        self._pending.append(job)
        if len(self._pending) > MAILBOX_LIMIT:
            self._compact()
        self._wake()

    def _compact(self) -> None:
        # A client this far behind wants where things are now, not the way there.
        latest: dict[uuid.UUID, Job] = {}
        for job in self._pending:
            latest.pop(job.id, None)
            latest[job.id] = job
        self._pending = deque(latest.values())
        if len(self._pending) > MAILBOX_LIMIT:
            # Too many different jobs to keep: better a clear error than a wrong list.
            self._pending.clear()
            self.overflowed = True

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Job | None:
        """The next pending state; None once closed or overflowed and drained."""
        while not self._pending:
            if self.closed or self.overflowed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pending.popleft()


class JobStream:
    """The states one subscription sends, in order; strawberry iterates it.

    Following one job (`jobProgress`), it starts with the snapshot, skips states
    the snapshot already shows, and ends after the job has finished. A stream that
    is dropped without being closed still gives its mailbox back (a finalizer).
    """

    def __init__(self, events: JobEvents, mailbox: Mailbox, snapshot: Job | None = None) -> None:
        self._mailbox = mailbox
        self._first = snapshot
        self._last = order_key(snapshot) if snapshot is not None else None
        self._following = snapshot is not None
        self._done = False
        self._release = weakref.finalize(self, events._unwatch, mailbox)

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> Job:
        if self._done:
            raise StopAsyncIteration
        job = self._first
        self._first = None
        while job is None:
            job = await self._mailbox.get()
            if job is None:
                await self.aclose()
                if self._mailbox.overflowed:
                    raise SubscriptionInterrupted(
                        f"this subscription fell more than {MAILBOX_LIMIT} jobs behind; "
                        "subscribe again (and reload what it showed)"
                    )
                raise StopAsyncIteration
            if self._last is not None:
                key = order_key(job)
                if key <= self._last:
                    job = None  # the snapshot (or an earlier event) already showed it
                else:
                    self._last = key
        if self._following and job.is_finished:
            await self.aclose()
        return job

    async def aclose(self) -> None:
        self._done = True
        self._release()


class JobEvents:
    """Publishes job changes and fans the broker's events out to local subscribers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._broadcast = _broadcast(url)
        self._connected = False
        # broadcaster's PostgreSQL backend publishes on its one LISTEN connection,
        # which runs one statement at a time.
        self._publishing: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock()
            if urlsplit(url).scheme in ("postgres", "postgresql")
            else contextlib.nullcontext()
        )
        self._listener: asyncio.Task[None] | None = None
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._by_job: dict[uuid.UUID, set[Mailbox]] = {}
        self._by_tenant: dict[str, set[Mailbox]] = {}
        self._recent: OrderedDict[uuid.UUID, tuple[datetime, bool, bool, int]] = OrderedDict()
        self._closing = False
        # Set once closing and the last subscription has given its mailbox back.
        self._all_released = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and subscribe; returns once an event makes the round trip."""
        try:
            await asyncio.wait_for(self._broadcast.connect(), BROKER_TIMEOUT)
        except Exception as exc:
            raise BroadcastUnavailable(f"cannot reach the broadcast broker: {exc!r}") from exc
        self._connected = True
        subscribed = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(subscribed), name="job-events")
        await subscribed.wait()
        try:
            await self.ping()
        except BroadcastUnavailable:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.close_subscriptions()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
            self._listener = None
        if self._connected:
            self._connected = False
            with contextlib.suppress(Exception):
                await self._broadcast.disconnect()

    async def close_subscriptions(self) -> None:
        """End every open subscription (clients get `complete`); refuse new ones."""
        self._closing = True
        mailboxes = self._mailboxes()
        if not mailboxes:
            return
        for mailbox in mailboxes:
            mailbox.close()
        await self._all_released.wait()
        # Each stream has ended; its `complete` message goes out a few loop turns later.
        await asyncio.sleep(0.05)

    async def ping(self, within: float = BROKER_TIMEOUT) -> None:
        """Send an event to ourselves through the broker and wait for it to come back."""
        token = uuid.uuid4().hex
        arrived = asyncio.get_running_loop().create_future()
        self._pings[token] = arrived
        try:
            async with asyncio.timeout(within):
                await self._send(json.dumps({"ping": token}))
                await arrived
        except Exception as exc:
            reason = f"no answer within {within:g}s" if isinstance(exc, TimeoutError) else repr(exc)
            raise BroadcastUnavailable(f"the broadcast broker does not deliver: {reason}") from exc
        finally:
            self._pings.pop(token, None)

    @property
    def subscriber_count(self) -> int:
        registries = (self._by_job, self._by_tenant)
        return sum(len(boxes) for registry in registries for boxes in registry.values())

    def _mailboxes(self) -> list[Mailbox]:
        found = [box for boxes in self._by_job.values() for box in boxes]
        found.extend(box for boxes in self._by_tenant.values() for box in boxes)
        return found

    # -- publishing ------------------------------------------------------------

    async def publish(self, job: Job) -> None:
        """Announce a committed change. Never fails the change: a broker problem is logged."""
        try:
            await asyncio.wait_for(self._send(encode(job)), BROKER_TIMEOUT)
        except Exception as exc:
            logger.warning("could not publish the change of job %s: %r", job.id, exc)

    async def _send(self, message: str) -> None:
        async with self._publishing:
            await self._broadcast.publish(CHANNEL, message)

    # -- subscribing -----------------------------------------------------------

    def follow(self, tenant: str, job_id: uuid.UUID) -> Mailbox:
        """Start collecting one job's changes (before its snapshot is read)."""
        mailbox = Mailbox(tenant, job_id=job_id)
        self._watch(self._by_job.setdefault(job_id, set()), mailbox)
        return mailbox

    def watch(self, tenant: str, job_filter: JobFilter) -> Mailbox:
        """Start collecting the changes `jobUpdates` with this filter hears of."""
        mailbox = Mailbox(tenant, job_filter=job_filter)
        self._watch(self._by_tenant.setdefault(tenant, set()), mailbox)
        return mailbox

    def stream(self, mailbox: Mailbox, snapshot: Job | None = None) -> JobStream:
        return JobStream(self, mailbox, snapshot)

    def release(self, mailbox: Mailbox) -> None:
        self._unwatch(mailbox)

    def _watch(self, boxes: set[Mailbox], mailbox: Mailbox) -> None:
        boxes.add(mailbox)
        if self._closing:
            mailbox.close()

    def _unwatch(self, mailbox: Mailbox) -> None:
        registry: dict[Any, set[Mailbox]]
        key: Any
        if mailbox.job_id is not None:
            registry, key = self._by_job, mailbox.job_id
        else:
            registry, key = self._by_tenant, mailbox.tenant
        boxes = registry.get(key)
        if boxes is not None:
            boxes.discard(mailbox)
            if not boxes:
                del registry[key]
        if self._closing and not self._by_job and not self._by_tenant:
            self._all_released.set()

    # -- the listener ----------------------------------------------------------

    async def _listen(self, subscribed: asyncio.Event) -> None:
        async with self._broadcast.subscribe(CHANNEL) as subscriber:
            subscribed.set()
            while True:
                event = await subscriber.get()
                try:
                    fields = json.loads(event.message)
                    if "ping" in fields:
                        self._pong(fields["ping"])
                    else:
                        self._dispatch(decode(fields))
                except (ValueError, KeyError, TypeError) as exc:
                    logger.warning("ignored a malformed job event: %r", exc)

    def _pong(self, token: str) -> None:
        arrived = self._pings.get(token)
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    def _dispatch(self, job: Job) -> None:
        # Events of one job may arrive out of order (several publishers): drop any
        # state this process has already passed on, so no client sees one go back.
        key = order_key(job)
        last = self._recent.get(job.id)
        if last is not None and key <= last:
            return
        self._recent[job.id] = key
        self._recent.move_to_end(job.id)
        if len(self._recent) > RECENT_JOBS:
            self._recent.popitem(last=False)

        for mailbox in self._by_job.get(job.id, ()):
            if mailbox.tenant == job.tenant:
                mailbox.put(job)
        for mailbox in self._by_tenant.get(job.tenant, ()):
            assert mailbox.job_filter is not None
            if concerns(mailbox.job_filter, job):
                mailbox.put(job)
