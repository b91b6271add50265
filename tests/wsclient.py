"""A real GraphQL-over-WebSocket client for tests, speaking either subprotocol.

`graphql-transport-ws` (the current protocol) and the legacy `graphql-ws` name the
same steps differently; `GraphQLSocket` sends each protocol's own messages and
hands back the server's messages exactly as they arrived (keep-alives aside).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.jobs_data import JOB_FIELDS

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)

JOB_PROGRESS = f"subscription ($id: UUID!) {{ jobProgress(id: $id) {{ {JOB_FIELDS} }} }}"
JOB_UPDATES = (
    f"subscription ($filter: JobFilter) {{ jobUpdates(filter: $filter) {{ {JOB_FIELDS} }} }}"
)


class GraphQLSocket:
    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol

    @property
    def next_type(self) -> str:
        """The type of a result message: `next`, or `data` in the legacy protocol."""
        return "next" if self.protocol == TRANSPORT_WS else "data"

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        """The next message that is not a keep-alive (pings are answered)."""
        while True:
            message: dict[str, Any] = json.loads(await self.connection.recv())
            if message["type"] == "ka":
                continue
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        return await self.receive()

    async def subscribe(self, op: str, query: str, /, **variables: Any) -> None:
        """Start operation `op` (the protocol's operation id)."""
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": op, "type": kind, "payload": {"query": query, "variables": variables}}
        )

    async def stop(self, op: str) -> None:
        await self.send({"id": op, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})

    async def job(self, op: str) -> dict[str, Any]:
        """The next message, asserted to be a result of operation `op`; its job."""
        message = await self.receive()
        assert message["type"] == self.next_type and message["id"] == op, message
        assert "errors" not in message["payload"], message
        job: dict[str, Any] = next(iter(message["payload"]["data"].values()))
        return job

    async def until_complete(self, op: str) -> list[dict[str, Any]]:
        """The jobs operation `op` sends until its `complete`."""
        jobs: list[dict[str, Any]] = []
        while True:
            message = await self.receive()
            if message == {"id": op, "type": "complete"}:
                return jobs
            assert message["type"] == self.next_type and message["id"] == op, message
            jobs.append(next(iter(message["payload"]["data"].values())))


@asynccontextmanager
async def graphql_socket(
    url: str,
    protocol: str = TRANSPORT_WS,
    *,
    init: bool = True,
    payload: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[GraphQLSocket]:
    """A connection to `url` (ws://…/graphql), acknowledged unless `init=False`.

    `payload` goes in `connection_init` (e.g. `{"Authorization": "Bearer …"}`).
    """
    async with connect(
        url,
        subprotocols=[protocol],  # type: ignore[list-item]
        proxy=None,
        **options,
    ) as connection:
        assert connection.subprotocol == protocol
        client = GraphQLSocket(connection, protocol)
        if init:
            assert await client.init(payload) == {"type": "connection_ack"}
        yield client
