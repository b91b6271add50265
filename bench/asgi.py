"""CPU time per request, in process: the gateway's ASGI app beside the bare routes.

    .venv/bin/python -m bench.asgi [--requests 3000] [--only job,jobs] [--profile pyinstrument]

No sockets and no HTTP parsing: each app is called as uvicorn calls it (lifespan,
then `http` scopes), `--concurrency` requests at a time on uvloop, with the process
pinned to one core. It counts the CPU time of the whole process (event loop and
aiosqlite threads) per request, which other load on the machine barely moves,
unlike wall-clock req/s: the number to watch while changing code. The over-the-wire
table for the README comes from `bench.http`. The OTEL_* variables switch traces on
as for the server (docs/performance.md measures their cost).

`--profile pyinstrument|cprofile` profiles the gateway alone and writes the report
to bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/asgi.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import Request
from bench.scenarios import (
    BEST_BARE,
    FASTEST,
    GATEWAY,
    PER_CALL,
    REUSED,
    STRAWBERRY,
    Scenario,
    prepare_database,
    scenarios,
)
from support.servers import pin

OUT = Path(__file__).resolve().parent / "out"
ASGIApp = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]


def build(name: str, database_url: str) -> ASGIApp:
    os.environ["BENCH_DATABASE_URL"] = database_url
    if name == GATEWAY:
        from app.main import create_app
        from app.settings import Settings, traces_exporters

        # OTEL_* switch traces on here as they do for `python -m app serve`.
        exporters = traces_exporters(os.environ)
        return create_app(Settings(database_url=database_url, traces_exporters=exporters))
    from bench import baselines

    factory = {
        PER_CALL: baselines.bare_per_call,
        REUSED: baselines.bare_reused,
        FASTEST: baselines.bare_fastest,
        STRAWBERRY: baselines.strawberry_default,
    }[name]
    return factory()


@asynccontextmanager
async def running(app: ASGIApp) -> Any:
    """Run the app's lifespan as uvicorn does; yields the state requests get."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"startup failed: {message}")
    try:
        yield state
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def call(app: ASGIApp, state: dict[str, Any], request: Request) -> tuple[int, bytes]:
    path, _, query = request.path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"application/json"),
            (b"content-type", request.content_type.encode()),
            (b"content-length", str(len(request.body)).encode()),
        ],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "state": state.copy(),
    }
    sent = False
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a client that stays connected
        sent = True
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


async def drive(
    app: ASGIApp, state: dict[str, Any], request: Request, count: int, concurrency: int
) -> tuple[float, float]:
    """Send `count` requests, `concurrency` at a time; CPU and wall seconds per request.

    A failed answer (not 2xx, or holding GraphQL errors) is printed once and counted.
    """
    failures: list[bytes] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            try:
                status, body = await call(app, state, request)
            except Exception as exc:  # the app let it through (bare routes do)
                status, body = 500, repr(exc).encode()
            if not 200 <= status < 300 or b'"errors"' in body:
                failures.append(b"%d %s" % (status, body[:300]))

    shares = [count // concurrency + (index < count % concurrency) for index in range(concurrency)]
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(share) for share in shares))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if failures:
        print(f"  {len(failures)} failed, e.g. {failures[0]!r}", file=sys.stderr)
    return cpu / count, wall / count


def _profiler(kind: str | None) -> AbstractAsyncContextManager[None]:
    @asynccontextmanager
    async def profiling() -> Any:
        if kind is None:
            yield
            return
        OUT.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if kind == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            yield
            profiler.stop()
            target = OUT / f"asgi-{stamp}.pyinstrument.txt"
            target.write_text(profiler.output_text(unicode=True, show_all=False))
            (OUT / f"asgi-{stamp}.pyinstrument.html").write_text(profiler.output_html())
        else:
            profile = cProfile.Profile()
            profile.enable()
            yield
            profile.disable()
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text)
            stats.sort_stats("tottime").print_stats(60)
            stats.sort_stats("cumulative").print_stats(80)
            profile.dump_stats(OUT / f"asgi-{stamp}.pstats")
            target = OUT / f"asgi-{stamp}.cprofile.txt"
            target.write_text(text.getvalue())
        print(f"profile: {target}", file=sys.stderr)

    return profiling()


async def measure(
    chosen: list[Scenario],
    names: list[str],
    database_url: str,
    count: int,
    concurrency: int,
    rounds: int,
    profile: str | None,
) -> dict[tuple[str, str], list[float]]:
    async with AsyncExitStack() as stack:
        apps = {name: build(name, database_url) for name in names}
        states = {name: await stack.enter_async_context(running(app)) for name, app in apps.items()}
        return await _rounds(chosen, names, apps, states, count, concurrency, rounds, profile)


async def _rounds(
    chosen: list[Scenario],
    names: list[str],
    apps: dict[str, ASGIApp],
    states: dict[str, dict[str, Any]],
    count: int,
    concurrency: int,
    rounds: int,
    profile: str | None,
) -> dict[tuple[str, str], list[float]]:
    results: dict[tuple[str, str], list[float]] = {}
    # Warm up every path once (imports, caches, the file's pages).
    for scenario in chosen:
        if scenario.setup is not None and GATEWAY in names:
            await call(apps[GATEWAY], states[GATEWAY], scenario.setup)
    for scenario in chosen:
        for name in names:
            if name in scenario.requests:
                await drive(apps[name], states[name], scenario.requests[name], 200, concurrency)
    for round_number in range(rounds):
        for scenario in chosen:
            for name in names:
                if name not in scenario.requests:
                    continue
                async with _profiler(profile if name == GATEWAY else None):
                    cpu, wall = await drive(
                        apps[name], states[name], scenario.requests[name], count, concurrency
                    )
                results.setdefault((scenario.name, name), []).append(cpu)
                print(
                    f"  round {round_number + 1} {scenario.name:<8} {name:<28} "
                    f"{cpu * 1e6:7.0f} µs CPU/request  {wall * 1e6:7.0f} µs wall",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi")
    parser.add_argument("--requests", type=int, default=3000, help="per run (3000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--only",
        default="",
        help="job,job-persisted,jobs,jobs-persisted,cursors,create,progress,rest",
    )
    parser.add_argument("--servers", default="", help="gateway,per-call,reused,fastest,strawberry")
    parser.add_argument("--profile", choices=["pyinstrument", "cprofile"])
    args = parser.parse_args(argv)

    chosen = scenarios()
    if args.only:
        chosen = [scenario for scenario in chosen if scenario.name in args.only.split(",")]
    short = {
        "gateway": GATEWAY,
        "per-call": PER_CALL,
        "reused": REUSED,
        "fastest": FASTEST,
        "strawberry": STRAWBERRY,
    }
    names = (
        [short[name] for name in args.servers.split(",")] if args.servers else list(short.values())
    )
    if args.profile:
        names, args.rounds = [GATEWAY], 1
    pin({0})  # threads started from now on share the core

    with tempfile.TemporaryDirectory(prefix="bench-asgi-") as folder:
        database_url = f"sqlite:///{folder}/jobs.db"
        prepare_database(database_url, args.jobs)
        work = measure(
            chosen, names, database_url, args.requests, args.concurrency, args.rounds, args.profile
        )
        try:
            import uvloop
        except ImportError:
            results = asyncio.run(work)
        else:
            results = uvloop.run(work)

    print("| request | server | CPU µs/request | vs best bare |")
    print("|---|---|---:|---:|")
    for scenario in chosen:
        best = results.get((scenario.name, BEST_BARE))
        for name in names:
            if (scenario.name, name) not in results:
                continue
            cpu = statistics.median(results[scenario.name, name])
            ratio = f"{statistics.median(best) / cpu:.2f}" if best else "-"
            print(f"| {scenario.name} | {name} | {cpu * 1e6:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
