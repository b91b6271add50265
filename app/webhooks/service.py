"""`Webhooks`: one caller's view of its tenant's webhook endpoints and deliveries.

Every call needs the scope `webhooks:manage`; an endpoint or delivery of another
tenant is NOT_FOUND, as a job is. A secret is returned by creation and rotation
only, never read back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from databases import Database

from app.auth import MANAGE_WEBHOOKS, Caller, require
from app.errors import InvalidInput, NotFound
from app.jobs.cursors import CursorCodec
from app.jobs.model import check_page_size
from app.outages import database_calls
from app.webhooks import store
from app.webhooks.model import (
    MAX_ENDPOINTS,
    Attempt,
    Delivery,
    DeliveryPage,
    Endpoint,
    EventType,
    check_description,
    check_events,
    check_url,
    encode_events,
)
from app.webhooks.secrets import SecretBox, new_secret

# Seconds the previous secret still signs (a second signature) after a rotation.
ROTATION_OVERLAP = 86_400.0


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What the app holds for every caller's `Webhooks` (app.main)."""

    box: SecretBox
    allow_private: bool


@dataclass(frozen=True, slots=True)
class Webhooks:
    database: Database
    caller: Caller
    config: WebhookConfig
    cursors: CursorCodec

    @property
    def tenant(self) -> str:
        return self.caller.tenant

    def _allow(self) -> None:
        require(self.caller.scopes, MANAGE_WEBHOOKS)

    async def create(
        self, url: str, events: list[EventType], description: str
    ) -> tuple[Endpoint, str]:
        self._allow()
        url = check_url(url, self.config.allow_private)
        wanted = check_events(events)
        description = check_description(description)
        endpoint_id = uuid.uuid4()
        secret = new_secret()
        with database_calls():
            if await store.count_endpoints(self.database, self.tenant) >= MAX_ENDPOINTS:
                raise InvalidInput("url", f"a tenant may have at most {MAX_ENDPOINTS} endpoints")
            endpoint = await store.create_endpoint(
                self.database,
                endpoint_id,
                self.tenant,
                url,
                description,
                wanted,
                self.config.box.seal(endpoint_id, secret),
            )
        return endpoint, secret

    async def endpoints(self) -> list[Endpoint]:
        self._allow()
        with database_calls():
            return await store.list_endpoints(self.database, self.tenant)

    async def get(self, endpoint_id: uuid.UUID) -> Endpoint:
        self._allow()
        with database_calls():
            found = await store.get_endpoint(self.database, self.tenant, endpoint_id)
        if found is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return found

    async def update(
        self,
        endpoint_id: uuid.UUID,
        enabled: bool | None,
        events: list[EventType] | None,
        description: str | None,
    ) -> Endpoint:
        self._allow()
        values: dict[str, object] = {}
        if enabled is not None:
            values["enabled"] = enabled
            # Enabled again: the reason it was off no longer holds.
            values["disabled_reason"] = None if enabled else "disabled by the tenant"
        if events is not None:
            values["events"] = encode_events(check_events(events))
        if description is not None:
            values["description"] = check_description(description)
        if not values:
            return await self.get(endpoint_id)
        with database_calls():
            found = await store.update_endpoint(self.database, self.tenant, endpoint_id, values)
        if found is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return found

    async def rotate_secret(self, endpoint_id: uuid.UUID) -> tuple[Endpoint, str]:
        self._allow()
        secret = new_secret()
        sealed = self.config.box.seal(endpoint_id, secret)
        with database_calls():
            found = await store.rotate_secret(
                self.database, self.tenant, endpoint_id, sealed, ROTATION_OVERLAP
            )
        if found is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return found, secret

    async def delete(self, endpoint_id: uuid.UUID) -> Endpoint:
        self._allow()
        with database_calls():
            found = await store.delete_endpoint(self.database, self.tenant, endpoint_id)
        if found is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return found

    async def deliveries(
        self, endpoint_id: uuid.UUID, first: int, after: str | None
    ) -> DeliveryPage:
        check_page_size(first)
        await self.get(endpoint_id)
        position = self.cursors.decode(self.tenant, after, "after") if after is not None else None
        with database_calls():
            return await store.list_deliveries(
                self.database, self.tenant, endpoint_id, first, position
            )

    def cursor(self, delivery: Delivery) -> str:
        return self.cursors.encode(self.tenant, delivery.seq)

    async def attempts(self, delivery: Delivery) -> list[Attempt]:
        self._allow()
        with database_calls():
            return await store.attempts_of(self.database, delivery.seq)

    async def redeliver(self, delivery_id: str) -> Delivery:
        self._allow()
        with database_calls():
            found = await store.redeliver(self.database, self.tenant, delivery_id)
        if found is None:
            raise NotFound(f"webhook delivery {delivery_id!r} not found")
        return found
