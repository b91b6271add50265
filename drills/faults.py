"""Fault drill: every committed change reaches every subscriber, whatever dies when.

    python -m drills.faults [--writers 32] [--subscribers 200] [--down 10] [--kills 3]

Starts, on 127.0.0.1 only, a PostgreSQL cluster and a Redis server of its own, a
gateway `serve --workers 3` (A: the writers' side) and a single-process gateway
(B: the subscribers' side). Writers report progress on their jobs through A, half
over REST (PATCH), half over GraphQL; every subscriber follows one job
(`jobProgress`) over WebSocket on B, the other process. Then, one at a time:

- sigstop:   one of A's workers paused for --stop seconds (under uvicorn's 5 s ping);
- redis:     Redis killed, back after --down seconds;
- postgres:  PostgreSQL stopped (fast), back after --down seconds;
- sigterm:   one of A's workers sent SIGTERM (uvicorn's supervisor replaces it);
- sigkill:   one of A's workers killed;
- commit-kill: --kills times, a process C with TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH
  finishes a job followed on B and exits between its commit and its publish.

After each fault it measures the recovery (A and B ready again and a probe report
through A seen by a subscriber on B), with no restart of anything. At the end the
writers finish their jobs, and it checks: no acknowledged write lost, every
subscriber still connected ends at its job's stored state (in order, nothing
repeated), no HTTP 500 or INTERNAL_SERVER_ERROR anywhere, each recovery under
--recovery-limit, the worst staleness after a commit-kill under the change feed's
bound, and B's memory back near where it started once the subscribers are gone.
It prints a results table (Markdown) and exits non-zero if any check failed.
Bounded in time by --limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from support import report
from support.servers import Server, start_server
from support.services import START_LIMIT, PostgresCluster, RedisServer

PROFILE = "2876db3d-ed16-4cf2-af82-98a383009e3c"
FIELDS = "id status progress updatedAt"
CREATE = f"mutation($input: CreateJobInput!) {{ createJob(input: $input) {{ {FIELDS} }} }}"
REPORT = (
    "mutation($id: UUID!, $progress: Int!, $status: JobStatus) {"
    f" updateJobProgress(id: $id, progress: $progress, status: $status) {{ {FIELDS} }} }}"
)
FOLLOW = f"subscription($id: UUID!) {{ jobProgress(id: $id) {{ {FIELDS} }} }}"
GET = f"query($id: UUID!) {{ job(id: $id) {{ {FIELDS} }} }}"
STATUS_NAMES = {0: "IN_PROGRESS", 1: "COMPLETED", 10: "FAILED"}
# Seconds one request may take (a paused worker holds its requests that long).
REQUEST_TIMEOUT = 15.0
# The change feed's promise (docs/reliability.md): 3 polls of 1 s, plus a busy machine's second.
STALENESS_BOUND = 4.0


@dataclass
class Tally:
    acked: int = 0
    unavailable: int = 0
    transport: int = 0
    internal: int = 0
    other: Counter[str] = field(default_factory=Counter)


@dataclass
class Follower:
    """One subscription on B, and every state it was sent."""

    job_id: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    errors: list[Any] = field(default_factory=list)
    closed: str | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


def key(state: dict[str, Any]) -> tuple[str, bool, int]:
    return (state["updatedAt"], state["status"] != "IN_PROGRESS", state["progress"])


class Drill:
    def __init__(self, args: argparse.Namespace, a: Server, b: Server, env: dict[str, str]):
        self.args = args
        self.a, self.b, self.env = a, b, env
        self.tally = Tally()
        self.acked: dict[str, dict[str, Any]] = {}
        self.jobs: list[str] = []
        self.followers: list[Follower] = []
        self.writing = asyncio.Event()
        self.results: list[dict[str, Any]] = []
        self.staleness: list[float] = []
        self.problems: list[str] = []
        self.http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT)

    # -- clients ---------------------------------------------------------------

    async def graphql(self, url: str, query: str, **variables: Any) -> dict[str, Any] | None:
        """One operation; its field's value, or None (counted) if it failed."""
        try:
            response = await self.http.post(
                url + "/graphql", json={"query": query, "variables": variables}
            )
        except httpx.TransportError:
            self.tally.transport += 1
            return None
        if response.status_code >= 500 and response.status_code != 503:
            self.tally.internal += 1
            return None
        body = response.json()
        codes = [error["extensions"]["code"] for error in body.get("errors") or ()]
        if codes:
            debug(f"{codes}: {body['errors'][0]['message']}")
            self._count(codes[0])
            return None
        if response.status_code == 503:
            self.tally.unavailable += 1
            return None
        value: dict[str, Any] = next(iter(body["data"].values()))
        return value

    async def rest_report(self, url: str, job_id: str, progress: int) -> dict[str, Any] | None:
        try:
            response = await self.http.patch(
                f"{url}/encoding/jobs/{job_id}", json={"progress": progress}
            )
        except httpx.TransportError:
            self.tally.transport += 1
            return None
        if response.status_code == 200:
            body = response.json()
            return {"progress": body["progress"], "status": STATUS_NAMES[body["status"]]}
        if response.status_code >= 500 and response.status_code != 503:
            self.tally.internal += 1
            return None
        try:
            self._count(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            self.tally.other[str(response.status_code)] += 1
        return None

    def _count(self, code: str) -> None:
        if code == "UNAVAILABLE":
            self.tally.unavailable += 1
        elif code == "INTERNAL_SERVER_ERROR":
            self.tally.internal += 1
        else:
            self.tally.other[code] += 1

    async def create(self) -> str:
        new = {"inputs": [str(uuid.uuid4())], "profile": PROFILE, "video": str(uuid.uuid4())}
        while True:
            job = await self.graphql(self.a.url, CREATE, input=new)
            if job is not None:
                self.acked[job["id"]] = job
                return str(job["id"])
            await asyncio.sleep(0.5)

    async def stored(self, job_id: str) -> dict[str, Any]:
        while True:
            job = await self.graphql(self.b.url, GET, id=job_id)
            if job is not None:
                return job
            await asyncio.sleep(0.5)

    # -- writers and subscribers ------------------------------------------------

    async def writer(self, index: int, job_ids: list[str]) -> None:
        rest = index % 2 == 0
        while self.writing.is_set():
            for job_id in job_ids:
                progress = min(self.acked[job_id]["progress"] + 1, 99)
                if rest:
                    done = await self.rest_report(self.a.url, job_id, progress)
                else:
                    done = await self.graphql(self.a.url, REPORT, id=job_id, progress=progress)
                if done is not None:
                    self.tally.acked += 1
                    self.acked[job_id] = {**self.acked[job_id], **done}
                await asyncio.sleep(self.args.pause)

    async def finish(self, job_id: str, url: str | None = None) -> None:
        """COMPLETED, acknowledged (or read back as applied when the answer was lost)."""
        while True:
            # 99: no report ever goes past it, so it never goes back on one.
            done = await self.graphql(
                url or self.a.url, REPORT, id=job_id, progress=99, status="COMPLETED"
            )
            if done is None:
                done = await self.stored(job_id)
            if done["status"] == "COMPLETED":
                self.acked[job_id] = {**self.acked[job_id], **done}
                self.tally.acked += 1
                return
            await asyncio.sleep(0.5)

    async def follow(self, follower: Follower, ready: asyncio.Event | None = None) -> None:
        try:
            async with connect(
                self.b.ws_url,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                proxy=None,
            ) as ws:
                await send(ws, {"type": "connection_init", "payload": {}})
                await receive(ws)  # connection_ack
                await send(
                    ws,
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": FOLLOW, "variables": {"id": follower.job_id}},
                    },
                )
                while True:
                    message = await receive(ws)
                    if message["type"] == "complete":
                        follower.completed = True
                        return
                    if message["type"] == "error" or message["payload"].get("errors"):
                        follower.errors.append(message["payload"])
                        return
                    follower.seen.append(message["payload"]["data"]["jobProgress"])
                    follower.arrived.set()
                    if ready is not None:
                        ready.set()
        except (ConnectionClosed, OSError) as exc:
            follower.closed = repr(exc)

    # -- faults ----------------------------------------------------------------

    def worker(self) -> int:
        workers = self.a.workers()
        if not workers:
            raise RuntimeError("gateway A has no workers")
        return workers[0]

    async def sigstop(self) -> None:
        pid = self.worker()
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(self.args.stop)
        os.kill(pid, signal.SIGCONT)

    async def redis_down(self) -> None:
        self.redis.stop()
        await asyncio.sleep(self.args.down)
        await asyncio.to_thread(self.redis.start)

    async def postgres_down(self) -> None:
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(self.args.down)
        await asyncio.to_thread(self.postgres.start)

    async def sigterm(self) -> None:
        await self.replaced(signal.SIGTERM)

    async def sigkill(self) -> None:
        await self.replaced(signal.SIGKILL)

    async def replaced(self, sent: signal.Signals) -> None:
        """Signal one of A's workers; return once uvicorn's supervisor has replaced it."""
        count, pid = len(self.a.workers()), self.worker()
        os.kill(pid, sent)
        while True:
            workers = self.a.workers()
            if pid not in workers and len(workers) == count:
                return
            await asyncio.sleep(0.05)

    async def commit_kill(self) -> None:
        """A finish committed by a process that dies before publishing it."""
        for kill in range(self.args.kills):
            c = await asyncio.to_thread(
                start_server,
                {**self.env, "TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH": "1"},
                Path(self.args.folder) / f"c{kill}.log",
                timeout=START_LIMIT,
            )
            job_id = await self.create()
            watching = [Follower(job_id) for _ in range(5)]
            self.followers.extend(watching)
            tasks = [asyncio.create_task(self.follow(f)) for f in watching]
            self.tasks.extend(tasks)
            for follower in watching:
                await follower.arrived.wait()
            await self.graphql(c.url, REPORT, id=job_id, progress=99, status="COMPLETED")
            died = time.monotonic()
            await asyncio.to_thread(c.process.wait, 60)
            if c.process.returncode != 70:
                self.problems.append(f"C exited with {c.process.returncode}, not the hook's 70")
            stored = await self.stored(job_id)
            if stored["status"] != "COMPLETED":
                self.problems.append(f"the commit-kill job is stored as {stored}")
            self.acked[job_id] = {**self.acked[job_id], **stored}
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            self.staleness.append(time.monotonic() - died)

    # -- recovery --------------------------------------------------------------

    async def recovered(self, probe: Follower) -> float:
        """Seconds until A and B are ready and a report through A reaches B."""
        started = time.monotonic()
        for gateway in (self.a, self.b):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    response = await self.http.get(gateway.url + "/readyz")
                    if response.status_code == 200:
                        break
                await asyncio.sleep(0.05)
        debug("ready")
        target = min(self.acked[probe.job_id]["progress"] + 1, 99)
        while True:
            done = await self.graphql(self.a.url, REPORT, id=probe.job_id, progress=target)
            if done is not None:
                self.acked[probe.job_id] = {**self.acked[probe.job_id], **done}
                break
            await asyncio.sleep(0.05)
        debug(f"probe reported {target}")
        while not probe.seen or probe.seen[-1]["progress"] < target:
            probe.arrived.clear()
            await probe.arrived.wait()
        return time.monotonic() - started

    # -- the drill -------------------------------------------------------------

    async def warm_up(self) -> None:
        """A wave of subscribers that come and go, so B's memory is measured warm (what
        its first subscribers build once and keep is not what a leak would leave)."""
        wave = [Follower(self.jobs[i % len(self.jobs)]) for i in range(self.args.subscribers)]
        tasks = [asyncio.create_task(self.follow(follower)) for follower in wave]
        await asyncio.wait_for(asyncio.gather(*(f.arrived.wait() for f in wave)), 120)
        for task in tasks:
            task.cancel()  # the client goes away, as a closed browser tab does
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(self.args.settle)

    async def run(self, redis: RedisServer, postgres: PostgresCluster) -> None:
        self.redis, self.postgres = redis, postgres
        self.tasks: list[asyncio.Task[None]] = []
        args = self.args
        self.jobs = [await self.create() for _ in range(args.writers * 2)]
        probe = Follower(await self.create())
        self.tasks.append(asyncio.create_task(self.follow(probe)))
        await self.warm_up()
        self.rss_start = self.b.total_rss_kib() * 1024
        for index in range(args.subscribers):
            follower = Follower(self.jobs[index % len(self.jobs)])
            self.followers.append(follower)
            self.tasks.append(asyncio.create_task(self.follow(follower)))
        await asyncio.wait_for(
            asyncio.gather(*(f.arrived.wait() for f in [probe, *self.followers])), 120
        )
        self.writing.set()
        writers = [
            asyncio.create_task(self.writer(i, self.jobs[2 * i : 2 * i + 2]))
            for i in range(args.writers)
        ]
        faults = {
            "sigstop": self.sigstop,
            "redis": self.redis_down,
            "postgres": self.postgres_down,
            "sigterm": self.sigterm,
            "sigkill": self.sigkill,
            "commit-kill": self.commit_kill,
        }
        for name, inject in faults.items():
            await asyncio.sleep(args.settle)
            before = Tally(**{**vars(self.tally), "other": Counter(self.tally.other)})
            started = time.monotonic()
            await inject()
            lifted = time.monotonic()
            recovery = await asyncio.wait_for(self.recovered(probe), args.recovery_limit * 3)
            self.results.append(
                {
                    "fault": name,
                    "seconds": lifted - started,
                    "recovery": recovery,
                    "acked": self.tally.acked - before.acked,
                    "unavailable": self.tally.unavailable - before.unavailable,
                    "transport": self.tally.transport - before.transport,
                    "internal": self.tally.internal - before.internal,
                }
            )
            print(f"  {name}: recovered in {recovery:.2f}s", flush=True)
        self.rss_peak = self.b.total_rss_kib() * 1024
        self.writing.clear()
        await asyncio.gather(*writers)
        # No acknowledged write lost: each job stores at least what was acknowledged.
        for job_id in self.jobs:
            stored = await self.stored(job_id)
            if stored["progress"] < self.acked[job_id]["progress"]:
                self.problems.append(f"job {job_id} lost a write: {stored} < {self.acked[job_id]}")
        await asyncio.gather(*(self.finish(job_id) for job_id in [*self.jobs, probe.job_id]))
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 60)
        await self.check([probe, *self.followers])
        await asyncio.sleep(args.settle)
        self.rss_end = self.b.total_rss_kib() * 1024

    async def check(self, followers: list[Follower]) -> None:
        stored = {job_id: await self.stored(job_id) for job_id in {f.job_id for f in followers}}
        self.deliveries = sum(len(f.seen) for f in followers)
        self.disorder = 0
        self.ended_stale = 0
        self.disconnected = 0
        for follower in followers:
            keys = [key(state) for state in follower.seen]
            self.disorder += sum(1 for x, y in itertools.pairwise(keys) if y <= x)
            if follower.closed or follower.errors:
                self.disconnected += 1
                self.problems.append(f"a subscriber was cut: {follower.closed or follower.errors}")
                continue
            last = follower.seen[-1] if follower.seen else None
            if not follower.completed or last != stored[follower.job_id]:
                self.ended_stale += 1
        if self.disorder:
            self.problems.append(f"{self.disorder} deliveries out of order or repeated")
        if self.ended_stale:
            self.problems.append(f"{self.ended_stale} subscribers did not end at the stored state")
        if self.tally.internal:
            self.problems.append(f"{self.tally.internal} internal errors (500)")
        if self.tally.other:
            self.problems.append(f"unexpected answers: {dict(self.tally.other)}")


def debug(text: str) -> None:
    if os.environ.get("DRILL_DEBUG"):
        print("   ", time.strftime("%H:%M:%S"), text, flush=True)


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == "ping":
            await send(ws, {"type": "pong"})
            continue
        if message["type"] == "pong":
            continue
        return message


def table(drill: Drill) -> str:
    headers = (
        *("fault", "lasted (s)", "recovery (s)", "writes acknowledged", "UNAVAILABLE"),
        *("transport errors", "500"),
    )
    rows = [
        (
            *(row["fault"], f"{row['seconds']:.1f}", f"{row['recovery']:.2f}"),
            *(f"{row['acked']:,}", f"{row['unavailable']:,}", f"{row['transport']:,}"),
            str(row["internal"]),
        )
        for row in drill.results
    ]
    lines = [report.table(headers, rows, right=range(1, len(headers)))]
    worst = max(drill.staleness) if drill.staleness else float("nan")
    lines += [
        "",
        f"- writes acknowledged: {drill.tally.acked:,}, lost: "
        f"{sum('lost a write' in p for p in drill.problems)}",
        f"- subscribers: {len(drill.followers) + 1}, deliveries: {drill.deliveries:,}, "
        f"out of order or repeated: {drill.disorder}, cut: {drill.disconnected}, "
        f"not ending at the stored state: {drill.ended_stale}",
        "- staleness after a kill between commit and publish: "
        + ", ".join(f"{s:.2f}" for s in drill.staleness)
        + f" s (worst {worst:.2f} s, bound {STALENESS_BOUND:g} s)",
        f"- B's memory: {drill.rss_start / 2**20:.0f} MB before the subscribers (warm), "
        f"{drill.rss_peak / 2**20:.0f} MB with them, {drill.rss_end / 2**20:.0f} MB after",
        f"- other answers: {dict(drill.tally.other) or 'none'}",
    ]
    return "\n".join(lines)


async def drill(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="jobs-drill-"))
    args.folder = str(folder)
    for service in (PostgresCluster, RedisServer):
        problem = service.skip_reason()
        if problem is not None:
            print(f"cannot run: {problem}", file=sys.stderr)
            return 2
    # Room for three workers' and two processes' pools, and the drill's own clients.
    postgres, redis = PostgresCluster(max_connections=100), RedisServer()
    gateways: list[Server] = []
    try:
        print(f"starting PostgreSQL, Redis and the gateways (logs in {folder})", flush=True)
        await asyncio.to_thread(postgres.create)
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(redis.start)
        env = {
            "DATABASE_URL": postgres.url,
            "BROADCAST_URL": redis.url,
            # Behind one load balancer, every process gives out the same URLs.
            "PUBLIC_URL": "https://jobs.example.test",
        }
        a = await asyncio.to_thread(
            start_server, env, folder / "a.log", ("--workers", "3"), START_LIMIT
        )
        gateways.append(a)
        b = await asyncio.to_thread(start_server, env, folder / "b.log", (), START_LIMIT)
        gateways.append(b)
        run = Drill(args, a, b, env)
        await asyncio.wait_for(run.run(redis, postgres), args.limit)
        for row in run.results:
            if row["recovery"] > args.recovery_limit:
                run.problems.append(f"{row['fault']}: recovery took {row['recovery']:.1f}s")
        if run.staleness and max(run.staleness) > STALENESS_BOUND:
            run.problems.append(f"staleness {max(run.staleness):.2f}s over {STALENESS_BOUND}s")
        grown = run.rss_end - run.rss_start
        if grown > max(0.25 * (run.rss_peak - run.rss_start), 8 * 2**20):
            run.problems.append(f"B's memory did not come back: {grown / 2**20:.0f} MB more")
        for gateway in gateways:
            if "Traceback" in gateway.log.read_text(errors="replace"):
                run.problems.append(f"a traceback in {gateway.log}")
        print(table(run))
        for problem in run.problems:
            print("FAILED:", problem)
        print("PASSED" if not run.problems else "FAILED", flush=True)
        await run.http.aclose()
        return 0 if not run.problems else 1
    finally:
        for gateway in gateways:
            gateway.stop(timeout=30)
        redis.stop()
        postgres.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between reports")
    parser.add_argument(
        "--down", type=float, default=10.0, help="seconds Redis/PostgreSQL are down"
    )
    parser.add_argument("--stop", type=float, default=3.0, help="seconds a worker is paused")
    parser.add_argument("--kills", type=int, default=3, help="kills between commit and publish")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--recovery-limit", type=float, default=10.0)
    parser.add_argument("--limit", type=float, default=600.0, help="seconds for the whole drill")
    args = parser.parse_args(argv)
    return asyncio.run(drill(args))


if __name__ == "__main__":
    sys.exit(main())
