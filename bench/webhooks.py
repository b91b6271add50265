"""What webhooks cost and how fast they go, through a real gateway process.

    python -m bench.webhooks [--jobs 400] [--clients 8] [--reports 300]

Per engine (SQLite; PostgreSQL on TEST_POSTGRES_URL's server when set), one gateway
(`python -m app serve`) and a fast receiver on 127.0.0.1 in this process that
verifies every call with `standardwebhooks`:

1. Deliveries: `--jobs` jobs created by `--clients` concurrent GraphQL clients, the
   tenant's endpoint wanting `job.created`. Deliveries/s is the jobs over the time
   from the first commit to the last arrival; commit-to-delivery is each call's
   arrival minus its job's `created_at` (taken just before the commit).
2. `updateJobProgress`: `--reports` reports one after another per tenant, each timed
   at the client, interleaved in rounds between three tenants of the same gateway:
   no endpoint, an endpoint for `job.completed` only, and one for `job.progress`
   (coalesced, WEBHOOK_PROGRESS_INTERVAL=10).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx

from app.auth import issue_token
from support.receiver import Receiver
from support.report import table
from support.servers import start_server

SECRET = "bench-Wq8rT2yU6iO0pA4sD7fG1hJ5kL9zX3cV"
SCOPES = ("jobs:read", "jobs:write", "jobs:report", "webhooks:manage")
CREATE = "mutation($i: CreateJobInput!) { createJob(input: $i) { id } }"
REPORT = "mutation($id: UUID!, $p: Int!) { updateJobProgress(id: $id, progress: $p) { progress } }"
ENDPOINT = (
    "mutation($url: String!, $events: [WebhookEventType!]!) {"
    " createWebhookEndpoint(url: $url, events: $events) { secret } }"
)
TENANTS = {"none": None, "completed only": "JOB_COMPLETED", "progress": "JOB_PROGRESS"}


class Client:
    def __init__(self, http: httpx.AsyncClient, tenant: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {issue_token(SECRET, tenant, SCOPES, 3600)}"}

    async def call(self, query: str, **variables: Any) -> Any:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )
        body = response.json()
        assert "errors" not in body, body
        return next(iter(body["data"].values()))

    async def create(self) -> str:
        new = {
            "inputs": [str(uuid.uuid4())],
            "profile": str(uuid.uuid4()),
            "video": str(uuid.uuid4()),
        }
        job: dict[str, str] = await self.call(CREATE, i=new)
        return job["id"]


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def deliveries(
    http: httpx.AsyncClient, receiver: Receiver, args: argparse.Namespace
) -> list[str]:
    client = Client(http, "deliveries")
    created = await client.call(ENDPOINT, url=receiver.url("/created"), events=["JOB_CREATED"])
    receiver.secrets["/created"] = created["secret"]
    per_client = args.jobs // args.clients

    async def creating() -> None:
        for _ in range(per_client):
            await client.create()

    await asyncio.gather(*(creating() for _ in range(args.clients)))
    total = per_client * args.clients
    calls = await receiver.wait_for(total, "/created", within=120)
    # Arrival in wall-clock time: the receiver noted monotonic time.
    offset = time.time() - time.monotonic()
    latency, commits = [], []
    for call in calls:
        commit = datetime.fromisoformat(call.payload["data"]["created_at"].replace("Z", "+00:00"))
        commits.append(commit.timestamp())
        latency.append((call.at + offset - commit.timestamp()) * 1000)
    span = max(call.at + offset for call in calls) - min(commits)
    return [
        f"{total / span:,.0f}",
        f"{statistics.median(latency):.1f}",
        f"{p(latency, 0.99):.1f}",
        str(len(receiver.calls) - total),
    ]


async def reports(
    http: httpx.AsyncClient, receiver: Receiver, args: argparse.Namespace
) -> dict[str, list[float]]:
    clients = {name: Client(http, f"reports-{index}") for index, name in enumerate(TENANTS)}
    for name, event in TENANTS.items():
        if event is not None:
            path = f"/{event.lower()}"
            made = await clients[name].call(ENDPOINT, url=receiver.url(path), events=[event])
            receiver.secrets[path] = made["secret"]
    jobs = {
        name: [await client.create() for _ in range(args.reports // 98 + 1)]
        for name, client in clients.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in TENANTS}
    rounds = 10
    for round_ in range(rounds):
        for name, client in clients.items():
            for index in range(args.reports // rounds):
                job = jobs[name][(round_ * (args.reports // rounds) + index) // 98]
                started = time.perf_counter()
                await client.call(REPORT, id=job, p=_next(job))
                timings[name].append((time.perf_counter() - started) * 1e6)
    return timings


_PROGRESS: dict[str, int] = {}


def _next(job: str) -> int:
    # Progress never goes down; 99 at most keeps the job IN_PROGRESS.
    _PROGRESS[job] = min(99, _PROGRESS.get(job, 0) + 1)
    return _PROGRESS[job]


async def run(
    engine: str, url: str, args: argparse.Namespace, folder: Path
) -> tuple[list[str], dict[str, list[float]]]:
    env = {
        "DATABASE_URL": url,
        "AUTH_JWT_SECRET": SECRET,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    }
    server = start_server(env, folder / f"{engine}.log", timeout=120)
    receiver = Receiver()
    await receiver.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            delivered = await deliveries(http, receiver, args)
            timed = await reports(http, receiver, args)
    finally:
        await receiver.stop()
        server.stop()
    assert receiver.rejected == [], receiver.rejected
    return delivered, timed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--reports", type=int, default=300)
    args = parser.parse_args()
    engines = {}
    with tempfile.TemporaryDirectory() as folder:
        engines["sqlite"] = f"sqlite:///{folder}/bench.db"
        postgres = os.environ.get("TEST_POSTGRES_URL")
        created = None
        if postgres:
            import asyncpg  # type: ignore[import-untyped]

            name = f"bench_webhooks_{os.getpid()}"
            admin = await asyncpg.connect(postgres)
            await admin.execute(f'CREATE DATABASE "{name}"')
            created = (admin, name)
            engines["postgresql"] = postgres.rsplit("/", 1)[0] + f"/{name}"
        delivery_rows, report_rows = [], []
        try:
            for engine, url in engines.items():
                delivered, timed = await run(engine, url, args, Path(folder))
                delivery_rows.append(
                    [engine, str(args.jobs // args.clients * args.clients), *delivered]
                )
                base = statistics.median(timed["none"])
                for name, values in timed.items():
                    median = statistics.median(values)
                    report_rows.append(
                        [
                            engine,
                            name,
                            f"{median:,.0f}",
                            f"{p(values, 0.99):,.0f}",
                            f"{median / base:.2f}x",
                        ]
                    )
        finally:
            if created is not None:
                admin, name = created
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    print(
        table(
            [
                "engine",
                "deliveries",
                "deliveries/s",
                "commit-to-delivery p50 ms",
                "p99 ms",
                "extra calls",
            ],
            delivery_rows,
            right={1, 2, 3, 4, 5},
        )
    )
    print()
    print(
        table(
            ["engine", "tenant's endpoints", "updateJobProgress median µs", "p99 µs", "vs none"],
            report_rows,
            right={2, 3, 4},
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
