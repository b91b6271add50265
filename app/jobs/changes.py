"""The change feed: each process reads what changed in the database, and passes on what
its subscribers were never sent.

A change is published after its commit, through the broker, from the process that
made it. If that process dies in between (killed, out of memory, the host lost),
the event is never sent: before this, subscribers on the other processes showed the
old state for ever. Every change also takes a new number in the same statement
(`jobs.change_seq`, migration 0005), so the record of it is as durable as the
change. Every `interval` seconds, while it has subscribers, each process reads the
jobs changed past the last number it saw (a light row each: id, tenant, number,
order key) and, for a change it has not passed on (`JobEvents.missed`), waits one
more poll, so the broker's own event, normally milliseconds behind the commit,
is never beaten to it; then it reads the job and hands it to its listeners exactly
as a broker event (no repeats, no state going back).

A change reaches a subscriber on another process whose publisher died within
2 x interval plus two reads (SQLite), 3 x interval on PostgreSQL when the change
was still committing at a poll: PostgreSQL numbers statements as they run but
commits them in its own order, so each poll there reads once more from the
previous poll's number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection
from typing import Protocol

from app.errors import Unavailable
from app.jobs.model import Job, JobChange
from app.logs import Throttle
from app.outages import reason

logger = logging.getLogger("app.events")

# Most changes one poll reads; past that the next poll goes on from the last read.
BATCH = 5_000
# Seconds between two log lines while polling fails.
LOG_EVERY = 10.0


class ChangeSource(Protocol):
    async def last_change(self) -> int: ...

    async def changes_after(self, after: int, limit: int) -> list[JobChange]: ...

    async def by_id(self, job_ids: Collection[uuid.UUID]) -> list[Job]: ...


class Subscribers(Protocol):
    """What the feed asks of `JobEvents`."""

    @property
    def listening(self) -> bool:
        """Whether any subscription is open in this process."""
        ...

    def missed(self, change: JobChange) -> bool:
        """Whether someone here wants this change and it has not been passed on."""
        ...

    def deliver(self, job: Job) -> None: ...


class ChangeFeed:
    def __init__(
        self,
        source: ChangeSource,
        subscribers: Subscribers,
        interval: float,
        *,
        reread: bool,
    ) -> None:
        self._source = source
        self._subscribers = subscribers
        self.interval = interval
        # PostgreSQL: read again from the previous poll's number (see the module's doc).
        self._reread = reread
        self._cursor = 0
        self._previous = 0
        # Changes not passed on at the last poll: passed on at this one if still not.
        self._suspects: dict[uuid.UUID, JobChange] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = Throttle(LOG_EVERY)
        # Why the last poll failed, until one succeeds (/readyz says so).
        self.problem: str | None = None
        # Changes it passed on itself (the broker's event never came): for operators.
        self.recovered = 0

    async def start(self) -> None:
        # Subscriptions start after this: only later changes can concern them.
        self._cursor = self._previous = await self._source.last_change()
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception as exc:
                self._failed(exc)
            else:
                self.problem = None

    def _failed(self, exc: Exception) -> None:
        self.problem = f"cannot read the change feed, retrying: {reason(exc)}"
        if not self._failing.ready():
            return
        if isinstance(exc, Unavailable):
            logger.warning("%s", self.problem)
        else:
            logger.exception("reading the change feed failed; retrying")

    async def poll(self) -> None:
        if not self._subscribers.listening:
            # Nobody to tell: skip ahead (one index lookup).
            self._cursor = self._previous = await self._source.last_change()
            self._suspects.clear()
            return
        after = self._previous if self._reread else self._cursor
        changes = await self._source.changes_after(after, BATCH)
        self._previous = self._cursor
        if changes:
            self._cursor = max(self._cursor, changes[-1].seq)
        missed = self._subscribers.missed
        due = [change.id for change in self._suspects.values() if missed(change)]
        suspects = {change.id: change for change in changes if missed(change)}
        for job_id in due:
            suspects.pop(job_id, None)
        self._suspects = suspects
        if due:
            for job in await self._source.by_id(due):
                self.recovered += 1
                self._subscribers.deliver(job)
