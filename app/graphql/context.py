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
from app.settings import Settings


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
        )

    def unauthenticated(self) -> Unauthenticated:
        """Why there is no caller, as a fresh error (its class says whether a token was sent)."""
        if self.auth_error is None:
            return Unauthenticated("authentication required")
        return type(self.auth_error)(self.auth_error.message)


Info: TypeAlias = StrawberryInfo[Context, None]
