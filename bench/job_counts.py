"""What the `jobs_gateway_jobs` gauge costs: jobs counted by status at 10k and 1M jobs.

    python -m bench.job_counts                        # both engines, 10,000 vs 1,000,000
    python -m bench.job_counts --engines sqlite --large 200000

Fills fresh databases as bench.storage does (its data, its engines), then times the
store's `count_by_status` (what one refresh of the gauge runs) through the gateway's
own connection, and prints the query plan. docs/operations.md#metrics quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from app import db
from app.jobs import store
from app.settings import Settings
from bench.storage import Engine, PostgresEngine, Sample, SQLiteEngine
from support.report import table


async def measure(
    engine: Engine, count: int, calls: int
) -> tuple[list[float], str, dict[str, int]]:
    url = await engine.create(f"counts_{count}")
    try:
        await engine.load(url, count, seed=7, sample=Sample())
        await engine.analyze(url)
        database = await db.connect(Settings(database_url=url))
        try:
            found = await store.count_by_status(database)  # warm the cache
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                await store.count_by_status(database)
                times.append((time.perf_counter() - started) * 1000)
        finally:
            await database.disconnect()
        import sqlalchemy as sa

        plan = await engine.explain(
            url, sa.select(db.jobs.c.status, sa.func.count()).group_by(db.jobs.c.status)
        )
        return times, plan, {status.name: n for status, n in found.items()}
    finally:
        await engine.drop(url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.engines.split(","):
            engine: Engine = (
                SQLiteEngine(Path(folder))
                if name == "sqlite"
                else PostgresEngine(args.postgres_url)
            )
            for count in (args.small, args.large):
                times, plan, found = await measure(engine, count, args.calls)
                rows.append(
                    [
                        name,
                        f"{count:,}",
                        f"{statistics.median(times):.1f}",
                        f"{max(times):.1f}",
                        plan,
                    ]
                )
                print(f"  {name} {count:,}: {found}", flush=True)
    print(table(["engine", "jobs", "median ms", "max ms", "plan"], rows))


if __name__ == "__main__":
    asyncio.run(main())
