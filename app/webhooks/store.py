"""Every SQL statement on webhook endpoints, deliveries and attempts but the outbox's.

Deliveries are claimed with one conditional `UPDATE … WHERE seq IN (SELECT … FOR
UPDATE SKIP LOCKED) RETURNING`: on PostgreSQL several processes' deliverers each take
different rows and never wait for one another; SQLite runs one writer at a time (and
ignores the locking clause). A claim moves `next_attempt_at` a lease ahead, so a
process that dies mid-attempt leaves the delivery to be claimed again once the lease
has run out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from databases import Database

from app.db.tables import webhook_attempts as attempts
from app.db.tables import webhook_deliveries as deliveries
from app.db.tables import webhook_endpoints as endpoints
from app.jobs.model import utcnow
from app.webhooks.model import (
    Attempt,
    Delivery,
    DeliveryPage,
    DeliveryStatus,
    Endpoint,
    EventType,
    decode_events,
    encode_events,
)
from app.webhooks.outbox import as_utc

_PENDING, _DELIVERED, _FAILED = (int(status) for status in DeliveryStatus)
# Attempts listed per delivery (a redelivered one may have had many).
ATTEMPTS_SHOWN = 20


def _when(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _endpoint(row: Mapping[str, Any]) -> Endpoint:
    return Endpoint(
        id=row["id"],
        tenant=row["tenant"],
        url=row["url"],
        description=row["description"],
        events=decode_events(row["events"]),
        enabled=bool(row["enabled"]),
        disabled_reason=row["disabled_reason"],
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
        last_success_at=_when(row["last_success_at"]),
    )


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        seq=row["seq"],
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        tenant=row["tenant"],
        event=EventType(row["event"]),
        job_id=row["job_id"],
        payload=row["payload"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        due_at=as_utc(row["due_at"]),
        next_attempt_at=as_utc(row["next_attempt_at"]),
        created_at=as_utc(row["created_at"]),
        delivered_at=_when(row["delivered_at"]),
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
    )


# -- endpoints ----------------------------------------------------------------


async def create_endpoint(
    db: Database,
    endpoint_id: uuid.UUID,
    tenant: str,
    url: str,
    description: str,
    events: frozenset[EventType],
    sealed_secret: str,
) -> Endpoint:
    now = utcnow()
    row = await db.fetch_one(
        endpoints.insert()
        .values(
            id=endpoint_id,
            tenant=tenant,
            url=url,
            description=description,
            events=encode_events(events),
            secret=sealed_secret,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        .returning(*endpoints.c)
    )
    assert row is not None
    return _endpoint(row._mapping)


async def count_endpoints(db: Database, tenant: str) -> int:
    value = await db.fetch_val(
        sa.select(sa.func.count()).select_from(endpoints).where(endpoints.c.tenant == tenant)
    )
    return int(value)


async def list_endpoints(db: Database, tenant: str) -> list[Endpoint]:
    rows = await db.fetch_all(
        sa.select(*endpoints.c)
        .where(endpoints.c.tenant == tenant)
        .order_by(endpoints.c.created_at, endpoints.c.id)
    )
    return [_endpoint(row._mapping) for row in rows]


async def get_endpoint(db: Database, tenant: str, endpoint_id: uuid.UUID) -> Endpoint | None:
    row = await db.fetch_one(
        sa.select(*endpoints.c).where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant)
    )
    return _endpoint(row._mapping) if row is not None else None


async def signing_secrets(
    db: Database, endpoint_id: uuid.UUID
) -> tuple[Endpoint, list[str]] | None:
    """The endpoint and its sealed secrets that still sign (the current one first)."""
    row = await db.fetch_one(sa.select(*endpoints.c).where(endpoints.c.id == endpoint_id))
    if row is None:
        return None
    mapping = row._mapping
    sealed = [mapping["secret"]]
    until = _when(mapping["previous_secret_until"])
    if mapping["previous_secret"] is not None and until is not None and until > utcnow():
        sealed.append(mapping["previous_secret"])
    return _endpoint(mapping), sealed


async def update_endpoint(
    db: Database, tenant: str, endpoint_id: uuid.UUID, values: dict[str, Any]
) -> Endpoint | None:
    """Set `values` (column: value); turning it off fails its pending deliveries."""
    async with db.transaction():
        row = await db.fetch_one(
            endpoints.update()
            .where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant)
            .values(updated_at=utcnow(), **values)
            .returning(*endpoints.c)
        )
        if row is None:
            return None
        endpoint = _endpoint(row._mapping)
        if not endpoint.enabled:
            await _fail_pending(db, endpoint_id, "endpoint disabled")
    return endpoint


async def disable_endpoint(db: Database, endpoint_id: uuid.UUID, reason: str) -> None:
    """The deliverer's: a run of failures turned the endpoint off, saying why."""
    async with db.transaction():
        await db.execute(
            endpoints.update()
            .where(endpoints.c.id == endpoint_id, endpoints.c.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_at=utcnow())
        )
        await _fail_pending(db, endpoint_id, "endpoint disabled")


async def _fail_pending(db: Database, endpoint_id: uuid.UUID, error: str) -> None:
    await db.execute(
        deliveries.update()
        .where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == _PENDING)
        .values(status=_FAILED, last_error=error)
    )


async def delete_endpoint(db: Database, tenant: str, endpoint_id: uuid.UUID) -> Endpoint | None:
    """The endpoint, its deliveries and their attempts, gone."""
    async with db.transaction():
        row = await db.fetch_one(
            endpoints.delete()
            .where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant)
            .returning(*endpoints.c)
        )
        if row is None:
            return None
        owned = sa.select(deliveries.c.seq).where(deliveries.c.endpoint_id == endpoint_id)
        await db.execute(attempts.delete().where(attempts.c.delivery_seq.in_(owned)))
        await db.execute(deliveries.delete().where(deliveries.c.endpoint_id == endpoint_id))
    return _endpoint(row._mapping)


# -- deliveries as the tenant sees them ----------------------------------------


async def list_deliveries(
    db: Database, tenant: str, endpoint_id: uuid.UUID, first: int, after: int | None
) -> DeliveryPage:
    """Newest first; `after` is the `seq` of the last delivery of the previous page."""
    query = (
        sa.select(*deliveries.c)
        .where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.tenant == tenant)
        .order_by(deliveries.c.seq.desc())
        .limit(first + 1)
    )
    if after is not None:
        query = query.where(deliveries.c.seq < after)
    found = [_delivery(row._mapping) for row in await db.fetch_all(query)]
    page = found[:first]
    return DeliveryPage(
        deliveries=[(delivery, await attempts_of(db, delivery.seq)) for delivery in page],
        has_next=len(found) > first,
    )


async def attempts_of(db: Database, delivery_seq: int) -> list[Attempt]:
    """The latest attempts, oldest first."""
    rows = await db.fetch_all(
        sa.select(*attempts.c)
        .where(attempts.c.delivery_seq == delivery_seq)
        .order_by(attempts.c.seq.desc())
        .limit(ATTEMPTS_SHOWN)
    )
    return [
        Attempt(
            attempted_at=as_utc(row._mapping["attempted_at"]),
            status_code=row._mapping["status_code"],
            error=row._mapping["error"],
            duration_ms=row._mapping["duration_ms"],
        )
        for row in reversed(rows)
    ]


async def get_delivery(db: Database, tenant: str, delivery_id: str) -> Delivery | None:
    row = await db.fetch_one(
        sa.select(*deliveries.c).where(
            deliveries.c.id == delivery_id, deliveries.c.tenant == tenant
        )
    )
    return _delivery(row._mapping) if row is not None else None


async def redeliver(db: Database, tenant: str, delivery_id: str) -> Delivery | None:
    """Due now, a new round of attempts, the same `webhook-id` and body."""
    now = utcnow()
    row = await db.fetch_one(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.tenant == tenant)
        .values(status=_PENDING, attempts=0, next_attempt_at=now)
        .returning(*deliveries.c)
    )
    return _delivery(row._mapping) if row is not None else None


# -- the deliverer's -------------------------------------------------------------


async def claim(db: Database, limit: int, lease: float) -> list[Delivery]:
    """Due deliveries, taken by this process alone for `lease` seconds."""
    now = utcnow()
    due = (
        sa.select(deliveries.c.seq)
        .where(deliveries.c.status == _PENDING, deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await db.fetch_all(
        deliveries.update()
        .where(deliveries.c.seq.in_(due.scalar_subquery()), deliveries.c.status == _PENDING)
        .values(
            next_attempt_at=now + timedelta(seconds=lease),
            attempts=deliveries.c.attempts + 1,
        )
        .returning(*deliveries.c)
    )
    return sorted((_delivery(row._mapping) for row in rows), key=lambda d: d.next_attempt_at)


async def record_attempt(
    db: Database,
    delivery: Delivery,
    attempted_at: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    next_attempt_at: datetime | None,
) -> None:
    """One attempt's outcome: delivered (no error), retried at `next_attempt_at`, or
    failed for good (neither)."""
    if error is None:
        values: dict[str, Any] = {"status": _DELIVERED, "delivered_at": utcnow()}
    elif next_attempt_at is not None:
        values = {"next_attempt_at": next_attempt_at}
    else:
        values = {"status": _FAILED}
    async with db.transaction():
        await db.execute(
            attempts.insert().values(
                delivery_seq=delivery.seq,
                attempted_at=attempted_at,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        # Only the claim this process holds: a redelivery meanwhile starts afresh.
        await db.execute(
            deliveries.update()
            .where(
                deliveries.c.seq == delivery.seq,
                deliveries.c.status == _PENDING,
                deliveries.c.attempts == delivery.attempts,
            )
            .values(last_status_code=status_code, last_error=error, **values)
        )
        if error is None:
            await db.execute(
                endpoints.update()
                .where(endpoints.c.id == delivery.endpoint_id)
                .values(last_success_at=attempted_at)
            )


async def rotate_secret(
    db: Database, tenant: str, endpoint_id: uuid.UUID, sealed_secret: str, overlap: float
) -> Endpoint | None:
    """A new secret; the old one still signs (a second signature) for `overlap` seconds."""
    now = utcnow()
    row = await db.fetch_one(
        endpoints.update()
        .where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant)
        .values(
            previous_secret=endpoints.c.secret,
            previous_secret_until=now + timedelta(seconds=overlap),
            secret=sealed_secret,
            updated_at=now,
        )
        .returning(*endpoints.c)
    )
    return _endpoint(row._mapping) if row is not None else None
