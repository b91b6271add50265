"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from databases import Database
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from app.auth import Caller
from app.errors import Unauthenticated
from app.jobs.cursors import CursorCodec
from app.jobs.events import JobEvents
from app.jobs.service import Jobs
from app.jobs.store import DEFAULT_OUTBOX
from app.settings import Settings
from app.webhooks.outbox import Outbox
from app.webhooks.service import WebhookConfig, Webhooks


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket
    settings: Settings
    database: Database
    events: JobEvents
    cursors: CursorCodec
    # Who is calling; None with `auth_error` saying why when the token is missing or
    # bad. Over HTTP such a request is refused (401) before it runs unless it asks for
    # introspection only (app.graphql.http.refuse_unauthenticated); resolvers fail when
    # they reach for `jobs`, so nothing else can slip through.
    caller: Caller | None
    auth_error: Unauthenticated | None = None
    # What each job's `url` starts with: PUBLIC_URL, or where this request arrived
    # (app/urls.py).
    public_url: str = ""
    # The `connection_init` payload of a WebSocket connection (set by strawberry).
    connection_params: dict[str, Any] | None = None
    # Where job changes record their webhook deliveries (app.webhooks.outbox).
    outbox: Outbox = DEFAULT_OUTBOX
    webhook_config: WebhookConfig | None = None

    @property
    def jobs(self) -> Jobs:
        """The caller's jobs: their tenant only, their token's scopes only."""
        if self.caller is None:
            raise self.unauthenticated()
        return Jobs.for_caller(
            self.database,
            self.events,
            self.cursors,
            self.caller,
            key_ttl=self.settings.idempotency_key_ttl,
            outbox=self.outbox.at(self.public_url),
        )

    @property
    def webhooks(self) -> Webhooks:
        """The caller's tenant's webhook endpoints (scope `webhooks:manage`)."""
        if self.caller is None:
            raise self.unauthenticated()
        assert self.webhook_config is not None
        return Webhooks(self.database, self.caller, self.webhook_config, self.cursors)

    def unauthenticated(self) -> Unauthenticated:
        """Why there is no caller, as a fresh error (its class says whether a token was sent)."""
        if self.auth_error is None:
            return Unauthenticated("authentication required")
        return type(self.auth_error)(self.auth_error.message)


Info: TypeAlias = StrawberryInfo[Context, None]
