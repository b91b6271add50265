"""Subscription fan-out: the gateway's jobProgress beside a bare Starlette WebSocket broadcast.

    .venv/bin/python -m bench.subscriptions [--sizes 1000,5000,10000] [--updates 10]
                                            [--jobs 100] [--deflate both|on|off]
                                            [--scenarios "one job,many jobs,updates"]

For each N it starts, one at a time, the real gateway (uvicorn, open mode, a fresh
SQLite file; its subscribers on WebSocket, then again on graphql-sse: *gateway, SSE*,
each a POST with `Accept: text/event-stream` on a connection of its own) and two
bare Starlette apps (`bare_app` below: a set of sockets per job
and a loop of `send_text`), each one process pinned to core 0, and connects N
WebSocket clients from this process pinned to core 1 (a lean client: it counts
frames and timestamps them, so the client core is not what is measured).

Two scenarios per server:
- one job: N subscribers to one job; `--updates` progress reports, one after the
  other, each awaited until every subscriber has it;
- many jobs: N subscribers spread over `--jobs` jobs; each round reports on every
  job at once.
- updates (on request: `--scenarios updates`): as one job, but the gateway's
  subscribers send `jobUpdates` without a filter (a dashboard's open tabs); it says
  nothing until a change, so reports are made until each has heard one first.

A report is `updateJobProgress` over HTTP on the gateway (stored in SQLite, then
published). The bare servers are the yardsticks: *bare* is handed the `next`
message in a POST and relays it (no storage, the issue's reference); *bare, stored*
is POSTed the progress, stores it first as the gateway does (the same UPDATE on a
fresh SQLite file, through one reused `databases` connection: bench/baselines.py's
best bare route), then relays the row. Latency is
from sending the report to a subscriber's receiving it: the table gives p50 and p99
over every (subscriber, update) and the median time until the last subscriber had
an update. Memory is the server's RSS growth per subscription once all N are
subscribed, from a fresh process. Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/subscriptions.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.baselines import Reused, report_progress, routes
from support.report import table as markdown_table
from support.servers import free_port, pin, rss_kib

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE, CLIENT_CORE = 0, 1
# Connections opened at once while subscribing (uvicorn's listen backlog is 2,048).
CONNECTING_AT_ONCE = 200
# Seconds any one step may take before the run is called failed (and stops).
STEP_LIMIT = 120.0
FIELDS = "id status progress updatedAt"
SUBSCRIBE = f"subscription ($id: UUID!) {{ jobProgress(id: $id) {{ {FIELDS} }} }}"
UPDATES = f"subscription {{ jobUpdates {{ {FIELDS} }} }}"
REPORT = (
    "mutation ($id: UUID!, $progress: Int!) "
    f"{{ updateJobProgress(id: $id, progress: $progress) {{ {FIELDS} }} }}"
)
NEW_JOB = {
    "inputs": ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
    "profile": "2876db3d-ed16-4cf2-af82-98a383009e3c",
    "video": "62dcb602-e95b-483c-badf-9497914717a5",
}


# --- the bare baselines: a Starlette WebSocket broadcast --------------------------------

# The servers, in the order they run and the table shows them.
KINDS = {
    "bare": "bare",
    "stored": "bare, stored",
    "gateway": "gateway",
    "sse": "gateway, SSE",
}
# The kinds that are the gateway (over WebSocket, or over HTTP with graphql-sse).
GATEWAYS = ("gateway", "sse")


def bare_app(reused: Reused | None = None) -> Starlette:
    """Sockets per job; a POST sends a message to each socket of the job, in a loop.

    Without `reused` the POST's body is the message; with it, the body is the
    progress, which is stored first and the message made from the stored row.
    """
    sockets: dict[str, set[WebSocket]] = {}

    async def subscribe(websocket: WebSocket) -> None:
        job = websocket.query_params["job"]
        await websocket.accept()
        await websocket.send_text(job)  # "subscribed", as the gateway's first message
        sockets.setdefault(job, set()).add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sockets[job].discard(websocket)

    async def publish(request: Request) -> Response:
        job = request.path_params["job"]
        if reused is None:
            message = (await request.body()).decode()
        else:
            value = int((await request.json())["progress"])
            row = await reused.fetch_one(report_progress(uuid.UUID(job), value))
            if row is None:
                return Response(status_code=409)
            fields = row._mapping
            message = next_message(job, fields["progress"], fields["updated_at"])
        for websocket in list(sockets.get(job, ())):
            await websocket.send_text(message)
        return Response(status_code=204)

    return Starlette(
        routes=[
            WebSocketRoute("/ws", subscribe),
            Route("/publish/{job}", publish, methods=["POST"]),
            *(routes(reused) if reused is not None else ()),  # POST /jobs creates one
        ],
        lifespan=reused.lifespan if reused is not None else None,
    )


def bare_stored_app() -> Starlette:
    """`bare_app` storing each report first (the database from BENCH_DATABASE_URL)."""
    return bare_app(Reused())


# --- servers -------------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # one of KINDS
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def cpu_seconds(self) -> float:
        """Time the server's event loop thread has run on a CPU (ns precision)."""
        return int(Path(f"/proc/{self.process.pid}/schedstat").read_text().split()[0]) / 1e9

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(kind: str, deflate: bool, folder: Path) -> Server:
    port = free_port()
    target = {
        "gateway": ["app.main:app"],
        "sse": ["app.main:app"],
        "bare": ["bench.subscriptions:bare_app", "--factory"],
        "stored": ["bench.subscriptions:bare_stored_app", "--factory"],
    }[kind]
    command = [
        sys.executable, "-m", "uvicorn", *target,
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
        "--ws-per-message-deflate", "true" if deflate else "false",
    ]  # fmt: skip
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(SERVER_CORE), *command]
    database = f"sqlite:///{folder}/jobs-{port}.db"
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "BENCH_DATABASE_URL": database,
        "BROADCAST_URL": "memory://",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        # N subscribers on their own connections, past the default 10,000 at N=10,000.
        "MAX_WEBSOCKET_CONNECTIONS": "100000",
        "MAX_HTTP_STREAMS": "100000",
    }
    env.pop("AUTH_JWT_SECRET", None)
    if kind == "stored":  # the gateway's tables, on a file of its own
        subprocess.run(
            [sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    log = folder / f"{kind}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(kind, port, process, log)
    deadline = time.monotonic() + STEP_LIMIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{kind} did not start")


# --- a lean WebSocket client ---------------------------------------------------------


def frame(text: str) -> bytes:
    """A masked client text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    length = len(payload)
    header = (
        bytes([0x81, 0x80 | length])
        if length < 126
        else bytes([0x81, 0xFE]) + length.to_bytes(2, "big")
    )
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(
        (mask * (length // 4 + 1))[:length], "big"
    )
    return header + mask + masked.to_bytes(length, "big")


@dataclass
class Round:
    """One update's deliveries: when it was sent (per job) and when each client got it."""

    sent: dict[str, float] = field(default_factory=dict)
    arrived: list[float] = field(default_factory=list)
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Client(asyncio.Protocol):
    """One subscriber: the opening handshake and subscribe, then timestamps each frame."""

    def __init__(self, bench: Bench, job: str, check: bool) -> None:
        self.bench, self.job, self.check = bench, job, check
        self.buffer = bytearray()
        self.upgraded = False
        self.messages = 0
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inflate = zlib.decompressobj(-15) if check else None
        self.seen: list[str] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        path = "/graphql" if self.bench.kind == "gateway" else f"/ws?job={self.job}"
        lines = [
            f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{self.bench.port}",
            "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        ]  # fmt: skip
        if self.bench.kind == "gateway":
            lines.append("Sec-WebSocket-Protocol: graphql-transport-ws")
        if self.bench.deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"closed while subscribing: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.subscribed.set_exception(
                    ConnectionError(buffer[:200].decode(errors="replace"))
                )
                return
            del buffer[: end + 4]
            self.upgraded = True
            if self.bench.kind == "gateway":
                self.send('{"type":"connection_init","payload":{}}')
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            opcode = first & 0x0F
            payload = (
                bytes(buffer[start : start + length])
                if opcode >= 8 or self.check or not self.messages
                else b""
            )
            compressed = bool(first & 0x40)
            del buffer[: start + length]
            if opcode == 0x9:  # ping: answer, masked
                assert self.transport is not None
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif opcode in (0x1, 0x2):
                self.message(now, payload, compressed)

    def message(self, now: float, payload: bytes, compressed: bool) -> None:
        if self.check and compressed:
            assert self.inflate is not None
            payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
        self.messages += 1
        gateway = self.bench.kind == "gateway"
        if gateway and self.messages == 1:  # connection_ack
            operation = {"query": UPDATES} if self.bench.updates else {
                "query": SUBSCRIBE, "variables": {"id": self.job}}  # fmt: skip
            self.send(json.dumps({"id": "1", "type": "subscribe", "payload": operation}))
            if self.bench.updates:  # nothing comes until a change (see `measure`)
                self.subscribed.set_result(None)
            return
        if self.messages == (2 if gateway else 1) and not self.bench.updates:
            # the job now / "subscribed"
            self.subscribed.set_result(None)
            return
        if self.check:
            self.seen.append(payload.decode())
        self.bench.arrived(self.job, now)

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(frame(text))


class SSEClient(Client):
    """One subscriber over graphql-sse's distinct connections mode: a POST with
    `Accept: text/event-stream`, then the chunked response's `next` events."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        operation = {"query": UPDATES} if self.bench.updates else {
            "query": SUBSCRIBE, "variables": {"id": self.job}}  # fmt: skip
        body = json.dumps(operation).encode()
        transport.write(
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{self.bench.port}\r\n"
            "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.events = bytearray()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 200"):
                self.subscribed.set_exception(
                    ConnectionError(buffer[:200].decode(errors="replace"))
                )
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.messages = 1  # as a WebSocket's `connection_ack`: the snapshot is next
            if self.bench.updates:
                self.subscribed.set_result(None)
        while True:  # chunked transfer coding: "<size hex>\r\n<data>\r\n"
            line = buffer.find(b"\r\n")
            if line < 0:
                break
            size = int(buffer[:line], 16)
            if len(buffer) < line + 2 + size + 2:
                break
            self.events += buffer[line + 2 : line + 2 + size]
            del buffer[: line + 2 + size + 2]
        events = self.events
        while (end := events.find(b"\n\n")) >= 0:
            event = bytes(events[:end])
            del events[: end + 2]
            if not event.startswith(b"event: next"):
                continue
            self.messages += 1
            if self.messages == 2 and not self.bench.updates:
                self.subscribed.set_result(None)
                continue
            if self.check:
                payload = event.split(b"\ndata: ", 1)[1].decode()
                self.seen.append(f'{{"payload":{payload}}}')
            self.bench.arrived(self.job, now)


@dataclass
class Result:
    kind: str
    scenario: str
    n: int
    deflate: bool
    p50_ms: float
    p99_ms: float
    last_ms: float
    cpu_ms: float
    kib_per_subscription: float


class Bench:
    """N clients of one server; rounds of reports and their deliveries."""

    def __init__(self, server: Server, deflate: bool) -> None:
        self.kind, self.port, self.deflate = server.kind, server.port, deflate
        self.server = server
        self.clients: list[Client] = []
        self.round: Round | None = None
        # Subscribing to `jobUpdates` (the gateway in the updates scenario).
        self.updates = False

    def arrived(self, job: str, now: float) -> None:
        current = self.round
        if current is None:
            return
        current.arrived.append(now - current.sent[job])
        if len(current.arrived) == current.expected:
            current.done.set()

    async def connect(self, jobs: Sequence[str], n: int) -> None:
        loop = asyncio.get_running_loop()
        for start_at in range(0, n, CONNECTING_AT_ONCE):
            batch = []
            for index in range(start_at, min(n, start_at + CONNECTING_AT_ONCE)):
                kind = SSEClient if self.kind == "sse" else Client
                client = kind(self, jobs[index % len(jobs)], check=index % 997 == 0)
                batch.append(client)
                await loop.create_connection(lambda c=client: c, "127.0.0.1", self.port)  # type: ignore[misc]
            async with asyncio.timeout(STEP_LIMIT):
                await asyncio.gather(*(client.subscribed for client in batch))
            self.clients.extend(batch)

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
        self.clients.clear()


class Reporter:
    """Posts over keep-alive HTTP/1.1 connections of its own (one per report under way):
    a few bytes written and a response read, so the client core adds little."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> bytes:
        try:
            return await self._post(path, body)
        except (ConnectionResetError, asyncio.IncompleteReadError):
            # Now and then a connection is reset before it answers (it happens under
            # heavy load; the report did not get through): once more, on a new one.
            return await self._post(path, body, fresh=True)

    async def _post(self, path: str, body: bytes, fresh: bool = False) -> bytes:
        # uvicorn closes connections idle for 5 s: take a live one, or open one.
        while self.idle and self.idle[-1][0].at_eof():
            self.idle.pop()[1].close()
        if self.idle and not fresh:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        content = await reader.readexactly(length)
        self.idle.append((reader, writer))
        if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
            raise RuntimeError(f"{path}: {head[:40]!r} {content[:200]!r}")
        return content

    async def open(self, count: int) -> None:
        """Connect afresh and ahead, so no report waits for a connection."""
        self.close()
        for _ in range(count):
            self.idle.append(await asyncio.open_connection("127.0.0.1", self.server.port))

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def create_jobs(reporter: Reporter, count: int) -> list[str]:
    kind = reporter.server.kind
    if kind == "bare":
        return [str(uuid.uuid4()) for _ in range(count)]
    path = "/encoding/jobs" if kind in GATEWAYS else "/jobs"
    body = json.dumps(NEW_JOB).encode()
    return [json.loads(await reporter.post(path, body))["id"] for _ in range(count)]


def next_message(job: str, progress: int, updated: datetime | None = None) -> str:
    """What the gateway sends for a report (the bare servers send the same text)."""
    stamp = (
        updated.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if updated is not None
        else time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    )
    node = {"id": job, "status": "IN_PROGRESS", "progress": progress, "updatedAt": stamp}
    return json.dumps({"id": "1", "type": "next", "payload": {"data": {"jobProgress": node}}})


async def report(reporter: Reporter, job: str, progress: int) -> None:
    kind = reporter.server.kind
    if kind in GATEWAYS:
        body = {"query": REPORT, "variables": {"id": job, "progress": progress}}
        answer = await reporter.post("/graphql", json.dumps(body).encode())
        assert b'"errors"' not in answer, answer
    elif kind == "stored":
        await reporter.post(f"/publish/{job}", json.dumps({"progress": progress}).encode())
    else:
        await reporter.post(f"/publish/{job}", next_message(job, progress).encode())


async def measure(
    kind: str, scenario: str, n: int, deflate: bool, updates: int, job_count: int, folder: Path
) -> Result:
    server = start(kind, deflate, folder)
    bench = Bench(server, deflate)
    reporter = Reporter(server)
    try:
        jobs = await create_jobs(reporter, job_count if scenario == "many jobs" else 1)
        # Warm up (imports, caches, the first subscription and the first report: the
        # gateway's first mutation builds what later ones reuse, and with 10 reports a
        # run the p99 would be that one report's), then take the baseline.
        warm = Bench(server, deflate)
        await warm.connect(jobs[:1], 1)
        await report(reporter, jobs[0], 0)
        warm.close()
        await asyncio.sleep(0.5)
        before = server.rss_kib()
        bench.updates = scenario == "updates" and kind in GATEWAYS
        await bench.connect(jobs, n)
        first = 1
        while bench.updates and any(client.messages < 2 for client in bench.clients):
            await report(reporter, jobs[0], first)  # until each has heard one change
            first += 1
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)
        per_subscription = (server.rss_kib() - before) / n
        for client in bench.clients:
            client.seen.clear()

        await reporter.open(len(jobs))
        latencies: list[float] = []
        lasts: list[float] = []
        cpu_before = server.cpu_seconds()
        for progress in range(first, first + updates):
            current = Round(expected=n)
            bench.round = current

            async def send(job: str, progress: int = progress, round: Round = current) -> None:
                round.sent[job] = time.perf_counter()
                await report(reporter, job, progress)

            async with asyncio.timeout(STEP_LIMIT):
                await asyncio.gather(*(send(job) for job in jobs))
                await current.done.wait()
            bench.round = None
            latencies.extend(current.arrived)
            lasts.append(max(current.arrived))
        cpu_ms = 1000 * (server.cpu_seconds() - cpu_before) / updates
        for client in bench.clients:
            if client.check:
                progresses = [
                    next(iter(json.loads(text)["payload"]["data"].values()))["progress"]
                    for text in client.seen
                ]
                assert progresses == list(range(first, first + updates)), progresses
    except BaseException:
        print(f"{kind} failed; the end of its log:\n{server.log.read_text()[-3000:]}", flush=True)
        raise
    finally:
        reporter.close()
        bench.close()
        server.stop()
    latencies.sort()
    return Result(
        kind, scenario, n, deflate,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        last_ms=1000 * statistics.median(lasts),
        cpu_ms=cpu_ms,
        kib_per_subscription=per_subscription,
    )  # fmt: skip


def median_result(runs: list[Result]) -> Result:
    """The median of each measure over the rounds of one configuration."""
    first = runs[0]
    return Result(
        first.kind, first.scenario, first.n, first.deflate,
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        last_ms=statistics.median(r.last_ms for r in runs),
        cpu_ms=statistics.median(r.cpu_ms for r in runs),
        kib_per_subscription=statistics.median(r.kib_per_subscription for r in runs),
    )  # fmt: skip


def table(results: list[Result]) -> str:
    """Each row beside the bare broadcast and, where it ran, the bare server that stores."""
    yardsticks = [kind for kind in ("bare", "stored") if any(r.kind == kind for r in results)]
    by = {(r.kind, r.scenario, r.n, r.deflate): r for r in results}
    ratios = [f"{measure} vs {KINDS[kind]}" for measure in ("p99", "CPU") for kind in yardsticks]
    headers = [
        *("scenario", "N", "deflate", "server", "p50 ms", "p99 ms", "all have it, ms"),
        *("server CPU ms/update", "KiB/subscription", *ratios, "memory vs bare"),
    ]
    lines: list[list[str]] = []
    for r in results:
        bases = [by[(kind, r.scenario, r.n, r.deflate)] for kind in yardsticks]
        cells = [f"{r.p99_ms / base.p99_ms:.2f}" for base in bases]
        cells += [f"{r.cpu_ms / base.cpu_ms:.2f}" for base in bases]
        cells.append(f"{r.kib_per_subscription / bases[0].kib_per_subscription:.2f}")
        lines.append(
            [
                *(r.scenario, f"{r.n:,}", "on" if r.deflate else "off", KINDS[r.kind]),
                *(f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.last_ms:.1f}", f"{r.cpu_ms:.1f}"),
                *(f"{r.kib_per_subscription:.1f}", *cells),
            ]
        )
    numbers = {1, *range(4, len(headers))}
    return markdown_table(headers, lines, right=numbers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.subscriptions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="1000,5000,10000", help="numbers of subscribers")
    parser.add_argument("--updates", type=int, default=10, help="reports per scenario")
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the many-jobs scenario")
    parser.add_argument("--deflate", choices=("both", "on", "off"), default="both")
    parser.add_argument("--scenarios", default="one job,many jobs")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each server, alternating")
    parser.add_argument(
        "--servers",
        default=",".join(KINDS),
        help="of bare (the broadcast alone), stored (bare, storing each report first), "
        "gateway (WebSocket), sse (the gateway over graphql-sse)",
    )
    args = parser.parse_args(argv)

    sizes = [int(size) for size in args.sizes.split(",")]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(sizes) + 100 > hard:
        parser.error(
            f"{max(sizes):,} subscribers need more open files than this machine allows ({hard:,})"
        )
    pin({CLIENT_CORE})
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.deflate]
    servers = [kind for kind in KINDS if kind in args.servers.split(",")]
    if "bare" not in servers:
        parser.error("--servers: the bare broadcast is the yardstick: keep bare")
    print(
        f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"servers on core {SERVER_CORE}, clients on core {CLIENT_CORE}; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-subscriptions-") as folder:
        for deflate in modes:
            for scenario in args.scenarios.split(","):
                for n in sizes:
                    runs: dict[str, list[Result]] = {kind: [] for kind in servers}
                    # Rounds alternate the servers, so all see the same machine.
                    for _ in range(args.rounds):
                        for kind, measured in runs.items():
                            result = asyncio.run(
                                measure(
                                    kind,
                                    scenario,
                                    n,
                                    deflate,
                                    args.updates,
                                    args.jobs,
                                    Path(folder),
                                )
                            )
                            measured.append(result)
                            print(
                                f"{scenario}, N={n}, deflate {'on' if deflate else 'off'}, "
                                f"{kind}: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                                f"CPU {result.cpu_ms:.1f} ms/update, "
                                f"{result.kib_per_subscription:.1f} KiB/subscription",
                                flush=True,
                            )
                    results.extend(median_result(measured) for measured in runs.values())
    print()
    print(f"Medians of {args.rounds} round(s), {args.updates} updates each.")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
