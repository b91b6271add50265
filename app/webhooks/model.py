"""Webhook event types, endpoints, deliveries, and the rules on their values."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from app.errors import InvalidInput
from app.jobs.model import Job, JobStatus, format_timestamp, job_document, quoted
from app.webhooks.guard import check_literal_host

# Most endpoints one tenant may have; most characters in a URL and a description.
MAX_ENDPOINTS = 20
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 500


class EventType(enum.Enum):
    JOB_CREATED = "job.created"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_DELETED = "job.deleted"
    # Opt-in; coalesced per job (WEBHOOK_PROGRESS_INTERVAL).
    JOB_PROGRESS = "job.progress"


def event_for_report(status: JobStatus | None) -> EventType:
    """The event a report sending `status` causes, if it changes the job (a finished
    job never changes: the state rules)."""
    if status is JobStatus.COMPLETED:
        return EventType.JOB_COMPLETED
    if status is JobStatus.FAILED:
        return EventType.JOB_FAILED
    return EventType.JOB_PROGRESS


class DeliveryStatus(enum.IntEnum):
    PENDING = 0
    DELIVERED = 1
    FAILED = 2


def encode_events(events: frozenset[EventType]) -> str:
    """As stored: " job.completed job.created " (see app.db.tables.webhook_endpoints)."""
    return " " + " ".join(sorted(event.value for event in events)) + " "


def decode_events(stored: str) -> frozenset[EventType]:
    return frozenset(EventType(value) for value in stored.split())


def check_events(events: list[EventType], field: str = "events") -> frozenset[EventType]:
    if not events:
        raise InvalidInput(field, "must name at least one event type")
    return frozenset(events)


def check_description(description: str, field: str = "description") -> str:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            field, f"is {len(description)} characters; at most {MAX_DESCRIPTION_LENGTH}"
        )
    return description


def check_url(url: str, allow_private: bool, field: str = "url") -> str:
    """An absolute https:// URL (http:// too with WEBHOOK_ALLOW_PRIVATE_TARGETS), no
    credentials or fragment. Where it points is checked again at every connection
    (app.webhooks.guard): a name may resolve elsewhere later."""

    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(field, f"is {len(url)} characters; at most {MAX_URL_LENGTH}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        raise InvalidInput(field, f"{quoted(url)} is not a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidInput(
            field,
            f"must be an absolute https:// URL such as https://example.test/hooks, got {quoted(url)}",
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(field, "must not carry credentials (user:password@)")
    if parts.fragment:
        raise InvalidInput(field, "must not have a #fragment")
    problem = check_literal_host(parts.hostname, allow_private)
    if problem is not None:
        raise InvalidInput(field, problem)
    return url


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: uuid.UUID
    tenant: str
    url: str
    description: str
    events: frozenset[EventType]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    # The `webhook-id` header value.
    id: str
    endpoint_id: uuid.UUID
    tenant: str
    event: EventType
    job_id: uuid.UUID
    payload: str
    status: DeliveryStatus
    attempts: int
    due_at: datetime
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[tuple[Delivery, list[Attempt]]]
    has_next: bool


def new_delivery_id() -> str:
    """A `webhook-id`: unique per delivery, the same on each of its attempts."""
    return f"msg_{uuid.uuid4().hex}"


def payload(event: EventType, at: datetime, job: Job, public_url: str) -> str:
    """The body: the event type, its time, and the job as the REST API shows it
    (its `updated_at` lets a receiver drop a stale state)."""
    body: dict[str, Any] = {
        "type": event.value,
        "timestamp": format_timestamp(at),
        "data": job_document(job, public_url),
    }
    return orjson.dumps(body).decode()
