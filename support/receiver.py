"""A webhook receiver on 127.0.0.1 that verifies every call with `standardwebhooks`.

Each path (`/a`, `/b`...) is one endpoint with its own secret. A call whose signature
does not verify is answered 400 and counted in `rejected`; tests assert there are none.
`answers` holds the statuses (with an optional Retry-After) to give before answering
200, to play a receiver in trouble. Runs in the caller's event loop (uvicorn.Server);
`stop` and `start` again on the same port play it going down and coming back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from support.servers import free_port


@dataclass
class Call:
    path: str
    id: str
    payload: dict[str, Any]
    status: int
    # time.monotonic() at arrival.
    at: float
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    secrets: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self, path: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.status == 200 and path in (None, c.path)]

    async def _receive(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        secret = self.secrets.get(path)
        if secret is None:
            self.rejected.append(f"{path}: no such endpoint")
            return Response(status_code=404)
        try:
            Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.rejected.append(f"{path}: {exc}")
            return Response(status_code=400)
        status, retry_after = self.answers.pop(0) if self.answers else (200, None)
        self.calls.append(
            Call(
                path,
                request.headers["webhook-id"],
                orjson.loads(body),
                status,
                time.monotonic(),
                body,
                dict(request.headers),
            )
        )
        headers = {"retry-after": retry_after} if retry_after else None
        return Response(status_code=status, headers=headers)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/{name}", self._receive, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def wait_for(self, count: int, path: str | None = None, within: float = 30) -> list[Call]:
        """The accepted calls (to `path`), once there are at least `count`."""
        deadline = time.monotonic() + within
        while len(self.accepted(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.accepted(path))} of {count} calls to {path} after {within}s: "
                    f"{self.calls} rejected={self.rejected}"
                )
            await asyncio.sleep(0.02)
        return self.accepted(path)
