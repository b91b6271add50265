"""Webhook queries and mutations (scope `webhooks:manage`); `Query` and `Mutation` take them."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.webhook_types import (
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
    WebhookEventType,
)
from app.jobs import model

EndpointId = Annotated[uuid.UUID, strawberry.argument(description="The endpoint's id.")]
Events = Annotated[
    list[WebhookEventType],  # type: ignore[valid-type]
    strawberry.argument(description="The events it receives (at least one)."),
]


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The tenant's webhook endpoints, oldest first.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        return [WebhookEndpoint.from_record(e) for e in await info.context.webhooks.endpoints()]

    @strawberry.field(description="An endpoint's deliveries, newest first, each with its attempts.")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint: EndpointId,
        first: Annotated[
            int, strawberry.argument(description="Page size, 1..100.")
        ] = model.DEFAULT_PAGE_SIZE,
        after: Annotated[
            str | None, strawberry.argument(description="Start after this cursor.")
        ] = None,
    ) -> WebhookDeliveryConnection:
        webhooks = info.context.webhooks
        page = await webhooks.deliveries(endpoint, first, after)
        return WebhookDeliveryConnection.from_page(page, webhooks)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Add an endpoint. Its signing secret is in the answer, and only there."
    )
    async def create_webhook_endpoint(
        self,
        info: Info,
        url: Annotated[
            str, strawberry.argument(description="An https:// URL reachable on the internet.")
        ],
        events: Events,
        description: Annotated[
            str, strawberry.argument(description="A note for the tenant (at most 500 characters).")
        ] = "",
    ) -> WebhookEndpointWithSecret:
        endpoint, secret = await info.context.webhooks.create(url, events, description)
        return WebhookEndpointWithSecret.from_record(endpoint, secret)

    @strawberry.mutation(
        description="Enable or disable an endpoint, or change its events or description. "
        "Disabling fails its pending deliveries; while disabled it gets nothing."
    )
    async def update_webhook_endpoint(
        self,
        info: Info,
        id: EndpointId,
        enabled: Annotated[bool | None, strawberry.argument(description="On or off.")] = None,
        events: Annotated[
            list[WebhookEventType] | None,  # type: ignore[valid-type]
            strawberry.argument(description="The events it receives (at least one)."),
        ] = None,
        description: Annotated[
            str | None, strawberry.argument(description="A note for the tenant.")
        ] = None,
    ) -> WebhookEndpoint:
        endpoint = await info.context.webhooks.update(id, enabled, events, description)
        return WebhookEndpoint.from_record(endpoint)

    @strawberry.mutation(
        description="A new signing secret, in the answer only. For 24 hours deliveries carry "
        "a second signature made with the previous one."
    )
    async def rotate_webhook_secret(self, info: Info, id: EndpointId) -> WebhookEndpointWithSecret:
        endpoint, secret = await info.context.webhooks.rotate_secret(id)
        return WebhookEndpointWithSecret.from_record(endpoint, secret)

    @strawberry.mutation(description="Delete an endpoint, its deliveries and their attempts.")
    async def delete_webhook_endpoint(self, info: Info, id: EndpointId) -> WebhookEndpoint:
        return WebhookEndpoint.from_record(await info.context.webhooks.delete(id))

    @strawberry.mutation(
        description="Send a delivery again now, with the same `webhook-id` and body "
        "(a new round of attempts)."
    )
    async def redeliver_webhook(
        self,
        info: Info,
        id: Annotated[str, strawberry.argument(description="The delivery's id (`webhook-id`).")],
    ) -> WebhookDelivery:
        webhooks = info.context.webhooks
        delivery = await webhooks.redeliver(id)
        return WebhookDelivery.from_record(delivery, await webhooks.attempts(delivery))
