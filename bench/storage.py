"""Storage at a million jobs: does a list page cost the same at 10k and at 1M jobs?

    python -m bench.storage                       # both engines, 10,000 vs 1,000,000 jobs
    python -m bench.storage --engines sqlite --large 200000

For each engine it fills two fresh databases through the gateway's own migrations
(a bulk insert with a progress bar): one with `--small` jobs, one with `--large`.
Then it times the store's `list_jobs` (what `jobs(first: 20)` and
`GET /encoding/jobs` run) for the first page, a page deep in the cursor chain and
each filter, alternating the two databases query by query so both see the same
machine load, and prints the medians side by side with their ratio. It also
prints how `count_jobs` (`totalCount`) grows, the query plans, and createJob /
updateJobProgress throughput on the large database.

PostgreSQL databases are created on the server of `--postgres-url` (default
TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test) and dropped at
the end; SQLite files go to a temporary folder. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from databases import Database
from sqlalchemy.dialects import postgresql, sqlite

from app import db
from app.errors import InvalidTransition
from app.jobs import store
from app.jobs.model import JobFilter, JobStatus, new_job
from app.settings import Settings

TENANT = "bench"
OTHER_TENANT = "neighbour"  # one job in ten: the tenant column must narrow every scan
# The 30 oldest jobs: a scan that walks the table newest first instead of the tenant's
# own index would cross all the others to find them.
SMALL_TENANT = "small"
SMALL_TENANT_JOBS = 30
PROFILES = [uuid.UUID(int=n + 1) for n in range(20)]
# A profile whose jobs never fail: "FAILED jobs of this profile" finds nothing.
NEVER_FAILS = PROFILES[-1]
PAGE = 20
BATCH = 20_000
START = datetime(2025, 1, 1, tzinfo=UTC)


Call = Callable[[], Awaitable[object]]


# --- data ------------------------------------------------------------------------


@dataclass
class Sample:
    """Values taken from the data while loading, to aim the queries at."""

    video: uuid.UUID | None = None
    middle_seq: int = 0


def rows(count: int, seed: int, sample: Sample) -> Iterator[dict[str, Any]]:
    """Jobs as an encoding service accumulates them: mostly finished, a few failed or
    deleted, 20 profiles, one to three jobs per video, newest in progress."""
    rng = random.Random(seed)
    video = uuid.uuid4()
    for n in range(count):
        if rng.random() < 0.5:
            video = uuid.UUID(int=rng.getrandbits(128))
        if n == count // 2:
            sample.video = video
        created = START + timedelta(seconds=n * 30, microseconds=rng.randrange(1_000_000))
        roll = rng.random()
        status = JobStatus.COMPLETED if roll < 0.85 else JobStatus.FAILED if roll < 0.9 else None
        if status is None or n > count - count // 100:
            status = JobStatus.IN_PROGRESS
        profile = PROFILES[rng.randrange(len(PROFILES))]
        if status is JobStatus.FAILED and profile == NEVER_FAILS:
            status = JobStatus.COMPLETED
        progress = 100 if status is JobStatus.COMPLETED else rng.randrange(100)
        inputs = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(rng.randint(1, 3))]
        yield {
            "id": uuid.UUID(int=rng.getrandbits(128)),
            "tenant": _tenant(n),
            "status": int(status),
            "progress": progress,
            "profile": profile,
            "video": video,
            "inputs": inputs,
            "created_at": created,
            "updated_at": created + timedelta(minutes=rng.randint(1, 90)),
            "deleted_at": created + timedelta(days=1) if rng.random() < 0.05 else None,
        }


def _tenant(n: int) -> str:
    if n < SMALL_TENANT_JOBS:
        return SMALL_TENANT
    return OTHER_TENANT if n % 10 == 9 else TENANT


class ProgressBar:
    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.started = label, total, 0, time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        width = 30
        filled = width * self.done // self.total
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        sys.stderr.write(
            f"\r  {self.label:<28} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done:>9,}/{self.total:,} {rate:>8,.0f} rows/s"
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# --- engines ---------------------------------------------------------------------


class Engine:
    name: str

    def url(self, label: str) -> str:
        raise NotImplementedError

    async def create(self, label: str) -> str:
        raise NotImplementedError

    async def load(self, url: str, count: int, seed: int, sample: Sample) -> None:
        raise NotImplementedError

    async def analyze(self, url: str) -> None:
        raise NotImplementedError

    async def explain(self, url: str, statement: sa.Select[Any]) -> str:
        raise NotImplementedError

    async def raw(self, url: str) -> tuple[Callable[[sa.Select[Any]], Call], Call]:
        """A driver connection of its own: (run this statement, close)."""
        raise NotImplementedError

    async def drop(self, url: str) -> None:
        raise NotImplementedError


class SQLiteEngine(Engine):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def url(self, label: str) -> str:
        return f"sqlite:///{self.folder}/{label}.db"

    async def create(self, label: str) -> str:
        url = self.url(label)
        await db.migrate(Settings(database_url=url))
        return url

    async def load(self, url: str, count: int, seed: int, sample: Sample) -> None:
        import sqlite3

        columns = [column.name for column in db.jobs.c if column.name not in ("seq", "change_seq")]
        sql = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        bar = ProgressBar(f"{self.name} {count:,} jobs", count)
        with sqlite3.connect(Settings(database_url=url).sqlite_path) as conn:
            # A bulk load, not the service: a big page cache for the random-key indexes
            # (ids, videos), no fsync per batch.
            conn.execute("PRAGMA cache_size = -262144")
            conn.execute("PRAGMA synchronous = OFF")
            batch: list[tuple[Any, ...]] = []
            for row in rows(count, seed, sample):
                batch.append(_sqlite_values(row))
                if len(batch) == BATCH:
                    conn.executemany(sql, batch)
                    conn.commit()
                    bar.advance(len(batch))
                    batch.clear()
            if batch:
                conn.executemany(sql, batch)
                conn.commit()
                bar.advance(len(batch))
            sample.middle_seq = conn.execute("SELECT max(seq) / 2 FROM jobs").fetchone()[0]

    async def analyze(self, url: str) -> None:
        import sqlite3

        with sqlite3.connect(Settings(database_url=url).sqlite_path) as conn:
            conn.execute("ANALYZE")

    async def explain(self, url: str, statement: sa.Select[Any]) -> str:
        import sqlite3

        sql = _literal_sql(statement, sqlite.dialect())
        with sqlite3.connect(Settings(database_url=url).sqlite_path) as conn:
            return "; ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))

    async def raw(self, url: str) -> tuple[Callable[[sa.Select[Any]], Call], Call]:
        import sqlite3

        conn = sqlite3.connect(Settings(database_url=url).sqlite_path)

        def runner(statement: sa.Select[Any]) -> Call:
            sql = _literal_sql(statement, sqlite.dialect())

            async def run() -> object:
                return conn.execute(sql).fetchall()

            return run

        async def close() -> object:
            conn.close()
            return None

        return runner, close

    async def drop(self, url: str) -> None:
        _remove_sqlite_files(Settings(database_url=url).sqlite_path)


def _sqlite_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """A row as SQLAlchemy's SQLite types store it: uuid hex, naive UTC text, JSON."""
    deleted = row["deleted_at"]
    return (
        row["id"].hex,
        row["tenant"],
        row["status"],
        row["progress"],
        row["profile"].hex,
        row["video"].hex,
        json.dumps([str(value) for value in row["inputs"]]),
        _sqlite_time(row["created_at"]),
        _sqlite_time(row["updated_at"]),
        _sqlite_time(deleted) if deleted is not None else None,
    )


def _sqlite_time(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _literal_sql(statement: sa.Select[Any], dialect: sa.Dialect) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresEngine(Engine):
    name = "postgresql"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def url(self, label: str) -> str:
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/jobs_bench_{label}"))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self, label: str) -> str:
        url = self.url(label)
        name = urlsplit(url).path[1:]
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await self._admin(f'CREATE DATABASE "{name}"')
        await db.migrate(Settings(database_url=url))
        return url

    async def load(self, url: str, count: int, seed: int, sample: Sample) -> None:
        columns = [column.name for column in db.jobs.c if column.name not in ("seq", "change_seq")]
        bar = ProgressBar(f"{self.name} {count:,} jobs", count)
        conn = await asyncpg.connect(url)
        try:
            batch: list[tuple[Any, ...]] = []
            for row in rows(count, seed, sample):
                batch.append(tuple(row[column] for column in columns))
                if len(batch) == BATCH:
                    await conn.copy_records_to_table("jobs", records=batch, columns=columns)
                    bar.advance(len(batch))
                    batch.clear()
            if batch:
                await conn.copy_records_to_table("jobs", records=batch, columns=columns)
                bar.advance(len(batch))
            sample.middle_seq = await conn.fetchval("SELECT max(seq) / 2 FROM jobs")
        finally:
            await conn.close()

    async def analyze(self, url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            # What autovacuum does after a bulk load, done now: statistics for the planner
            # and a visibility map, so COUNT can read the index alone.
            await conn.execute("VACUUM ANALYZE jobs")
        finally:
            await conn.close()

    async def explain(self, url: str, statement: sa.Select[Any]) -> str:
        sql = _literal_sql(statement, postgresql.dialect())
        conn = await asyncpg.connect(url)
        try:
            plan = await conn.fetch(f"EXPLAIN {sql}")
        finally:
            await conn.close()
        lines = [row[0].strip().removeprefix("->  ") for row in plan]
        return "; ".join(line.split("  (cost")[0] for line in lines if "cost" in line)

    async def raw(self, url: str) -> tuple[Callable[[sa.Select[Any]], Call], Call]:
        conn = await asyncpg.connect(url)

        def runner(statement: sa.Select[Any]) -> Call:
            sql = _literal_sql(statement, postgresql.dialect())

            async def run() -> object:
                return await conn.fetch(sql)

            return run

        async def close() -> object:
            await conn.close()
            return None

        return runner, close

    async def drop(self, url: str) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')


# --- measuring -------------------------------------------------------------------


@dataclass
class Query:
    name: str
    job_filter: JobFilter
    deep: bool = False
    tenant: str = TENANT


def queries(sample: Sample) -> list[Query]:
    assert sample.video is not None
    return [
        Query("first page", JobFilter()),
        Query("deep page (middle of the chain)", JobFilter(), deep=True),
        Query("includeDeleted", JobFilter(include_deleted=True)),
        Query("status IN_PROGRESS", JobFilter(status=JobStatus.IN_PROGRESS)),
        Query("status COMPLETED", JobFilter(status=JobStatus.COMPLETED)),
        Query("status COMPLETED, deep", JobFilter(status=JobStatus.COMPLETED), deep=True),
        Query("status FAILED", JobFilter(status=JobStatus.FAILED)),
        Query("profile", JobFilter(profile=PROFILES[3])),
        Query("profile + status FAILED", JobFilter(profile=PROFILES[3], status=JobStatus.FAILED)),
        Query(
            "profile + status FAILED, none match",
            JobFilter(profile=NEVER_FAILS, status=JobStatus.FAILED),
        ),
        Query("video (1-3 jobs)", JobFilter(video=sample.video, include_deleted=True)),
        Query("video, none match", JobFilter(video=uuid.uuid4())),
        Query(
            f"a {SMALL_TENANT_JOBS}-job tenant, its jobs the oldest",
            JobFilter(),
            tenant=SMALL_TENANT,
        ),
    ]


async def elapsed_ms(call: Call) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


@dataclass
class Timing:
    name: str
    small: list[float]
    large: list[float]

    @staticmethod
    def _quantile(times: list[float], share: float) -> float:
        return sorted(times)[int(len(times) * share)]

    def median(self) -> tuple[float, float]:
        return statistics.median(self.small), statistics.median(self.large)

    def ratio(self, share: float = 0.5) -> float:
        return self._quantile(self.large, share) / self._quantile(self.small, share)


async def compare(pairs: list[tuple[str, Call, Call]], calls: int) -> list[Timing]:
    """Times of each call on both databases. The two alternate call by call, so that
    both see the same background load; which goes first alternates too."""
    results = []
    for name, small_call, large_call in pairs:
        await small_call()
        await large_call()
        timing = Timing(name, [], [])
        for index in range(calls):
            if index % 2:
                timing.small.append(await elapsed_ms(small_call))
                timing.large.append(await elapsed_ms(large_call))
            else:
                timing.large.append(await elapsed_ms(large_call))
                timing.small.append(await elapsed_ms(small_call))
        results.append(timing)
    return results


def page_call(database: Database, sample: Sample, query: Query) -> Call:
    after = sample.middle_seq if query.deep else None

    async def call() -> object:
        return await store.list_jobs(database, query.tenant, query.job_filter, PAGE, after)

    return call


def count_call(database: Database) -> Call:
    async def call() -> object:
        return await store.count_jobs(database, TENANT, JobFilter())

    return call


async def throughput(database: Database, seconds: float, tasks: int) -> tuple[float, float]:
    """createJob and updateJobProgress per second, `tasks` callers at once."""
    created: list[uuid.UUID] = []

    async def creator(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            job = await store.create_job(
                database, TENANT, new_job([uuid.uuid4()], PROFILES[0], uuid.uuid4())
            )
            created.append(job.id)
            done += 1
        return done

    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    made = sum(await asyncio.gather(*(creator(deadline) for _ in range(tasks))))
    create_rate = made / (time.perf_counter() - started)

    async def reporter(index: int, deadline: float) -> int:
        done, progress = 0, 0
        mine = created[index::tasks]
        while time.perf_counter() < deadline and mine:
            progress = progress % 99 + 1
            for job_id in mine:
                if time.perf_counter() >= deadline:
                    break
                try:
                    await store.update_progress(database, TENANT, job_id, progress)
                except InvalidTransition:
                    pass
                done += 1
        return done

    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    reported = sum(await asyncio.gather(*(reporter(index, deadline) for index in range(tasks))))
    return create_rate, reported / (time.perf_counter() - started)


async def run_engine(engine: Engine, args: argparse.Namespace) -> None:
    print(f"\n## {engine.name}: {args.small:,} vs {args.large:,} jobs\n", flush=True)
    samples = (Sample(), Sample())
    urls = []
    for index, (label, count) in enumerate((("small", args.small), ("large", args.large))):
        url = engine.url(label)
        found = await existing_sample(url, count) if args.reuse else None
        if found is not None:
            samples[index].video, samples[index].middle_seq = found.video, found.middle_seq
            print(f"  reusing {url} ({count:,} jobs)", file=sys.stderr)
        else:
            url = await engine.create(label)
            started = time.perf_counter()
            await engine.load(url, count, seed=len(label), sample=samples[index])
            await engine.analyze(url)
            print(
                f"  loaded {count:,} jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr
            )
        urls.append(url)
    small, large = [
        await db.connect(Settings(database_url=url, database_pool_size=args.tasks)) for url in urls
    ]
    try:
        small_queries, large_queries = queries(samples[0]), queries(samples[1])
        plans = [await engine.explain(urls[1], _statement(q, samples[1])) for q in large_queries]
        pairs = [
            (query.name, page_call(small, samples[0], query), page_call(large, samples[1], other))
            for query, other in zip(small_queries, large_queries, strict=True)
        ]
        # One connection held per database: this measures the statement and the rows,
        # not opening a connection per call (the HTTP benchmarks have the whole request).
        async with small.connection(), large.connection():
            pages = await compare(pairs, args.calls)
            counts = await compare(
                [("totalCount (a COUNT, not paged)", count_call(small), count_call(large))], 9
            )
        (small_run, small_close), (large_run, large_close) = [await engine.raw(url) for url in urls]
        try:
            sql_pairs = [
                (
                    query.name,
                    small_run(_statement(query, samples[0])),
                    large_run(_statement(other, samples[1])),
                )
                for query, other in zip(small_queries, large_queries, strict=True)
            ]
            sql_alone = await compare(sql_pairs, args.calls)
        finally:
            await small_close()
            await large_close()
        small_jobs, large_jobs = f"{args.small:,}", f"{args.large:,}"
        print(
            f"| {engine.name}: page of {PAGE}, median | {small_jobs} jobs | {large_jobs} jobs "
            f"| ratio | ratio, fastest 10% | SQL alone, ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for timing, sql in zip([*pages, *counts], [*sql_alone, None], strict=True):
            small_ms, large_ms = timing.median()
            sql_ratio = f"{sql.ratio():.2f}x" if sql else ""
            print(
                f"| {timing.name} | {small_ms:.2f} ms | {large_ms:.2f} ms | {timing.ratio():.2f}x "
                f"| {timing.ratio(0.1):.2f}x | {sql_ratio} |"
            )
        worst = max(pages, key=lambda timing: timing.ratio())
        worst_low = max(pages, key=lambda timing: timing.ratio(0.1))
        print(
            f"\nworst page ratio: {worst.ratio():.2f}x median ({worst.name}), "
            f"{worst_low.ratio(0.1):.2f}x fastest 10% ({worst_low.name}); target: within 1.3x"
        )
        if args.explain:
            print(f"\nplans at {large_jobs}:")
            for query, plan in zip(large_queries, plans, strict=True):
                print(f"  {query.name}: {plan}")
        print(f"\nwrites on the {args.large:,}-job database ({args.seconds:.0f} s each):")
        print("| callers at once | createJob /s | updateJobProgress /s |")
        print("|---:|---:|---:|")
        for tasks in (1, args.tasks):
            create_rate, report_rate = await throughput(large, args.seconds, tasks)
            print(f"| {tasks} | {create_rate:,.0f} | {report_rate:,.0f} |", flush=True)
    finally:
        await small.disconnect()
        await large.disconnect()
        if not (args.keep or args.reuse):
            for url in urls:
                await engine.drop(url)


async def existing_sample(url: str, count: int) -> Sample | None:
    """The sample of a database an earlier run loaded with `count` jobs (and kept)."""
    try:
        database = await db.connect(Settings(database_url=url))
    except db.DatabaseUnavailable:
        return None
    try:
        jobs = db.jobs
        loaded = await database.fetch_val(
            sa.select(sa.func.count()).select_from(jobs).where(jobs.c.seq <= count)
        )
        if loaded != count:
            return None
        video = await database.fetch_val(
            sa.select(jobs.c.video).where(jobs.c.seq == count // 2 + 1)
        )
        return Sample(video=video, middle_seq=count // 2)
    except Exception:  # no table, another schema: load it again
        return None
    finally:
        await database.disconnect()


def _statement(query: Query, sample: Sample) -> Any:
    after = sample.middle_seq if query.deep else None
    return store.list_query(query.tenant, query.job_filter, PAGE + 1, after)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per query and size")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput measure")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent callers for writes")
    parser.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--reuse", action="store_true", help="use databases kept by an earlier run (and keep them)"
    )
    parser.add_argument(
        "--sqlite-dir", help="folder for the SQLite files (default: a temporary one)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as temporary:
        folder = args.sqlite_dir or temporary
        for name in args.engines.split(","):
            engine: Engine = (
                SQLiteEngine(Path(folder))
                if name == "sqlite"
                else PostgresEngine(args.postgres_url)
            )
            await run_engine(engine, args)


if __name__ == "__main__":
    asyncio.run(main())
