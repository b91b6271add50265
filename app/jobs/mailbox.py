"""One subscriber's pending job states (`Mailbox`) and the stream strawberry iterates
(`JobStream`); `Listener`, what `app.jobs.events` hands every change to."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable
from typing import Protocol

from app import metrics
from app.errors import SubscriptionInterrupted
from app.jobs.buffers import BACKLOG_LIMIT, Backlog
from app.jobs.model import Job, JobFilter

# States a subscriber may have pending before its mailbox keeps only each job's latest;
# past this many different jobs it is told it fell behind (app/jobs/buffers.py).
MAILBOX_LIMIT = BACKLOG_LIMIT
# Why a `jobUpdates` subscription behind on more than MAILBOX_LIMIT jobs ends.
FELL_BEHIND = (
    f"this subscription fell more than {MAILBOX_LIMIT} jobs behind; "
    "subscribe again (and reload what it showed)"
)


def count_interruption(why: str) -> None:
    """A subscription ended with SUBSCRIPTION_INTERRUPTED (`subscriptions_interrupted`)."""
    reason = "fell_behind" if why == FELL_BEHIND else "broker_outage"
    metrics.SUBSCRIPTIONS_INTERRUPTED.labels(reason).inc()


class Listener(Protocol):
    """What the listener hands changes to: a `Mailbox`, or anything that takes them at
    once without waiting (app.graphql.ws serves many subscribers so).

    One job's changes (`job_id` set), or the tenant's changes its `job_filter` is
    concerned with (`jobUpdates`: `job_id` None), checked once per listener.
    """

    tenant: str
    job_id: uuid.UUID | None
    job_filter: JobFilter | None

    @property
    def size(self) -> int:
        """The subscriptions it serves."""
        ...

    @property
    def served(self) -> int:
        """The subscriptions it has served in all (ended ones too)."""
        ...

    def put(self, job: Job) -> None: ...

    def close(self) -> None:
        """End its subscriptions (clients get `complete`); each is released once ended."""
        ...

    def interrupt(self, why: str) -> None:
        """Changes were missed that cannot be caught up with: end its subscriptions with
        an error saying why (`SubscriptionInterrupted`)."""
        ...


class Mailbox:
    """One subscriber's pending job states. The listener puts, never waits."""

    size = served = 1

    __slots__ = (
        "_pending",
        "_waiter",
        "closed",
        "interruption",
        "job_filter",
        "job_id",
        "overflowed",
        "tenant",
    )

    def __init__(
        self, tenant: str, job_id: uuid.UUID | None = None, job_filter: JobFilter | None = None
    ) -> None:
        self.tenant = tenant
        self.job_id = job_id
        self.job_filter = job_filter
        # Every state while few wait; past MAILBOX_LIMIT, each job's latest.
        self._pending: Backlog[Job] = Backlog(MAILBOX_LIMIT, keep_all=MAILBOX_LIMIT)
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.overflowed = False
        # Why the subscription ends with an error, once `overflowed`.
        self.interruption = ""

    def put(self, job: Job) -> None:
        if not self._pending.put(job.id, job) and not self.overflowed:
            self.interrupt(FELL_BEHIND)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def interrupt(self, why: str) -> None:
        """Changes were missed that cannot be caught up with: end with an error saying why."""
        if not self.overflowed:
            count_interruption(why)
        self._pending.overflow()
        self.overflowed = True
        self.interruption = why
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
        return self._pending.pop()


class JobStream:
    """The states one subscription sends, in order; strawberry iterates it.

    Following one job (`jobProgress`), it starts with the snapshot, skips states
    the snapshot already shows, and ends after the job has finished. A stream that
    is dropped without being closed still gives its mailbox back (a finalizer).
    """

    def __init__(
        self, release: Callable[[Mailbox], None], mailbox: Mailbox, snapshot: Job | None = None
    ) -> None:
        self._mailbox = mailbox
        self._first = snapshot
        self._last = snapshot.order_key if snapshot is not None else None
        self._following = snapshot is not None
        self._done = False
        self._release = weakref.finalize(self, release, mailbox)

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
                    raise SubscriptionInterrupted(self._mailbox.interruption)
                raise StopAsyncIteration
            if self._last is not None:
                key = job.order_key
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
