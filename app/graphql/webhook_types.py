"""GraphQL types of webhooks, each converted from a domain object by a small classmethod."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from app.webhooks import model
from app.webhooks.service import Webhooks

WebhookEventType = strawberry.enum(
    model.EventType,
    name="WebhookEventType",
    description="An event a webhook endpoint can receive; the payload's `type` is the value "
    "in parentheses.",
)
for _value, _text in zip(
    WebhookEventType.__strawberry_definition__.values,  # type: ignore[attr-defined]
    (
        "A job was created (job.created).",
        "A job completed (job.completed).",
        "A job failed (job.failed).",
        "A job was deleted (job.deleted).",
        "A job's progress changed (job.progress); opt-in, at most one per job per "
        "WEBHOOK_PROGRESS_INTERVAL seconds, the latest progress always sent.",
    ),
    strict=True,
):
    _value.description = _text

WebhookDeliveryStatus = strawberry.enum(
    model.DeliveryStatus,
    name="WebhookDeliveryStatus",
    description="Where a delivery stands.",
)
for _value, _text in zip(
    WebhookDeliveryStatus.__strawberry_definition__.values,  # type: ignore[attr-defined]
    (
        "Not delivered yet; tried again at `nextAttemptAt`.",
        "The endpoint answered 2xx.",
        "Every attempt failed, or the endpoint was disabled; `redeliverWebhook` tries again.",
    ),
    strict=True,
):
    _value.description = _text


def _event_name(event: model.EventType) -> str:
    return event.value


@strawberry.type(description="An HTTPS endpoint of the tenant's that receives signed job events.")
class WebhookEndpoint:
    id: uuid.UUID = strawberry.field(description="The endpoint's id.")
    url: str = strawberry.field(description="Where events are POSTed.")
    description: str = strawberry.field(description="The tenant's note about it.")
    events: list[WebhookEventType] = strawberry.field(  # type: ignore[valid-type]
        description="The events it receives."
    )
    enabled: bool = strawberry.field(description="Whether events are recorded and sent to it.")
    disabled_reason: str | None = strawberry.field(
        description="Why it is disabled (by the tenant, or after a run of failed deliveries); "
        "null while enabled."
    )
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it last changed.")

    @classmethod
    def from_record(cls, endpoint: model.Endpoint) -> WebhookEndpoint:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            events=sorted(endpoint.events, key=_event_name),
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


@strawberry.type(
    description="An endpoint with its signing secret: given once, on creation and rotation."
)
class WebhookEndpointWithSecret:
    endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")
    secret: str = strawberry.field(
        description="The signing secret (`whsec_…`), for `standardwebhooks.Webhook(secret)`. "
        "Shown only now: store it."
    )

    @classmethod
    def from_record(cls, endpoint: model.Endpoint, secret: str) -> WebhookEndpointWithSecret:
        return cls(endpoint=WebhookEndpoint.from_record(endpoint), secret=secret)


@strawberry.type(description="One attempt to deliver an event.")
class WebhookAttempt:
    attempted_at: datetime = strawberry.field(description="When it was made.")
    status_code: int | None = strawberry.field(
        description="The endpoint's HTTP status; null if none came (refused, timed out...)."
    )
    error: str | None = strawberry.field(description="Why it failed; null if it succeeded.")
    duration_ms: int = strawberry.field(description="How long it took, in milliseconds.")

    @classmethod
    def from_record(cls, attempt: model.Attempt) -> WebhookAttempt:
        return cls(
            attempted_at=attempt.attempted_at,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
        )


@strawberry.type(description="One event for one endpoint, with its attempts.")
class WebhookDelivery:
    id: str = strawberry.field(
        description="The `webhook-id` header: the same on every attempt and redelivery."
    )
    event: WebhookEventType = strawberry.field(description="The event.")  # type: ignore[valid-type]
    job_id: uuid.UUID = strawberry.field(description="The job it is about.")
    status: WebhookDeliveryStatus = strawberry.field(description="Where it stands.")  # type: ignore[valid-type]
    payload: str = strawberry.field(description="The JSON body sent (and signed).")
    created_at: datetime = strawberry.field(description="When the event was recorded.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When it is tried next, while PENDING; null otherwise."
    )
    delivered_at: datetime | None = strawberry.field(description="When it was delivered.")
    attempts: list[WebhookAttempt] = strawberry.field(
        description="Its attempts, oldest first (the latest 20)."
    )

    @classmethod
    def from_record(
        cls, delivery: model.Delivery, attempts: list[model.Attempt]
    ) -> WebhookDelivery:
        pending = delivery.status is model.DeliveryStatus.PENDING
        return cls(
            id=delivery.id,
            event=delivery.event,
            job_id=delivery.job_id,
            status=delivery.status,
            payload=delivery.payload,
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            delivered_at=delivery.delivered_at,
            attempts=[WebhookAttempt.from_record(attempt) for attempt in attempts],
        )


@strawberry.type(description="A delivery in a connection, with its position.")
class WebhookDeliveryEdge:
    cursor: str = strawberry.field(description="Opaque position of this delivery: pass as `after`.")
    node: WebhookDelivery = strawberry.field(description="The delivery.")


@strawberry.type(description="Where a page of deliveries ends, and whether more follow.")
class WebhookDeliveryPageInfo:
    has_next_page: bool = strawberry.field(description="Whether more deliveries follow.")
    end_cursor: str | None = strawberry.field(
        description="The last edge's cursor: pass it as `after`; null when empty."
    )


@strawberry.type(description="A page of an endpoint's deliveries, newest first.")
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge] = strawberry.field(description="Newest first.")
    page_info: WebhookDeliveryPageInfo = strawberry.field(description="Where this page ends.")

    @classmethod
    def from_page(cls, page: model.DeliveryPage, webhooks: Webhooks) -> WebhookDeliveryConnection:
        edges = [
            WebhookDeliveryEdge(
                cursor=webhooks.cursor(delivery),
                node=WebhookDelivery.from_record(delivery, attempts),
            )
            for delivery, attempts in page.deliveries
        ]
        return cls(
            edges=edges,
            page_info=WebhookDeliveryPageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
        )
