"""The deliverer: each process claims due deliveries and sends them.

It wakes when this process records a delivery (`Outbox.on_recorded`, after the
commit) and every WEBHOOK_POLL_INTERVAL seconds otherwise, for deliveries other
processes recorded, retries that came due, and those a dead process left (recorded
and committed, never sent; or claimed and never finished: claimed again once the
lease has run out). Each claimed delivery is sent in a task of its own, at most
CONCURRENCY at once per process.

After an attempt fails, the next is scheduled by `app.webhooks.schedule`. When the
last attempt of a delivery fails and no delivery to the endpoint has succeeded
since that delivery was recorded (about a day of failures), the endpoint is
disabled, its reason recorded for the tenant to see, and its pending deliveries
are failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from databases import Database

from app.errors import Unavailable
from app.jobs.model import utcnow
from app.logs import Throttle
from app.outages import database_calls, reason
from app.webhooks import store
from app.webhooks.model import Delivery
from app.webhooks.outbox import Outbox
from app.webhooks.schedule import MAX_ATTEMPTS, after, next_delay, parse_retry_after
from app.webhooks.secrets import SecretBox, SecretUnreadable
from app.webhooks.sender import Outcome, Sender

logger = logging.getLogger("app.webhooks")

CONCURRENCY = 32
BATCH = 32
LOG_EVERY = 10.0


class Deliverer:
    def __init__(
        self,
        database: Database,
        outbox: Outbox,
        box: SecretBox,
        sender: Sender,
        *,
        poll_interval: float,
        retry_scale: float,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.box = box
        self.sender = sender
        self.poll_interval = poll_interval
        self.retry_scale = retry_scale
        # A claim outlives any attempt: a claimed delivery is never sent twice at once.
        self.lease = 2 * sender.deadline + 30
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._sending: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._failing = Throttle(LOG_EVERY)
        self.delivered = 0
        self.failed_attempts = 0

    async def start(self) -> None:
        self.outbox.on_recorded = self._wake.set
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        """Stop claiming; attempts under way get a moment, then are cut (their
        deliveries are claimed again once their lease runs out)."""
        self.outbox.on_recorded = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._sending:
            _, pending = await asyncio.wait(self._sending, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.sender.aclose()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self._claim_some() == BATCH:
                    pass
            except Exception as exc:
                self._log(exc)

    async def _claim_some(self) -> int:
        free = min(BATCH, CONCURRENCY - len(self._sending))
        if free <= 0:
            # Every slot busy: a finishing attempt wakes the loop.
            return 0
        with database_calls():
            claimed = await store.claim(self.database, free, self.lease)
        for delivery in claimed:
            task = asyncio.create_task(self._attempt(delivery), name=f"webhook {delivery.id}")
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return len(claimed) if len(claimed) == free else 0

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()

    def _log(self, exc: Exception) -> None:
        if not self._failing.ready():
            return
        if isinstance(exc, Unavailable):
            logger.warning("webhook deliveries wait for the database: %s", reason(exc))
        else:
            logger.exception("webhook deliverer failed; retrying")

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            await self._deliver(delivery)
        except Exception as exc:
            # The claim's lease runs out and the delivery is tried again.
            self._log(exc)

    async def _deliver(self, delivery: Delivery) -> None:
        with database_calls():
            found = await store.signing_secrets(self.database, delivery.endpoint_id)
        at = utcnow()
        if found is None or not found[0].enabled:
            await self._record(delivery, at, Outcome(None, "endpoint disabled or deleted", 0), None)
            return
        endpoint, sealed = found
        try:
            secrets = [self.box.open(endpoint.id, value) for value in sealed]
        except SecretUnreadable as exc:
            await self._record(delivery, at, Outcome(None, str(exc), 0), None)
            return
        outcome = await self.sender.send(endpoint.url, secrets, delivery.id, at, delivery.payload)
        retry_at = None
        if outcome.error is not None:
            self.failed_attempts += 1
            delay = next_delay(
                delivery.attempts, self.retry_scale, parse_retry_after(outcome.retry_after, at)
            )
            retry_at = after(utcnow(), delay) if delay is not None else None
        else:
            self.delivered += 1
        await self._record(delivery, at, outcome, retry_at)
        if outcome.error is not None and retry_at is None:
            await self._maybe_disable(delivery, endpoint.last_success_at, outcome)

    async def _record(
        self, delivery: Delivery, at: datetime, outcome: Outcome, retry_at: datetime | None
    ) -> None:
        with database_calls():
            await store.record_attempt(
                self.database,
                delivery,
                at,
                outcome.status_code,
                outcome.error,
                outcome.duration_ms,
                retry_at,
            )

    async def _maybe_disable(
        self, delivery: Delivery, last_success: datetime | None, outcome: Outcome
    ) -> None:
        if last_success is not None and last_success >= delivery.created_at:
            return
        why = (
            f"disabled at {utcnow():%Y-%m-%d %H:%M:%S} UTC: all {MAX_ATTEMPTS} attempts of "
            f"delivery {delivery.id} failed with no successful delivery since "
            f"{delivery.created_at:%Y-%m-%d %H:%M:%S} UTC; last error: {outcome.error}"
        )
        logger.warning("webhook endpoint %s %s", delivery.endpoint_id, why)
        with database_calls():
            await store.disable_endpoint(self.database, delivery.endpoint_id, why)
