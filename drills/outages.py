"""Outages, timed: how fast requests fail while PostgreSQL or Redis is down, and how soon
the gateway serves (and subscribers catch up) once it is back.

    .venv/bin/python -m drills.outages [--down 5] [--only postgresql|redis]

PostgreSQL: a cluster of this script's own (initdb in a temporary folder, a free
port) under one gateway. A client reads a job in a loop; the cluster is stopped
for --down seconds, then started. The table gives the answers seen while it was
down (all must be 503 UNAVAILABLE) with their latency, and the time from the
cluster accepting connections again to the gateway's first 200.

Redis: a server of its own under two gateways. A worker reports progress through
gateway A every 50 ms while a subscriber on gateway B follows the job; Redis is
killed for --down seconds, then started. The table gives the reports acknowledged
meanwhile, and the time from Redis answering again to B's subscriber showing the
job's current state.

Nothing shared is touched (not the servers at TEST_POSTGRES_URL or REDIS_URL);
everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as `python drills/outages.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2 as httpx
from websockets.asyncio.client import connect

from support.servers import start_server
from support.services import PostgresCluster, RedisServer

PROFILE = "2876db3d-ed16-4cf2-af82-98a383009e3c"
REPORT = (
    "mutation($id: UUID!, $progress: Int!) { updateJobProgress(id: $id, progress: $progress)"
    " { progress } }"
)
FOLLOW = "subscription($id: UUID!) { jobProgress(id: $id) { progress } }"
START_LIMIT = 120.0


def new_job() -> dict[str, object]:
    return {"inputs": [str(uuid.uuid4())], "profile": PROFILE, "video": str(uuid.uuid4())}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def postgresql_outage(down: float, folder: Path) -> list[tuple[str, str]]:
    cluster = PostgresCluster()
    cluster.create()
    cluster.start()
    server = await asyncio.to_thread(
        start_server, {"DATABASE_URL": cluster.url}, folder / "pg-gateway.log", (), START_LIMIT
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            job = (await http.post("/encoding/jobs", json=new_job())).json()
            seen: list[tuple[float, int, float]] = []  # (when, status, latency)
            back = float("inf")  # when the cluster accepts connections again
            recovered = asyncio.Event()

            async def reader() -> None:
                while not recovered.is_set():
                    started = time.monotonic()
                    response = await http.get(f"/encoding/jobs/{job['id']}")
                    seen.append((started, response.status_code, time.monotonic() - started))
                    if started > back and response.status_code == 200:
                        recovered.set()

            reading = asyncio.create_task(reader())
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.stop)
            stopped = time.monotonic()
            await asyncio.sleep(down)
            restarting = time.monotonic()
            await asyncio.to_thread(cluster.start)  # returns once it accepts connections
            back = time.monotonic()
            await reading
    finally:
        server.stop()
        cluster.remove()
    during = [(status, latency) for when, status, latency in seen if stopped < when < restarting]
    latencies = [latency for status, latency in during if status == 503]
    others = sorted({status for status, _ in during if status != 503})
    first_ok = min(when for when, status, _ in seen if when > restarting and status == 200)
    recovery = f"{ms(first_ok - back)} ms" if first_ok > back else "before pg_ctl start returned"
    return [
        ("PostgreSQL down for", f"{down:g} s"),
        ("requests while down", str(len(during))),
        ("  answered 503 UNAVAILABLE", str(len(latencies))),
        ("  answered otherwise", ", ".join(map(str, others)) or "none"),
        ("  503 latency ms p50 / p99 / max", " / ".join(ms(v) for v in _spread(latencies))),
        ("first 200 after it accepts connections", recovery),
    ]


async def redis_outage(down: float, folder: Path) -> list[tuple[str, str]]:
    redis = RedisServer()
    redis.start()
    env = {"DATABASE_URL": f"sqlite:///{folder}/redis-test.db", "BROADCAST_URL": redis.url}
    a = await asyncio.to_thread(start_server, env, folder / "a.log", (), START_LIMIT)
    b = await asyncio.to_thread(start_server, env, folder / "b.log", (), START_LIMIT)
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=60) as http:
            job = (await http.post("/encoding/jobs", json=new_job())).json()
            async with connect(
                b.ws_url,
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                proxy=None,
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                await ws.recv()
                payload = {"query": FOLLOW, "variables": {"id": job["id"]}}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                target = 10**9  # the progress the subscriber must come to show
                caught_up = asyncio.Event()

                async def watch() -> None:
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "next":
                            shown = message["payload"]["data"]["jobProgress"]["progress"]
                            if shown >= target:
                                caught_up.set()

                watching = asyncio.create_task(watch())
                acknowledged: list[tuple[float, int]] = []
                outage = [0.0, 0.0]
                progress = 0

                async def report_until(deadline: float) -> None:
                    nonlocal progress
                    while time.monotonic() < deadline and progress < 99:
                        progress += 1
                        body = {
                            "query": REPORT,
                            "variables": {"id": job["id"], "progress": progress},
                        }
                        response = await http.post("/graphql", json=body)
                        assert response.status_code == 200 and "errors" not in response.json()
                        acknowledged.append((time.monotonic(), progress))
                        await asyncio.sleep(0.05)

                await report_until(time.monotonic() + 1.0)
                redis.stop()
                outage[0] = time.monotonic()
                await report_until(outage[0] + down)
                target = progress
                await asyncio.to_thread(redis.start)  # returns once it answers PING
                outage[1] = time.monotonic()
                await caught_up.wait()
                outage.append(time.monotonic())
                watching.cancel()
    finally:
        for server in (a, b):
            server.stop()
        redis.stop()
    during = [p for when, p in acknowledged if outage[0] < when < outage[1]]
    return [
        ("Redis down for", f"{down:g} s"),
        ("reports acknowledged while down", str(len(during))),
        (
            "subscriber on the other process shows them",
            f"{ms(outage[2] - outage[1])} ms after Redis answers",
        ),
    ]


def _spread(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (0.0, 0.0, 0.0)
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)} | {value}" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", type=float, default=5.0, help="seconds each outage lasts")
    parser.add_argument("--only", choices=("postgresql", "redis"))
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-outages-") as tmp:
        folder = Path(tmp)
        if args.only != "redis":
            reason = PostgresCluster.skip_reason()
            rows += (
                [("PostgreSQL", f"skipped: {reason}")]
                if reason
                else asyncio.run(postgresql_outage(args.down, folder))
            )
        if args.only != "postgresql":
            reason = RedisServer.skip_reason()
            rows += (
                [("Redis", f"skipped: {reason}")]
                if reason
                else asyncio.run(redis_outage(args.down, folder))
            )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
