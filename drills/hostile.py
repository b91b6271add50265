"""Hostile input, one attack at a time, while a probe checks the gateway stays responsive.

    .venv/bin/python -m drills.hostile [--only NAME ...] [--scale 0.5] [--out FILE]

A gateway of its own (`python -m app serve`, AUTH_JWT_SECRET set, SQLite in a
temporary folder, pinned to core 0) is attacked from this process (core 1) with each
finding of the availability review, bounded in count and time; meanwhile another
process GETs /healthz every 50 ms. For each attack the table gives the probe's p50,
p99 and worst latency and its failures, and the server's RSS before, at its peak,
and after (waiting up to 15 s for it to come back within 10% of where it started).
It passes when every attack keeps the probe's p99 under 100 ms with no failure and
the RSS comes back. Everything runs on 127.0.0.1 and stops by itself (~3 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from app.auth import issue_token
from app.settings import Settings
from drills.probe import Probe, raised_file_limit
from support.report import table
from support.servers import Server, pin, start_server

SECRET = secrets.token_urlsafe(32)
P99_LIMIT_MS = 100.0
RSS_MARGIN = 0.10
SETTLE_SECONDS = 15.0


@dataclass
class Target:
    gateway: Server
    token: str
    scale: float

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def n(self, count: int) -> int:
        return max(1, int(count * self.scale))


Attack = Callable[[Target], Awaitable[str]]
ATTACKS: dict[str, tuple[str, Attack]] = {}


def attack(name: str, finding: str) -> Callable[[Attack], Attack]:
    def register(function: Attack) -> Attack:
        ATTACKS[name] = (finding, function)
        return function

    return register


# Requests a second each attacking client sends at most. The findings are about what one
# request costs; a flood of cheap requests is rate limiting's to stop (a proxy's, as
# docs/limits.md says), and would hold up the probe on any server.
RATE = 10.0


async def _repeat(seconds: float, clients: int, one: Callable[[], Awaitable[object]]) -> int:
    """Run `one` from `clients` concurrent loops for `seconds`, each at most RATE a
    second (at once again when an answer took longer); count runs."""
    deadline = time.monotonic() + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            began = time.monotonic()
            await one()
            done += 1
            await asyncio.sleep(max(0.0, 1 / RATE - (time.monotonic() - began)))

    await asyncio.gather(*(loop() for _ in range(clients)))
    return done


def _answers(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} x{value}" for key, value in sorted(counts.items()))


async def _graphql_posts(
    target: Target, seconds: float, clients: int, document: Callable[[], str], get: bool = False
) -> str:
    seen: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=target.gateway.url, timeout=60) as client:

        async def one() -> None:
            query = document()
            try:
                if get:
                    response = await client.get("/graphql", params={"query": query})
                else:
                    response = await client.post("/graphql", json={"query": query})
                codes = {
                    str((e.get("extensions") or {}).get("code"))
                    for e in response.json().get("errors") or []
                }
                key = f"{response.status_code} {'/'.join(sorted(codes)) or 'ok'}"
            except (httpx.HTTPError, ValueError) as exc:
                key = type(exc).__name__
            seen[key] = seen.get(key, 0) + 1

        await _repeat(seconds, clients, one)
    return _answers(seen)


# --- 1, 13, 6: documents that cost work to check -------------------------------------------


def fragment_bomb(levels: int) -> str:
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    return "{ ...F0 } " + " ".join(fragments) + f" fragment F{levels} on Query {{ __typename }}"


@attack("fragment-bomb", "1")
async def _fragment_bomb(target: Target) -> str:
    post = await _graphql_posts(target, 4, 4, lambda: fragment_bomb(60))
    get = await _graphql_posts(target, 2, 4, lambda: fragment_bomb(60), get=True)
    return f"POST: {post}; GET: {get}"


@attack("deep-introspection", "13")
async def _deep_introspection(target: Target) -> str:
    def chain(depth: int) -> str:
        return "{ __schema { types { " + "ofType { " * depth + "name" + " }" * depth + " } } }"

    shallow = await _graphql_posts(target, 2, 4, lambda: chain(100))
    deep = await _graphql_posts(target, 2, 4, lambda: chain(700))
    return f"100 deep: {shallow}; 700 deep: {deep}"


@attack("duplicate-fields", "6")
async def _duplicate_fields(target: Target) -> str:
    # Unique documents (no cache helps) just under the token cap, 4 clients at 5/s each.
    fields = Settings().max_query_tokens - 10

    def document() -> str:
        return "{ " + f"a{random.getrandbits(32)}: __typename " + "__typename " * fields + "}"

    seen: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=target.gateway.url, timeout=60) as client:

        async def client_loop() -> None:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = await client.post("/graphql", json={"query": document()})
                errors = response.json().get("errors") or []
                key = (
                    f"{response.status_code} {errors[0]['extensions']['code'] if errors else 'ok'}"
                )
                seen[key] = seen.get(key, 0) + 1
                await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - started)))

        await asyncio.gather(*(client_loop() for _ in range(4)))
    return _answers(seen)


# --- 3: memory held by large documents -------------------------------------------------------


@attack("large-documents", "3")
async def _large_documents(target: Target) -> str:
    counter = iter(range(10**9))

    def document() -> str:
        # A ~1 MB unique document: a big string literal (under MAX_BODY_BYTES once JSON-encoded).
        return f'{{ job(id: "{next(counter)}{"x" * 1_000_000}") {{ id }} }}'

    seen: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=target.gateway.url, timeout=60) as client:
        total = target.n(300)
        remaining = iter(range(total))

        async def loop() -> None:
            for _ in remaining:
                began = time.monotonic()
                response = await client.post("/graphql", json={"query": document()})
                errors = response.json().get("errors") or [{}]
                key = f"{response.status_code} {(errors[0].get('extensions') or {}).get('code', 'ok')}"
                seen[key] = seen.get(key, 0) + 1
                await asyncio.sleep(max(0.0, 1 / RATE - (time.monotonic() - began)))

        await asyncio.gather(*(loop() for _ in range(4)))
    return f"{total} documents: {_answers(seen)}"


# --- WebSocket frames by hand (2, 4, 7, 11) ----------------------------------------------------


async def raw_websocket(
    target: Target, protocol: str = "graphql-transport-ws"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """Open a WebSocket by hand; return the stream and the answer's status code."""
    reader, writer = await asyncio.open_connection(target.host, target.gateway.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{target.gateway.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    return reader, writer, int(head.split(b" ", 2)[1])


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (payloads under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 5)


@attack("ping-flood", "4")
async def _ping_flood(target: Target) -> str:
    """Pings from clients that never read the pongs."""
    ping = frame(0x9, b"x" * 125) * 512  # ~66 KB a write
    per_connection = target.n(100_000_000)
    outcomes: dict[str, int] = {}

    async def flood() -> None:
        _, writer, status = await raw_websocket(target)
        sent = 0
        deadline = time.monotonic() + 10
        try:
            while sent < per_connection and time.monotonic() < deadline:
                writer.write(ping)
                await asyncio.wait_for(writer.drain(), 10)
                sent += len(ping)
            outcome = f"{status}, sent {sent // 1_000_000} MB"
        except (OSError, TimeoutError) as exc:
            outcome = f"{status}, cut after {sent // 1_000_000} MB ({type(exc).__name__})"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await _close(writer)

    await _repeat(4, 4, flood)  # a flooding client is cut within milliseconds: again
    return _answers(outcomes)


@attack("continuation-frames", "4")
async def _continuation_frames(target: Target) -> str:
    """One message as 1-byte fragments, never finished."""
    batch = frame(0x0, b"x", fin=False) * 10_000
    per_connection = target.n(1_200_000)
    outcomes: dict[str, int] = {}

    async def fragments() -> None:
        _, writer, status = await raw_websocket(target)
        writer.write(frame(0x1, b"{", fin=False))
        sent = 1
        deadline = time.monotonic() + 15
        try:
            while sent < per_connection and time.monotonic() < deadline:
                writer.write(batch)
                await asyncio.wait_for(writer.drain(), 10)
                sent += 10_000
            await asyncio.sleep(1)
            outcome = f"{status}, {sent // 1000}k fragments, still open"
        except (OSError, TimeoutError) as exc:
            outcome = f"{status}, cut after {sent // 1000}k fragments ({type(exc).__name__})"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await _close(writer)

    await asyncio.gather(*(fragments() for _ in range(4)))
    return _answers(outcomes)


async def _hold_connections(target: Target, count: int, protocol: str, hold: float) -> str:
    statuses: dict[str, int] = {}
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        try:
            _, writer, status = await raw_websocket(target, protocol)
            writers.append(writer)
            key = str(status)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            key = type(exc).__name__
        statuses[key] = statuses.get(key, 0) + 1

    for start in range(0, count, 200):  # open them in waves, as a flood from one host would
        await asyncio.gather(*(one() for _ in range(min(200, count - start))))
    await asyncio.sleep(hold)
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.5)
    return f"{count} opened: {_answers(statuses)}"


@attack("idle-connections", "4, 7")
async def _idle_connections(target: Target) -> str:
    legacy = await _hold_connections(target, target.n(1500), "graphql-ws", 5)
    current = await _hold_connections(target, target.n(1500), "graphql-transport-ws", 5)
    return f"graphql-ws {legacy}; graphql-transport-ws {current}"


@attack("legacy-reinit", "2")
async def _legacy_reinit(target: Target) -> str:
    init = json.dumps(
        {"type": "connection_init", "payload": {"Authorization": f"Bearer {target.token}"}}
    )
    outcomes: dict[str, int] = {}

    async def reinit() -> None:
        sent = 0
        try:
            async with connect(target.gateway.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
                for _ in range(target.n(10_000)):
                    await ws.send(init)
                    sent += 1
                await asyncio.sleep(0.5)
                await ws.ping()
            outcome = "all sent, still open"
        except WebSocketException as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            outcome = f"closed {code}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(reinit() for _ in range(4)))
    return _answers(outcomes)


MALFORMED = [
    "[]",
    "42",
    '"text"',
    "{}",
    '{"type": 5}',
    '{"type": "subscribe", "id": 5, "payload": {"query": "subscription { jobUpdates { id } }"}}',
    '{"type": "subscribe", "id": "a"}',
    '{"type": "subscribe", "id": "a", "payload": {"query": "{ __typename }", "variables": []}}',
    '{"type": "start", "id": "a"}',
    '{"type": "start", "id": "a", "payload": {"query": 7}}',
    '{"type": "start", "id": "a", "payload": {"query": "subscription { jobUpdates { id } }", "variables": []}}',
    '{"type": "stop"}',
    '{"type": "connection_init", "payload": []}',
]


@attack("malformed-messages", "11")
async def _malformed_messages(target: Target) -> str:
    init = json.dumps(
        {"type": "connection_init", "payload": {"Authorization": f"Bearer {target.token}"}}
    )
    outcomes: dict[str, int] = {}

    async def one(protocol: str, message: str, after_init: bool) -> None:
        try:
            async with connect(target.gateway.ws_url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
                if after_init:
                    await ws.send(init)
                    await asyncio.wait_for(ws.recv(), 10)
                await ws.send(message)
                answer = await asyncio.wait_for(ws.recv(), 2)
                kind = json.loads(answer).get("type", "?")
                key = f"{kind}"
        except TimeoutError:
            key = "no answer"
        except WebSocketException as exc:
            key = f"closed {getattr(getattr(exc, 'rcvd', None), 'code', None)}"
        outcomes[key] = outcomes.get(key, 0) + 1

    for _ in range(target.n(20)):
        await asyncio.gather(
            *(
                one(protocol, message, after_init)
                for protocol in ("graphql-transport-ws", "graphql-ws")
                for message in MALFORMED
                for after_init in (False, True)
            )
        )
    log = target.gateway.log.read_text(errors="replace")
    tracebacks = log.count("Traceback")
    return f"{_answers(outcomes)}; tracebacks in the log: {tracebacks}"


# --- 5: HTTP transport -----------------------------------------------------------------------


@attack("header-flood", "5")
async def _header_flood(target: Target) -> str:
    """An unterminated header line, as long as the server will read; again and again
    for a few seconds from four clients (one is cut within milliseconds)."""
    outcomes: dict[str, int] = {}
    chunk = b"a" * 65536

    async def flood() -> None:
        reader, writer = await asyncio.open_connection(target.host, target.gateway.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < target.n(128 * 2**20):
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 10)
                sent += len(chunk)
            writer.write(b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(200), 10)
            outcome = f"sent {sent >> 20} MiB, answered {answer[:12]!r}"
        except (OSError, TimeoutError) as exc:
            answer = b""
            with contextlib.suppress(Exception):
                answer = await asyncio.wait_for(reader.read(200), 1)
            said = repr(answer[:12]) if answer else type(exc).__name__
            outcome = f"cut after {sent >> 20} MiB ({said})"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await _close(writer)

    await _repeat(4, 4, flood)
    return _answers(outcomes)


@attack("slow-requests", "5")
async def _slow_requests(target: Target) -> str:
    """Connections that send a request a few bytes at a time (slowloris): headers, bodies."""
    count = target.n(1000)
    writers: list[tuple[str, asyncio.StreamWriter]] = []

    async def open_one(kind: str) -> None:
        try:
            _, writer = await asyncio.open_connection(target.host, target.gateway.port)
        except OSError:
            return
        if kind == "headers":
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        else:
            writer.write(
                b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
            )
        writers.append((kind, writer))

    for start in range(0, count, 200):
        await asyncio.gather(
            *(open_one("headers" if i % 2 else "body") for i in range(min(200, count - start)))
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for kind, writer in writers:
            if not writer.transport.is_closing():
                with contextlib.suppress(OSError):
                    writer.write(b"X-A: b\r\n" if kind == "headers" else b" ")
        await asyncio.sleep(2)
    open_after: dict[str, int] = {}
    for kind, writer in writers:
        # A closed connection shows as EOF on read.
        reader_closed = writer.transport.is_closing()
        with contextlib.suppress(OSError):
            writer.write(b"X")
            await writer.drain()
        if not reader_closed and not writer.transport.is_closing():
            open_after[kind] = open_after.get(kind, 0) + 1
    for _, writer in writers:
        writer.close()
    return (
        f"{len(writers)} opened; after 20 s still open: "
        f"{_answers(open_after) or 'none'} (a proxy's client_header/body_timeout ends these)"
    )


# --- running them ----------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    finding: str
    p50: float
    p99: float
    worst: float
    probes: int
    failures: int
    rss_start: float
    rss_peak: float
    rss_after: float
    settle: float | None
    note: str

    @property
    def passed(self) -> bool:
        return (
            self.probes > 0
            and self.p99 < P99_LIMIT_MS
            and self.failures == 0
            and self.settle is not None
        )


async def _watch_rss(gateway: Server, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError, RuntimeError):
            peak[0] = max(peak[0], gateway.rss_kib() / 1024)
        await asyncio.sleep(0.1)


async def warm_up(target: Target) -> None:
    """What a gateway in service has done before an attack: jobs created, read, listed
    and reported on over GraphQL and REST, GraphiQL's schema query, subscriptions that
    ended. The RSS to come back to is the one after this, not a cold start's."""
    headers = {"authorization": f"Bearer {target.token}"}
    job = {"inputs": [str(uuid.uuid4())], "profile": str(uuid.uuid4()), "video": str(uuid.uuid4())}
    async with httpx.AsyncClient(base_url=target.gateway.url, headers=headers, timeout=60) as http:
        ids = []
        for _ in range(50):
            created = (await http.post("/encoding/jobs", json=job)).json()
            ids.append(created["id"])
            await http.get(f"/encoding/jobs/{created['id']}")
            await http.patch(f"/encoding/jobs/{created['id']}", json={"progress": 10})
            await http.post(
                "/graphql",
                json={
                    "query": "{ jobs(first: 50) { edges { cursor node { id progress status } } } }"
                },
            )
            await http.post(
                "/graphql", json={"query": f'{{ job(id: "{created["id"]}") {{ id url inputs }} }}'}
            )
        await http.post("/graphql", json={"query": INTROSPECTION})
        for protocol in ("graphql-transport-ws", "graphql-ws"):
            async with connect(target.gateway.ws_url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
                await ws.send(
                    json.dumps(
                        {
                            "type": "connection_init",
                            "payload": headers | {"Authorization": headers["authorization"]},
                        }
                    )
                )
                await ws.recv()
                kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
                for n, job_id in enumerate(ids[:10]):
                    query = (
                        f'subscription {{ jobProgress(id: "{job_id}") {{ id progress status }} }}'
                    )
                    await ws.send(
                        json.dumps({"type": kind, "id": str(n), "payload": {"query": query}})
                    )
                await asyncio.sleep(0.2)
        for job_id in ids:
            await http.patch(f"/encoding/jobs/{job_id}", json={"status": 1})


INTROSPECTION = (
    "query { __schema { types { name kind fields { name args { name type { name kind "
    "ofType { name kind ofType { name kind } } } } type { name kind ofType { name kind "
    "ofType { name kind } } } } } } }"
)


async def run_attack(target: Target, probe: Probe, name: str) -> Outcome:
    finding, function = ATTACKS[name]
    gateway = target.gateway
    await warm_up(target)
    await asyncio.sleep(1)
    rss_start = gateway.rss_kib() / 1024
    peak = [rss_start]
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_rss(gateway, peak, stop))
    started = time.monotonic()
    try:
        note = await asyncio.wait_for(function(target), 120)
    except Exception as exc:  # the drill reports what it saw, whatever it was
        note = f"attack stopped: {type(exc).__name__}: {exc}"[:200]
    ended = time.monotonic()
    # The probe's requests under way during the attack, once the server has answered one
    # begun after it: what the attack held up has finished by then.
    stats = await asyncio.to_thread(probe.between, started, ended)
    settle: float | None = None
    while True:
        rss_after = gateway.rss_kib() / 1024
        if rss_after <= rss_start * (1 + RSS_MARGIN):
            settle = time.monotonic() - ended
            break
        if time.monotonic() - ended > SETTLE_SECONDS:
            break
        await asyncio.sleep(0.25)
    stop.set()
    await watcher
    return Outcome(
        name=name,
        finding=finding,
        p50=stats.p50_ms,
        p99=stats.p99_ms,
        worst=stats.max_ms,
        probes=stats.count,
        failures=stats.failures,
        rss_start=rss_start,
        rss_peak=peak[0],
        rss_after=rss_after,
        settle=settle,
        note=note,
    )


def report(outcomes: list[Outcome]) -> str:
    rows = [
        [
            o.name,
            o.finding,
            f"{o.p50:.1f}",
            f"{o.p99:.1f}",
            f"{o.worst:.0f}",
            f"{o.failures}/{o.probes}",
            f"{o.rss_start:.0f}",
            f"{o.rss_peak:.0f}",
            f"{o.rss_after:.0f}",
            "-" if o.settle is None else f"{o.settle:.1f}",
            "pass" if o.passed else "FAIL",
        ]
        for o in outcomes
    ]
    headers = [
        "attack", "finding", "probe p50 ms", "p99 ms", "max ms", "failed",
        "RSS start MiB", "peak", "after", "back in s", "verdict",
    ]  # fmt: skip
    notes = "\n".join(f"- {o.name}: {o.note}" for o in outcomes)
    return f"{table(headers, rows)}\n\nWhat each attack got back:\n{notes}"


async def main_async(names: list[str], scale: float) -> list[Outcome]:
    pin({1})
    token = issue_token(SECRET, "drill", ["jobs:read", "jobs:write", "jobs:report"], 3600)
    outcomes = []
    # A gateway of its own for each attack: one that an attack stalled for good does
    # not spoil the next attack's numbers.
    for name in names:
        with tempfile.TemporaryDirectory(prefix="drill-hostile-") as tmp:
            env = {
                "AUTH_JWT_SECRET": SECRET,
                "DATABASE_URL": f"sqlite:///{tmp}/jobs.db",
                "BROADCAST_URL": "memory://",
            }
            gateway = start_server(
                env, Path(tmp) / "gateway.log", ("--log-level", "warning"), timeout=30, core=0
            )
            target = Target(gateway=gateway, token=token, scale=scale)
            try:
                with Probe(gateway.url) as probe:
                    print(f"  {name} ...", file=sys.stderr, flush=True)
                    outcome = await run_attack(target, probe, name)
            finally:
                gateway.stop()
        print(
            f"    p99 {outcome.p99:.1f} ms, RSS {outcome.rss_start:.0f} -> "
            f"{outcome.rss_peak:.0f} -> {outcome.rss_after:.0f} MiB: {outcome.note}",
            file=sys.stderr,
            flush=True,
        )
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drills.hostile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", nargs="+", choices=list(ATTACKS), help="run only these attacks")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the attacks' counts (0.1 for a quick look)",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    names = args.only or list(ATTACKS)
    with raised_file_limit():
        outcomes = asyncio.run(main_async(names, args.scale))
    text = report(outcomes)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if outcomes and all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
