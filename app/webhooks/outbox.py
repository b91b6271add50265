"""The outbox: deliveries recorded in the transaction of the job change they report.

`app.jobs.store` calls `Outbox.record` inside the transaction that changes a job
(create, report, finish, delete; GraphQL and REST alike), so the delivery is exactly
as durable as the change: a process killed right after the commit leaves the row
behind, and any process's deliverer sends it. The tenant's endpoints are read just
before the change (`Outbox.endpoints`): a tenant with none pays that one indexed read
and no transaction; an endpoint receives the changes that begin after it is created.

`job.progress` is coalesced per job and endpoint: at most one is due per
WEBHOOK_PROGRESS_INTERVAL seconds. A report within the interval either updates the
one still waiting (never sent yet, so its `webhook-id` was never seen) or is
scheduled at the interval's end; the latest progress always goes out. When the job
ends or is deleted, progress deliveries not yet attempted are dropped: the final
event says more.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from databases import Database

from app.db.tables import webhook_deliveries as deliveries
from app.db.tables import webhook_endpoints as endpoints
from app.jobs.model import Job, utcnow
from app.webhooks.model import DeliveryStatus, EventType, new_delivery_id, payload

_PENDING = int(DeliveryStatus.PENDING)
_PROGRESS = EventType.JOB_PROGRESS.value
DEFAULT_PROGRESS_INTERVAL = 10.0


class Outbox:
    def __init__(
        self,
        public_url: str | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    ) -> None:
        # PUBLIC_URL; each request's changes use `at(...)` with the address it reached.
        self.public_url = public_url or "http://127.0.0.1:8000"
        self.progress_interval = timedelta(seconds=progress_interval)
        # Told after a commit that recorded deliveries: this process's deliverer
        # sends them at once instead of at its next poll.
        self.on_recorded: Callable[[], None] | None = None

    def at(self, public_url: str) -> Outbox:
        """This outbox, writing each job's `url` under `public_url`: PUBLIC_URL, or the
        address the request causing the change arrived at (app.urls)."""
        if public_url == self.public_url:
            return self
        bound = copy.copy(self)
        bound.public_url = public_url
        return bound

    def recorded(self) -> None:
        """After the commit of a change that recorded deliveries."""
        if self.on_recorded is not None:
            self.on_recorded()

    async def endpoints(self, db: Database, tenant: str) -> list[tuple[uuid.UUID, str]]:
        """The tenant's enabled endpoints and the events each wants (a handful at most,
        one index range), read before a change: with none, the change needs no
        transaction and costs this one read."""
        rows = await db.fetch_all(
            sa.lambda_stmt(
                lambda: sa.select(endpoints.c.id, endpoints.c.events).where(
                    endpoints.c.tenant == tenant, endpoints.c.enabled.is_(True)
                )
            )
        )
        return [(row._mapping["id"], row._mapping["events"]) for row in rows]

    @staticmethod
    def concerned(
        wanting: list[tuple[uuid.UUID, str]], event: EventType
    ) -> list[tuple[uuid.UUID, str]]:
        """The endpoints `event` records something for: those wanting it, and on a job's
        end those wanting job.progress (a waiting one is dropped)."""
        ends = event in (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_DELETED)
        return [
            (endpoint_id, wants)
            for endpoint_id, wants in wanting
            if f" {event.value} " in wants or (ends and f" {_PROGRESS} " in wants)
        ]

    async def record(
        self, db: Database, job: Job, event: EventType, wanting: list[tuple[uuid.UUID, str]]
    ) -> int:
        """Record `event` for each of `wanting` (`endpoints`) that wants it; how many
        were recorded. Call inside the transaction of the change."""
        tenant = job.tenant
        now = utcnow()
        body: str | None = None
        recorded = 0
        for endpoint_id, wants in wanting:
            if job.is_finished and f" {_PROGRESS} " in wants:
                await self._drop_progress(db, endpoint_id, job.id)
            if f" {event.value} " not in wants:
                continue
            if body is None:
                body = payload(event, now, job, self.public_url)
            due = now
            if event is EventType.JOB_PROGRESS:
                coalesced, due = await self._coalesce(db, endpoint_id, job.id, body, now)
                if coalesced:
                    continue
            await db.execute(
                deliveries.insert().values(
                    id=new_delivery_id(),
                    endpoint_id=endpoint_id,
                    tenant=tenant,
                    event=event.value,
                    job_id=job.id,
                    payload=body,
                    status=_PENDING,
                    attempts=0,
                    due_at=due,
                    next_attempt_at=due,
                    created_at=now,
                )
            )
            recorded += 1
        return recorded

    async def _coalesce(
        self, db: Database, endpoint_id: uuid.UUID, job_id: uuid.UUID, body: str, now: datetime
    ) -> tuple[bool, datetime]:
        """(whether a waiting progress delivery took `body`, else when a new one is due)."""
        latest = await db.fetch_one(
            sa.select(deliveries.c.seq, deliveries.c.due_at, deliveries.c.attempts)
            .where(
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.job_id == job_id,
                deliveries.c.event == _PROGRESS,
            )
            .order_by(deliveries.c.due_at.desc())
            .limit(1)
        )
        if latest is None:
            return False, now
        due_at = as_utc(latest._mapping["due_at"])
        if latest._mapping["attempts"] == 0 and due_at > now:
            updated = await db.fetch_one(
                deliveries.update()
                .where(
                    deliveries.c.seq == latest._mapping["seq"],
                    deliveries.c.attempts == 0,
                    deliveries.c.status == _PENDING,
                )
                .values(payload=body)
                .returning(deliveries.c.seq)
            )
            if updated is not None:
                return True, due_at
        return False, max(now, due_at + self.progress_interval)

    async def _drop_progress(self, db: Database, endpoint_id: uuid.UUID, job_id: uuid.UUID) -> None:
        await db.execute(
            deliveries.delete().where(
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.job_id == job_id,
                deliveries.c.event == _PROGRESS,
                deliveries.c.status == _PENDING,
                deliveries.c.attempts == 0,
            )
        )


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; only UTC is ever stored.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
