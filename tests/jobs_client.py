"""Drive a running gateway's jobs over GraphQL-over-HTTP, as workers and frontends do."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2 as httpx

from tests.jobs_data import CREATE, DELETE, INPUT, PROFILE, REPORT


class JobsClient:
    def __init__(self, http: httpx.AsyncClient, token: str | None = None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        """Run one mutation or query; its one field's value (asserting no errors)."""
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        value: dict[str, Any] = next(iter(body["data"].values()))
        return value

    async def create(
        self, video: str | None = None, inputs: list[str] | None = None
    ) -> dict[str, Any]:
        new = {"inputs": inputs or [INPUT], "profile": PROFILE, "video": video or str(uuid.uuid4())}
        return await self.graphql(CREATE, input=new)

    async def report(
        self, job: dict[str, Any], progress: int, status: str | None = None
    ) -> dict[str, Any]:
        return await self.graphql(REPORT, id=job["id"], progress=progress, status=status)

    async def delete(self, job: dict[str, Any]) -> dict[str, Any]:
        return await self.graphql(DELETE, id=job["id"])

    async def end(self, job: dict[str, Any], how: str) -> dict[str, Any]:
        """End a job: `COMPLETED` or `FAILED` (at 35%), or `deleted`."""
        if how == "deleted":
            return await self.delete(job)
        return await self.report(job, 35, how)
