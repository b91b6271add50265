"""The per-request GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from app.jobs.service import Jobs
from app.settings import Settings


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket
    settings: Settings
    jobs: Jobs


Info: TypeAlias = StrawberryInfo[Context, None]
