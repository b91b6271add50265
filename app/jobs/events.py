"""Job changes as events: published after each committed change, heard by every process.

`JobEvents.publish` sends a changed job through the broker (`app.jobs.broker`:
memory://, redis:// or postgres:// LISTEN/NOTIFY). Each process holds ONE broker
subscription; its listener hands every event to the local subscribers' `Mailbox`es
(or other `Listener`s, such as app.graphql.ws's groups of `jobProgress` and
`jobUpdates` subscribers) without ever waiting on one of them, so a slow or vanished
client holds up nobody. A mailbox is bounded: when its client falls behind, it keeps
each job's latest state only.

When the broker goes away, changes are still committed and heard by this process's
own subscribers; once it is back, every change it could not carry is published
again, and this process's subscribers are sent the current state of each job that
changed in the gap (read from the database), so no one is left showing a stale state.
A change whose publisher died between its commit and its publish is read from the
database by every other process's change feed (`app.jobs.changes`) and dispatched
here like a broker event.

Subscriptions are opened through `app.jobs.service.Jobs`, which scopes them to
the caller's tenant; every event carries its job's tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app import metrics
from app.jobs.broker import BROKER_TIMEOUT, BroadcastUnavailable, Broker
from app.jobs.catchup import CurrentStates, catch_up_subscribers
from app.jobs.changes import ChangeFeed
from app.jobs.mailbox import JobStream, Listener, Mailbox
from app.jobs.model import Job, JobChange, JobFilter
from app.jobs.wire import decode, encode
from app.logs import Throttle
from app.lru import LRU

if TYPE_CHECKING:
    from app.tracing.events import EventSpans

# Mailbox, JobStream and Listener live in app.jobs.mailbox; named here too, where
# subscriptions are opened.
__all__ = ["BroadcastUnavailable", "JobEvents", "JobStream", "Listener", "Mailbox"]

logger = logging.getLogger("app.events")

# Jobs whose last dispatched state the listener remembers, to drop late duplicates.
RECENT_JOBS = 10_000
# Seconds open subscriptions get to end when the process stops.
CLOSE_TIMEOUT = 5.0
# Changed jobs whose publishing waits for the broker to come back; beyond this the
# oldest are dropped (their subscribers elsewhere still catch up from the database).
UNPUBLISHED_LIMIT = 100_000
# How a process told to exit before publishing (a test hook) exits.
EXIT_BEFORE_PUBLISH = 70
# Seconds between two log lines about changes left unpublished.
LOG_EVERY = 10.0
# Seconds after the last subscription ends before `on_idle` is told (if none has begun
# since): the last clients' connections finish closing meanwhile.
IDLE_DELAY = 1.0


class JobEvents:
    """Publishes job changes and fans the broker's events out to local subscribers."""

    def __init__(
        self,
        url: str,
        states: CurrentStates | None = None,
        on_idle: Callable[[int], None] | None = None,
        change_poll_interval: float | None = None,
        exit_before_publishing_finish: bool = False,
        spans: EventSpans | None = None,
    ) -> None:
        self.url = url
        # Tracing on: publish and delivery spans, the trace context carried in the event
        # (app.tracing.events). Off, neither hook is installed.
        self._spans = spans
        # A test hook (TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH), never set in production.
        self._exit_before_publishing_finish = exit_before_publishing_finish
        # Told once no subscription is left, with how many have ended since it last was.
        self._on_idle = on_idle
        self._ended = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        # Without `states` (tests of the fan-out alone) there is no catching up.
        self._states = states
        self._broker = Broker(
            url,
            self._receive if spans is None else self._receive_traced,
            self._catch_up if states is not None else None,
        )
        # Changes whose event never came (its publisher died after the commit) are read
        # from the database (app.jobs.changes). In one process (memory://) none is lost.
        self._feed: ChangeFeed | None = None
        if states is not None and change_poll_interval and not self._broker.is_memory:
            self._feed = ChangeFeed(
                states, self, change_poll_interval, reread=states.commits_out_of_order
            )
        self._by_job: dict[uuid.UUID, set[Listener]] = {}
        self._by_tenant: dict[str, set[Listener]] = {}
        self._recent: LRU[uuid.UUID, tuple[datetime, bool, bool, int]] = LRU(RECENT_JOBS)
        # Jobs changed while the broker was away, to publish once it is back.
        self._unpublished: LRU[uuid.UUID, None] = LRU(UNPUBLISHED_LIMIT)
        self._waiting = Throttle(LOG_EVERY)
        self._closing = False
        # Set once closing and the last subscription has given its mailbox back.
        self._all_released = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and subscribe; returns once an event makes the round trip."""
        await self._broker.start()
        if self._feed is not None:
            await self._feed.start()

    async def disconnect(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.close_subscriptions()
        if self._feed is not None:
            await self._feed.stop()
        await self._broker.stop()
        if self._idle_timer is not None:
            self._idle_timer.cancel()

    async def close_subscriptions(self) -> None:
        """End every open subscription (clients get `complete`); refuse new ones."""
        self._closing = True
        listeners = self._listeners()
        if not listeners:
            return
        for listener in listeners:
            listener.close()
        await self._all_released.wait()
        # Each stream has ended; its `complete` message goes out a few loop turns later.
        await asyncio.sleep(0.05)

    async def ping(self, within: float = BROKER_TIMEOUT) -> None:
        """Send an event to ourselves through the broker and wait for it to come back."""
        await self._broker.ping(within)

    @property
    def catch_up_problem(self) -> str | None:
        """Why subscribers here may be showing stale states, while they may (/readyz)."""
        if self._broker.catch_up_problem:
            return self._broker.catch_up_problem
        return self._feed.problem if self._feed is not None else None

    @property
    def subscriber_count(self) -> int:
        return sum(listener.size for listener in self._listeners())

    @property
    def closing(self) -> bool:
        return self._closing

    def status(self) -> dict[str, object]:
        """The broker connection as an operator wants to see it (/readyz detail)."""
        found: dict[str, object] = {
            "connected": self._broker.up,
            "reconnects": self._broker.reconnects,
            "unpublished": len(self._unpublished),
        }
        if self._feed is not None:
            # Changes whose event never came, passed on from the database instead.
            found["recovered"] = self._feed.recovered
        return found

    def _listeners(self) -> list[Listener]:
        found = [box for boxes in self._by_job.values() for box in boxes]
        found.extend(box for boxes in self._by_tenant.values() for box in boxes)
        return found

    # -- publishing ------------------------------------------------------------

    async def publish(self, job: Job) -> None:
        """Announce a committed change. Never fails the change: see the module's docstring."""
        if self._exit_before_publishing_finish and job.is_finished:
            # Dies as a killed process would between its commit and its publish.
            logger.warning("TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH: exiting before publishing")
            os._exit(EXIT_BEFORE_PUBLISH)
        if self._spans is not None:
            with self._spans.publishing(job) as trace:
                await self._publish(job, encode(job, trace))
            return
        await self._publish(job, encode(job))

    async def _publish(self, job: Job, message: str) -> None:
        try:
            await self._broker.publish(message)
        except BroadcastUnavailable as exc:
            metrics.EVENTS_PUBLISHED.labels("deferred").inc()
            self._unpublished.put(job.id, None)
            self._log_unpublished(exc)
            # Subscribers here need not wait for the broker.
            self._dispatch(job)
        else:
            metrics.EVENTS_PUBLISHED.labels("sent").inc()

    def _log_unpublished(self, exc: BroadcastUnavailable) -> None:
        if self._waiting.ready():
            logger.warning(
                "%d changed job(s) wait for the broker to be published: %s",
                len(self._unpublished),
                exc,
            )

    async def _catch_up(self, since: datetime) -> None:
        """After a broker outage: publish what could not be, and catch subscribers up."""
        assert self._states is not None
        if self._unpublished:
            pending = list(self._unpublished)
            for job in await self._states.by_id(pending):
                await self._broker.publish(encode(job))
            for job_id in pending:
                self._unpublished.pop(job_id, None)
        await catch_up_subscribers(
            self._states, since, self._by_job, self._by_tenant, self._dispatch
        )

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

    def join(self, listener: Listener) -> None:
        """Hand `listener` its job's changes from now on (before its snapshot is read), or
        without a job, the changes of its tenant's jobs its filter is concerned with."""
        if listener.job_id is not None:
            self._watch(self._by_job.setdefault(listener.job_id, set()), listener)
        else:
            assert listener.job_filter is not None
            self._watch(self._by_tenant.setdefault(listener.tenant, set()), listener)

    def stream(self, mailbox: Mailbox, snapshot: Job | None = None) -> JobStream:
        return JobStream(self._unwatch, mailbox, snapshot)

    def release(self, mailbox: Listener) -> None:
        self._unwatch(mailbox)

    def _watch(self, boxes: set[Any], mailbox: Listener) -> None:
        boxes.add(mailbox)
        if self._closing:
            mailbox.close()

    def _unwatch(self, mailbox: Listener) -> None:
        registry: dict[Any, set[Any]]
        key: Any
        if mailbox.job_id is not None:
            registry, key = self._by_job, mailbox.job_id
        else:
            registry, key = self._by_tenant, mailbox.tenant
        boxes = registry.get(key)
        if boxes is not None and mailbox in boxes:
            boxes.discard(mailbox)
            self._ended += mailbox.served
            if not boxes:
                del registry[key]
        if self._by_job or self._by_tenant:
            return
        if self._closing:
            self._all_released.set()
        elif self._on_idle is not None and self._idle_timer is None:
            self._idle_timer = asyncio.get_running_loop().call_later(IDLE_DELAY, self._idle)

    def _idle(self) -> None:
        self._idle_timer = None
        if self._on_idle is not None and not self._closing and self.subscriber_count == 0:
            ended, self._ended = self._ended, 0
            self._on_idle(ended)

    # -- the change feed's questions (app.jobs.changes.Subscribers) ---------------

    @property
    def listening(self) -> bool:
        return bool(self._by_job or self._by_tenant)

    def missed(self, change: JobChange) -> bool:
        if change.id not in self._by_job and change.tenant not in self._by_tenant:
            return False
        last = self._recent.get(change.id)
        return last is None or change.key > last

    def deliver(self, job: Job) -> None:
        self._dispatch(job)

    # -- the listener ----------------------------------------------------------

    def _receive(self, message: str) -> None:
        try:
            job = decode(json.loads(message))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignored a malformed job event: %r", exc)
            return
        self._dispatch(job)

    def _receive_traced(self, message: str) -> None:
        """`_receive`, the delivery a span in the publisher's trace (app.tracing.events)."""
        assert self._spans is not None
        try:
            fields = json.loads(message)
            job = decode(fields)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignored a malformed job event: %r", exc)
            return
        with self._spans.delivering(fields.get("trace"), job):
            self._dispatch(job)

    def _dispatch(self, job: Job) -> None:
        # Events of one job may arrive out of order (several publishers): drop any
        # state this process has already passed on, so no client sees one go back.
        key = job.order_key
        last = self._recent.get(job.id)
        if last is not None and key <= last:
            return
        self._recent.put(job.id, key)

        # (Copies: a listener that ends its last subscription here gives itself back.)
        delivered = 0
        for listener in tuple(self._by_job.get(job.id, ())):
            if listener.tenant == job.tenant:
                delivered += listener.size
                listener.put(job)
        # Once per listener: a group of `jobUpdates` subscribers checks its filter once.
        for listener in tuple(self._by_tenant.get(job.tenant, ())):
            assert listener.job_filter is not None
            if listener.job_filter.concerns(job):
                delivered += listener.size
                listener.put(job)
        # Counted once per change, not per subscriber: this loop is the fan-out's.
        if delivered:
            metrics.EVENTS_DELIVERED.inc(delivered)
