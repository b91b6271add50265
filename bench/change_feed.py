"""What the change feed costs: a report's time, and a poll's, on SQLite and PostgreSQL.

    python -m bench.change_feed                 # this checkout
    PYTHONPATH=/path/to/older/checkout python -m bench.change_feed   # the same, before

Each engine gets a fresh database migrated by the gateway's own migrations, `--jobs`
jobs, then `--reports` progress reports one after another (the store's
`update_progress`, what REST and GraphQL run) timed one by one, and `--seconds` of
reports from 8 concurrent tasks. Where the store has a change feed it also times
its polls: one that finds nothing, one that reads 1,000 changes, and `last_change`.
PostgreSQL databases are created on TEST_POSTGRES_URL's server and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
from databases import Database

from app import db
from app.errors import InvalidTransition
from app.jobs import store
from app.jobs.model import new_job
from app.settings import Settings

TENANT = "bench"


async def timed(call: Callable[[], Awaitable[Any]], times: int) -> float:
    """Median microseconds of `times` calls."""
    found = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        found.append(time.perf_counter() - started)
    return statistics.median(found) * 1e6


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(database_url=url)
    await db.migrate(settings)
    database: Database = await db.connect(settings)
    try:
        ids = []
        for _ in range(args.jobs):
            new = new_job([uuid.uuid4()], uuid.uuid4(), uuid.uuid4())
            ids.append((await store.create_job(database, TENANT, new)).id)
        progress = dict.fromkeys(ids, 0)
        rng = random.Random(1)

        async def report() -> None:
            job_id = rng.choice(ids)
            progress[job_id] = min(progress[job_id] + 1, 99)
            try:
                await store.update_progress(database, TENANT, job_id, progress[job_id])
            except InvalidTransition:
                pass  # another task reported a higher progress of this job first

        found: dict[str, Any] = {"report_us": await timed(report, args.reports)}

        async def reporter(deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                await report()
                done += 1
            return done

        deadline = time.perf_counter() + args.seconds
        done = await asyncio.gather(*(reporter(deadline) for _ in range(8)))
        found["reports_per_s"] = sum(done) / args.seconds
        if hasattr(store, "changes_after"):
            last = await store.last_change(database)
            found["poll_empty_us"] = await timed(
                lambda: store.changes_after(database, last, 5000), 200
            )
            found["poll_1000_us"] = await timed(
                lambda: store.changes_after(database, last - 1000, 5000), 50
            )
            found["last_change_us"] = await timed(lambda: store.last_change(database), 200)
        return found
    finally:
        await database.disconnect()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    for engine in args.engines.split(","):
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                found = await measure(f"sqlite:///{Path(folder) / 'jobs.db'}", args)
        else:
            admin_url = os.environ.get(
                "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
            )
            name = f"bench_change_feed_{os.getpid()}"
            admin = await asyncpg.connect(admin_url)
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
                found = await measure(url, args)
            finally:
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                await admin.close()
        print(engine, {key: round(value) for key, value in found.items()}, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
