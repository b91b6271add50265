"""Soak: many subscribers and a steady mix of queries and reports, round after round.

    .venv/bin/python -m drills.soak [--subscribers 1000] [--rounds 5] [--round-seconds 60]
                                   [--rate 40] [--workers 4] [--jobs 50]
                                   [--database sqlite|postgresql] [--broadcast-url URL]

Starts the real gateway (`python -m app serve`) on a fresh SQLite file, or on a
fresh database on the PostgreSQL server at TEST_POSTGRES_URL, and, from this process, runs --rounds rounds of the same shape:

1. --subscribers WebSocket clients (graphql-transport-ws) connect, half following
   one job each (`jobProgress`), half watching one video (`jobUpdates`);
2. for --round-seconds, --rate operations a second from --workers concurrent
   clients (each reporting on jobs of its own, so reports never race): progress
   reports (a job reaching 100 completes, its followers get `complete` and follow a
   new job), job and list queries over GraphQL and REST;
3. every follower must end showing its job's stored state; then everyone
   disconnects, and once the server has no subscription left its memory (RSS, from
   /proc) and asyncio task count (/readyz) are read.

The starting memory is the RSS after the first round, not the fresh process's (shown
too). A fresh CPython process has not yet grown its allocator arenas, connection
pools and per-shape caches; the first wave of subscribers raises that high-water mark
and CPython and glibc keep most of it for the next wave (freed blocks are reused, not
returned). A leak grows with the work done after that; the rounds after the first do
the same work again, so their memory stays level where nothing leaks. (Once no
subscription is left the gateway collects and returns freed heap itself,
app/memory.py; the soak only reads /proc.)

It passes (exit status 0) with no error of any kind (non-2xx, GraphQL error, error
message, dropped socket, progress going backwards), memory after the last round
within 10% of the memory after the first, and no more tasks than after the first.
Each round prints a line as it goes; the tables show every figure. Everything runs
on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python drills/soak.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2 as httpx
from websockets.asyncio.client import ClientConnection, connect

from app.jobs.events import IDLE_DELAY
from support.servers import Server, rss_kib, start_server

PROFILE = "2876db3d-ed16-4cf2-af82-98a383009e3c"
FIELDS = "id statusCode progress video updatedAt deletedAt"
CREATE = f"mutation($input: CreateJobInput!) {{ createJob(input: $input) {{ {FIELDS} }} }}"
REPORT = (
    "mutation($id: UUID!, $progress: Int!, $status: JobStatus) {"
    f" updateJobProgress(id: $id, progress: $progress, status: $status) {{ {FIELDS} }} }}"
)
GET = f"query($id: UUID!) {{ job(id: $id) {{ {FIELDS} }} }}"
LIST = f"query {{ jobs(first: 20) {{ totalCount edges {{ node {{ {FIELDS} }} }} }} }}"
JOB_PROGRESS = f"subscription($id: UUID!) {{ jobProgress(id: $id) {{ {FIELDS} }} }}"
JOB_UPDATES = f"subscription($filter: JobFilter) {{ jobUpdates(filter: $filter) {{ {FIELDS} }} }}"
# Subscribers connecting at once (uvicorn's listen backlog is 2,048).
CONNECT_BATCH = 50
MEMORY_TOLERANCE = 0.10
# Seconds everything may take to settle (the last events to arrive, sockets to close).
SETTLE_LIMIT = 60.0
# Seconds to wait once the server has no subscription left before reading its memory:
# its last sockets close, and it runs its idle collection (IDLE_DELAY after the last
# subscription ended, see app/memory.py).
QUIET = IDLE_DELAY + 1.5


@dataclass
class Options:
    subscribers: int = 1000
    rounds: int = 5
    round_seconds: float = 60.0
    rate: float = 40.0
    workers: int = 4
    jobs: int = 50
    database_url: str | None = None
    broadcast_url: str = "memory://"
    seed: int = 0


@dataclass
class Round:
    """One round's figures; memory and tasks are read once everyone has left."""

    number: int
    connect_seconds: float = 0.0
    loaded: float = 0.0
    reports: int = 0
    queries: int = 0
    delivered: int = 0
    resubscribed: int = 0
    errors: int = 0
    subscriptions_peak: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    tasks_peak: int = 0
    tasks_after: int = 0


@dataclass
class Result:
    options: Options
    rounds: list[Round] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_fresh: int = 0
    tasks_fresh: int = 0

    @property
    def rss_baseline(self) -> int:
        """The starting memory: after the first round, once everyone has left."""
        return self.rounds[0].rss_after if self.rounds else 0

    @property
    def rss_end(self) -> int:
        return self.rounds[-1].rss_after if self.rounds else 0

    @property
    def tasks_baseline(self) -> int:
        return self.rounds[0].tasks_after if self.rounds else 0

    @property
    def tasks_end(self) -> int:
        return self.rounds[-1].tasks_after if self.rounds else 0

    @property
    def subscriptions_peak(self) -> int:
        return min((r.subscriptions_peak for r in self.rounds), default=0)

    @property
    def memory_back(self) -> bool:
        return self.rss_end <= self.rss_baseline * (1 + MEMORY_TOLERANCE)

    @property
    def complete(self) -> bool:
        return len(self.rounds) == self.options.rounds

    @property
    def passed(self) -> bool:
        return (
            self.complete
            and not self.errors
            and self.memory_back
            and self.tasks_end <= self.tasks_baseline
        )


class Gateway:
    """The HTTP side: reports and queries, each answer checked."""

    def __init__(self, http: httpx.AsyncClient, result: Result) -> None:
        self.http = http
        self.result = result

    async def graphql(self, query: str, **variables: Any) -> dict[str, Any] | None:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        body = response.json()
        if response.status_code != 200 or "errors" in body:
            self.result.errors.append(f"GraphQL {response.status_code}: {body}")
            return None
        value: dict[str, Any] = next(iter(body["data"].values()))
        return value

    async def create(self, video: str) -> dict[str, Any] | None:
        new = {"inputs": [str(uuid.uuid4())], "profile": PROFILE, "video": video}
        return await self.graphql(CREATE, input=new)

    async def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get("/readyz")).json()
        return body


class Subscriber:
    """One WebSocket connection with one subscription at a time."""

    def __init__(self, ws: ClientConnection, number: int) -> None:
        self.ws = ws
        self.number = number
        self.ops = itertools.count(1)
        self.op = ""
        self.following: str | None = None  # job id, for jobProgress
        self.last: dict[str, Any] | None = None
        self.seen: dict[str, int] = {}  # job id -> highest progress seen

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, query: str, **variables: Any) -> None:
        self.op = str(next(self.ops))
        payload = {"query": query, "variables": variables}
        await self.send({"id": self.op, "type": "subscribe", "payload": payload})


async def open_subscriber(url: str, number: int) -> Subscriber:
    ws = await connect(
        url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        compression=None,
        proxy=None,
        open_timeout=SETTLE_LIMIT,
    )
    subscriber = Subscriber(ws, number)
    await subscriber.send({"type": "connection_init", "payload": {}})
    ack = json.loads(await ws.recv())
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no connection_ack: {ack}")
    return subscriber


class Soak:
    def __init__(self, options: Options, server: Server, http: httpx.AsyncClient) -> None:
        self.options = options
        self.server = server
        self.result = Result(options)
        self.gateway = Gateway(http, self.result)
        self.rng = random.Random(options.seed)
        # Jobs in progress, one share per worker.
        self.shares: list[list[dict[str, Any]]] = [[] for _ in range(options.workers)]
        self.videos: list[str] = []
        self.stopping = False
        # The round under way, which the counters go to.
        self.current = Round(0)
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        """A progress line: a soak runs for minutes."""
        print(f"[{time.monotonic() - self.started:7.1f} s] {text}", flush=True)

    @property
    def live(self) -> list[dict[str, Any]]:
        return [job for share in self.shares for job in share]

    # -- subscribers -------------------------------------------------------------

    async def follow(self, subscriber: Subscriber) -> None:
        job = self.rng.choice(self.live)
        subscriber.following = job["id"]
        subscriber.last = None
        await subscriber.subscribe(JOB_PROGRESS, id=job["id"])

    async def listen(self, subscriber: Subscriber) -> None:
        """Check every message; follow a new job when the followed one completes."""
        errors = self.result.errors
        try:
            async for raw in subscriber.ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await subscriber.send({"type": "pong"})
                elif kind == "next" and message.get("id") == subscriber.op:
                    if "errors" in message["payload"]:
                        errors.append(f"subscriber {subscriber.number}: {message}")
                        continue
                    job = next(iter(message["payload"]["data"].values()))
                    self.current.delivered += 1
                    if job["progress"] < subscriber.seen.get(job["id"], 0):
                        errors.append(f"subscriber {subscriber.number}: progress went back {job}")
                    subscriber.seen[job["id"]] = job["progress"]
                    subscriber.last = job
                elif kind == "complete" and message.get("id") == subscriber.op:
                    if subscriber.following is None:
                        errors.append(f"subscriber {subscriber.number}: jobUpdates completed")
                    elif not self.stopping:
                        self.current.resubscribed += 1
                        await self.follow(subscriber)
                elif kind != "pong":
                    errors.append(f"subscriber {subscriber.number}: unexpected {message}")
        except Exception as exc:
            if not self.stopping:
                errors.append(f"subscriber {subscriber.number}: connection lost: {exc!r}")

    async def connect_all(self, count: int) -> tuple[list[Subscriber], list[asyncio.Task[None]]]:
        subscribers: list[Subscriber] = []
        for start in range(0, count, CONNECT_BATCH):
            batch = range(start, min(count, start + CONNECT_BATCH))
            subscribers.extend(
                await asyncio.gather(*(open_subscriber(self.server.ws_url, n) for n in batch))
            )
        listening = [asyncio.create_task(self.listen(s)) for s in subscribers]
        for subscriber in subscribers:
            if subscriber.number % 2 == 0:
                await self.follow(subscriber)
            else:
                video = self.videos[subscriber.number % len(self.videos)]
                await subscriber.subscribe(JOB_UPDATES, filter={"video": video})
        return subscribers, listening

    async def disconnect_all(
        self, subscribers: list[Subscriber], listening: list[asyncio.Task[None]]
    ) -> None:
        self.stopping = True
        await asyncio.gather(*(s.ws.close() for s in subscribers), return_exceptions=True)
        await asyncio.gather(*listening, return_exceptions=True)
        self.stopping = False

    # -- load ----------------------------------------------------------------------

    async def report(self, share: list[dict[str, Any]]) -> None:
        job = self.rng.choice(share)
        progress = min(100, job["progress"] + self.rng.randint(1, 20))
        status = "COMPLETED" if progress == 100 else None
        changed = await self.gateway.graphql(REPORT, id=job["id"], progress=progress, status=status)
        self.current.reports += 1
        if changed is None:
            return
        job.update(changed)
        if status:
            share.remove(job)
            created = await self.gateway.create(job["video"])
            if created is not None:
                share.append(created)

    async def query(self) -> None:
        roll = self.rng.random()
        if roll < 0.4:
            await self.gateway.graphql(GET, id=self.rng.choice(self.live)["id"])
        elif roll < 0.8:
            await self.gateway.graphql(LIST)
        else:
            response = await self.gateway.http.get("/encoding/jobs", params={"limit": "20"})
            if response.status_code != 200:
                self.result.errors.append(f"REST list {response.status_code}: {response.text}")
        self.current.queries += 1

    async def load(self, duration: float) -> None:
        """`rate` operations a second in all, from each worker one at a time."""
        started = time.monotonic()
        await asyncio.gather(*(self.work(share, started, duration) for share in self.shares))
        self.current.loaded += time.monotonic() - started

    async def work(self, share: list[dict[str, Any]], started: float, duration: float) -> None:
        interval = len(self.shares) / self.options.rate
        for n in itertools.count():
            now = time.monotonic()
            if now - started >= duration:
                return
            due = started + n * interval
            if due > now:
                await asyncio.sleep(due - now)
            await (self.report(share) if share and self.rng.random() < 0.6 else self.query())

    async def sample(self) -> None:
        pid = self.server.process.pid
        while True:
            ready = await self.gateway.ready()
            now = self.current
            now.rss_peak = max(now.rss_peak, rss_kib(pid))
            now.tasks_peak = max(now.tasks_peak, ready["tasks"])
            now.subscriptions_peak = max(now.subscriptions_peak, ready["subscriptions"])
            await asyncio.sleep(1.0)

    async def settled(self, subscribers: list[Subscriber]) -> None:
        """Wait until every follower shows its job's stored state, else record who does not."""
        deadline = time.monotonic() + SETTLE_LIMIT
        current = {job["id"]: job for job in self.live}
        while True:
            behind = [
                s
                for s in subscribers
                if s.following in current
                and (s.last is None or s.last["progress"] != current[s.following]["progress"])
            ]
            if not behind:
                return
            if time.monotonic() > deadline:
                self.result.errors.extend(
                    f"subscriber {s.number} shows {s.last}, the job is {current[s.following or '']}"
                    for s in behind[:10]
                )
                return
            await asyncio.sleep(0.1)

    async def idle(self) -> dict[str, Any]:
        deadline = time.monotonic() + SETTLE_LIMIT
        while True:
            ready = await self.gateway.ready()
            if ready["subscriptions"] == 0 or time.monotonic() > deadline:
                return ready
            await asyncio.sleep(0.1)

    # -- the run -------------------------------------------------------------------

    async def run(self) -> Result:
        result = self.result
        options = self.options
        pid = self.server.process.pid
        result.rss_fresh = rss_kib(pid)
        result.tasks_fresh = (await self.gateway.ready())["tasks"]
        self.say(
            f"gateway up (pid {pid}, RSS {mib(result.rss_fresh)} MiB); creating {options.jobs} jobs"
        )
        self.videos = [str(uuid.uuid4()) for _ in range(max(1, options.jobs // 2))]
        for n in range(options.jobs):
            created = await self.gateway.create(self.videos[n % len(self.videos)])
            if created is not None:
                self.shares[n % len(self.shares)].append(created)
        if not all(self.shares):
            raise RuntimeError(f"could not create the jobs to soak with: {result.errors[:1]}")
        for number in range(1, options.rounds + 1):
            await self.round(number)
            if result.errors:
                self.say(f"stopping after round {number}: {len(result.errors)} error(s)")
                break
        return result

    async def round(self, number: int) -> None:
        """Everyone connects, the load runs, everyone leaves; then memory and tasks."""
        options = self.options
        self.current = now = Round(number)
        self.result.rounds.append(now)
        errors_before = len(self.result.errors)
        what = "the first: its memory is the baseline" if number == 1 else "measured"
        self.say(
            f"round {number}/{options.rounds} ({what}): connecting {options.subscribers} subscribers"
        )
        connecting = time.monotonic()
        subscribers, listening = await self.connect_all(options.subscribers)
        now.connect_seconds = time.monotonic() - connecting
        sampling = asyncio.create_task(self.sample())
        self.say(
            f"round {number}: connected in {now.connect_seconds:.1f} s; "
            f"{options.rate:g} operations/s for {options.round_seconds:g} s"
        )
        try:
            await self.load(options.round_seconds)
            await self.settled(subscribers)
        finally:
            sampling.cancel()
        await self.disconnect_all(subscribers, listening)
        ready = await self.idle()
        if ready["subscriptions"]:
            self.result.errors.append(
                f"round {number}: {ready['subscriptions']} subscriptions left after all left"
            )
        await asyncio.sleep(QUIET)
        now.rss_after = rss_kib(self.server.process.pid)
        now.rss_peak = max(now.rss_peak, now.rss_after)
        now.tasks_after = (await self.gateway.ready())["tasks"]
        now.errors = len(self.result.errors) - errors_before
        self.say(
            f"round {number}: {now.reports} reports, {now.queries} queries, "
            f"{now.delivered} messages delivered, {now.errors} errors; everyone left: "
            f"RSS {mib(now.rss_after)} MiB (peak {mib(now.rss_peak)}), {now.tasks_after} tasks"
        )


async def soak(options: Options, folder: Path) -> Result:
    env = {
        "DATABASE_URL": options.database_url or f"sqlite:///{folder}/jobs.db",
        "BROADCAST_URL": options.broadcast_url,
    }
    server = await asyncio.to_thread(start_server, env, folder / "server.log", (), 120)
    try:
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            result = await Soak(options, server, http).run()
    finally:
        server.stop()
        log = (folder / "server.log").read_text()
        if "Traceback" in log:
            # The first one, which is usually the cause of the rest.
            start = log.index("Traceback")
            print(log[max(0, start - 300) : start + 3000], file=sys.stderr)
    if "Traceback" in log:
        result.errors.append(f"the server logged {log.count('Traceback')} traceback(s)")
    return result


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def change(kib: int, baseline: int) -> str:
    return f"{(kib - baseline) / baseline * 100:+.1f}%" if baseline else "-"


def table(result: Result) -> str:
    """One row per round, then the verdict with what it compares."""
    options = result.options
    head = (
        "round", "subscribers (server)", "connect s", "ops/s", "reports", "queries",
        "delivered", "re-subscribed", "errors", "RSS peak MiB", "RSS after MiB",
        "vs round 1", "tasks after",
    )  # fmt: skip
    rows = [
        (
            str(r.number),
            f"{options.subscribers} ({r.subscriptions_peak})",
            f"{r.connect_seconds:.1f}",
            f"{(r.reports + r.queries) / max(r.loaded, 1e-9):.1f}",
            str(r.reports),
            str(r.queries),
            str(r.delivered),
            str(r.resubscribed),
            str(r.errors),
            mib(r.rss_peak),
            mib(r.rss_after),
            change(r.rss_after, result.rss_baseline),
            str(r.tasks_after),
        )
        for r in result.rounds
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    summary = [
        ("RSS fresh process (before any work)", f"{mib(result.rss_fresh)} MiB"),
        ("RSS starting memory (after round 1)", f"{mib(result.rss_baseline)} MiB"),
        (
            f"RSS after round {len(result.rounds)} vs starting memory",
            f"{mib(result.rss_end)} MiB, {change(result.rss_end, result.rss_baseline)}"
            f" (limit +{MEMORY_TOLERANCE:.0%})",
        ),
        (
            "tasks: fresh, after round 1, at the end",
            f"{result.tasks_fresh}, {result.tasks_baseline}, {result.tasks_end}",
        ),
        ("errors", str(len(result.errors))),
        ("verdict", "PASS" if result.passed else "FAIL"),
    ]
    width = max(len(name) for name, _ in summary)
    return "\n".join(lines + [""] + [f"{name.ljust(width)} | {value}" for name, value in summary])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Options()
    parser.add_argument("--subscribers", type=int, default=defaults.subscribers)
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="at least 2")
    parser.add_argument(
        "--round-seconds", type=float, default=defaults.round_seconds, help="load per round"
    )
    parser.add_argument("--rate", type=float, default=defaults.rate, help="operations a second")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="load clients")
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="jobs in progress")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="a fresh SQLite file, or a fresh database on the server at TEST_POSTGRES_URL",
    )
    parser.add_argument(
        "--broadcast-url", default=defaults.broadcast_url, help="e.g. redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds: at least 2 (the first is the baseline)")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.subscribers + 200 > hard:
        parser.error(
            f"{args.subscribers:,} subscribers need more open files than allowed ({hard:,})"
        )
    admin = os.environ.get("TEST_POSTGRES_URL")
    if args.database == "postgresql" and not admin:
        parser.error("--database postgresql: set TEST_POSTGRES_URL (the server to create it on)")
    options = Options(
        subscribers=args.subscribers,
        rounds=args.rounds,
        round_seconds=args.round_seconds,
        rate=args.rate,
        workers=args.workers,
        jobs=args.jobs,
        broadcast_url=args.broadcast_url,
        seed=args.seed,
    )
    print(f"seed {args.seed}; {args.database}, broadcast {args.broadcast_url}")
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-soak-")))
        if args.database == "postgresql":
            from support.postgres import PostgresDatabases

            databases = PostgresDatabases(admin or "")
            stack.callback(databases.close)
            databases.start()
            options.database_url = databases.fresh()
        result = asyncio.run(soak(options, folder))
    print(table(result))
    for error in result.errors[:20]:
        print("ERROR:", error)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
