"""Expired idempotency keys forgotten: a few small deletes every few minutes.

A key older than IDEMPOTENCY_KEY_TTL already acts as a new one (the create that
meets it takes it over, `keys.create_job_once`); this only keeps the table from
growing. Each batch is one short DELETE of at most BATCH rows, so no lock is held
for long however many keys expired at once; every process runs one (on PostgreSQL,
a key another process is deleting or claiming is skipped, not waited for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from databases import Database

from app.errors import Unavailable
from app.jobs import keys
from app.jobs.model import utcnow
from app.logs import Throttle
from app.outages import database_calls, reason

logger = logging.getLogger("app.idempotency")

# Seconds between two sweeps; keys expired meanwhile already act as new ones.
SWEEP_EVERY = 300.0
# Most keys one DELETE removes.
BATCH = 1_000
# Seconds between two log lines while sweeping fails.
LOG_EVERY = 600.0


class KeySweeper:
    def __init__(
        self, database: Database, ttl: int, every: float = SWEEP_EVERY, batch: int = BATCH
    ) -> None:
        self._database = database
        self._ttl = timedelta(seconds=ttl)
        self.every = every
        self.batch = batch
        self._task: asyncio.Task[None] | None = None
        self._failing = Throttle(LOG_EVERY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="idempotency-key-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def sweep(self) -> int:
        """Delete every key expired by now, `batch` at a time; how many went."""
        expired_before = utcnow() - self._ttl
        deleted = 0
        while True:
            with database_calls():
                count = await keys.forget_keys(self._database, expired_before, self.batch)
            deleted += count
            if count < self.batch:
                return deleted
            # Requests waiting for the database go between two batches.
            await asyncio.sleep(0)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                deleted = await self.sweep()
            except Exception as exc:
                if self._failing.ready():
                    if isinstance(exc, Unavailable):
                        logger.warning("cannot forget expired idempotency keys: %s", reason(exc))
                    else:
                        logger.exception("forgetting expired idempotency keys failed")
            else:
                if deleted:
                    logger.info("forgot %d expired idempotency keys", deleted)
