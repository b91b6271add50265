"""The servers the gateway is measured against, each a uvicorn `--factory` target.

- `bare_per_call`: plain Starlette JSON routes, `databases` opening its connection per
  call (what `Database.fetch_one` does on SQLite), stdlib JSON.
- `bare_reused`: the same routes on one `databases` connection opened at start and
  reused by every request; bench/subscriptions.py's stored broadcast uses it too.
- `bare_fastest`: the best bare route, the fastest that can be written for the same
  answer on the same file: one aiosqlite connection opened at start, each read a
  plain SQL string in one trip to its thread (sqlite3 prepares a statement once per
  connection and keeps it), the GraphQL answer's exact JSON (`{"data": {"job": ...}}`,
  the same values) built by hand and encoded by orjson, the gateway's encoder. No
  SQLAlchemy, no statement built per call: faster than the gateway's own REST route,
  which `bare_reused` was not (it compiles its SQLAlchemy statements on every call).
- `strawberry_default`: strawberry out of the box (no extensions, default view), the
  obvious resolvers, `databases` per call: the reference for "3x strawberry's default".

The routes of the first two run the statements the gateway's store runs (SQLAlchemy
Core on `app.db.jobs`), so each pair reads the same row(s) of the same file the same way.
The database comes from BENCH_DATABASE_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import aiosqlite
import orjson
import sqlalchemy as sa
import strawberry
from databases import Database
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from app.db import jobs

TENANT = "default"


class Queries(Protocol):
    async def fetch_one(self, query: Any) -> Any: ...
    async def fetch_all(self, query: Any) -> list[Any]: ...


def _database() -> Database:
    return Database(os.environ["BENCH_DATABASE_URL"], timeout=10.0)


def _job(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "progress": row["progress"],
        "profile": str(row["profile"]),
        "video": str(row["video"]),
        "inputs": [str(value) for value in row["inputs"]],
        "createdAt": row["created_at"].isoformat(),
    }


def report_progress(job_id: uuid.UUID, value: int) -> Any:
    """The UPDATE of a progress report, as the store's rules have it (the job is
    running, not deleted, and progress does not go down), returning the row."""
    return (
        jobs.update()
        .where(
            jobs.c.id == job_id,
            jobs.c.tenant == TENANT,
            jobs.c.status == 0,
            jobs.c.deleted_at.is_(None),
            jobs.c.progress <= value,
        )
        .values(progress=value, updated_at=datetime.now(UTC))
        .returning(*jobs.c)
    )


def routes(db: Queries) -> list[Route]:
    async def one(request: Request) -> Response:
        job_id = uuid.UUID(request.path_params["id"])
        row = await db.fetch_one(
            sa.select(*jobs.c).where(jobs.c.id == job_id, jobs.c.tenant == TENANT)
        )
        if row is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(_job(row._mapping))

    async def many(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "20"))
        rows = await db.fetch_all(
            sa.select(*jobs.c)
            .where(jobs.c.tenant == TENANT, jobs.c.deleted_at.is_(None))
            .order_by(jobs.c.seq.desc())
            .limit(limit)
        )
        return JSONResponse({"jobs": [_job(row._mapping) for row in rows]})

    async def create(request: Request) -> Response:
        body = await request.json()
        now = datetime.now(UTC)
        row = await db.fetch_one(
            jobs.insert()
            .values(
                id=uuid.uuid4(),
                tenant=TENANT,
                status=0,
                progress=0,
                profile=uuid.UUID(body["profile"]),
                video=uuid.UUID(body["video"]),
                inputs=[str(uuid.UUID(value)) for value in body["inputs"]],
                created_at=now,
                updated_at=now,
                deleted_at=None,
            )
            .returning(*jobs.c)
        )
        return JSONResponse(_job(row._mapping))

    async def progress(request: Request) -> Response:
        job_id = uuid.UUID(request.path_params["id"])
        value = int((await request.json())["progress"])
        row = await db.fetch_one(report_progress(job_id, value))
        if row is None:
            return JSONResponse({"error": "conflict"}, status_code=409)
        return JSONResponse(_job(row._mapping))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return [
        Route("/jobs/{id}", one, methods=["GET"]),
        Route("/jobs", many, methods=["GET"]),
        Route("/jobs", create, methods=["POST"]),
        Route("/jobs/{id}/progress", progress, methods=["POST"]),
        Route("/healthz", healthz),
    ]


def bare_per_call() -> Starlette:
    database = _database()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.connect()
        yield
        await database.disconnect()

    return Starlette(routes=routes(database), lifespan=lifespan)


class Reused:
    """One `databases` connection, opened at start (`lifespan`); queries take turns on it."""

    def __init__(self) -> None:
        self.database = _database()
        self.connection: Any = None

    async def fetch_one(self, query: Any) -> Any:
        return await self.connection.fetch_one(query)

    async def fetch_all(self, query: Any) -> list[Any]:
        return list(await self.connection.fetch_all(query))

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.database.connect()
        self.connection = self.database.connection()
        await self.connection.__aenter__()
        yield
        await self.connection.__aexit__()
        await self.database.disconnect()


def bare_reused() -> Starlette:
    reused = Reused()
    return Starlette(routes=routes(reused), lifespan=reused.lifespan)


# The fastest bare route: what the GraphQL queries answer, built by hand.

_FIELDS = "id, status, progress, profile, video, inputs, created_at"
_ONE = f"SELECT {_FIELDS} FROM jobs WHERE id = ? AND tenant = ?"
_PAGE = (
    f"SELECT {_FIELDS} FROM jobs WHERE tenant = ? AND deleted_at IS NULL ORDER BY seq DESC LIMIT ?"
)
_STATUS = {0: "IN_PROGRESS", 1: "COMPLETED", 10: "FAILED"}


def _dashed(stored: str) -> str:
    """SQLAlchemy's Uuid on SQLite: 32 hex digits; the answer's form has dashes."""
    return f"{stored[:8]}-{stored[8:12]}-{stored[12:16]}-{stored[16:20]}-{stored[20:]}"


def _fast_job(row: Any) -> dict[str, Any]:
    # As `{ job(id) { id status progress profile video inputs createdAt } }` answers.
    job_id, status, progress, profile, video, inputs, created_at = row
    return {
        "id": _dashed(job_id),
        "status": _STATUS[status],
        "progress": progress,
        "profile": _dashed(profile),
        "video": _dashed(video),
        "inputs": orjson.loads(inputs),
        # Stored "YYYY-MM-DD HH:MM:SS.ffffff" (UTC): the answer's ISO 8601 with a Z.
        "createdAt": f"{created_at[:10]}T{created_at[11:26]}Z",
    }


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def bare_fastest() -> Starlette:
    path = os.environ["BENCH_DATABASE_URL"].removeprefix("sqlite:///")
    state: dict[str, aiosqlite.Connection] = {}

    async def one(request: Request) -> Response:
        job_id = request.path_params["id"].replace("-", "")
        rows = await state["db"].execute_fetchall(_ONE, (job_id, TENANT))
        job = _fast_job(next(iter(rows))) if rows else None
        return _json({"data": {"job": job}})

    async def many(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "20"))
        rows = await state["db"].execute_fetchall(_PAGE, (TENANT, limit))
        edges = [{"node": _fast_job(row)} for row in rows]
        return _json({"data": {"jobs": {"edges": edges}}})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["db"] = await aiosqlite.connect(path)
        yield
        await state["db"].close()

    return Starlette(
        routes=[
            Route("/jobs/{id}", one, methods=["GET"]),
            Route("/jobs", many, methods=["GET"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


# strawberry as its documentation shows it: the same field names as the gateway's
# schema, so the same query text runs on both.


@strawberry.type
class Job:
    id: uuid.UUID
    status: int
    progress: int
    profile: uuid.UUID
    video: uuid.UUID
    inputs: list[uuid.UUID]
    created_at: datetime


@strawberry.type
class JobEdge:
    node: Job


@strawberry.type
class JobConnection:
    edges: list[JobEdge]


def _strawberry_job(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        status=row["status"],
        progress=row["progress"],
        profile=row["profile"],
        video=row["video"],
        inputs=[uuid.UUID(value) for value in row["inputs"]],
        created_at=row["created_at"],
    )


def strawberry_default() -> Starlette:
    database = _database()

    @strawberry.type
    class Query:
        @strawberry.field
        async def job(self, id: uuid.UUID) -> Job | None:
            row = await database.fetch_one(
                sa.select(*jobs.c).where(jobs.c.id == id, jobs.c.tenant == TENANT)
            )
            return _strawberry_job(row._mapping) if row is not None else None

        @strawberry.field
        async def jobs(self, first: int = 20) -> JobConnection:
            rows = await database.fetch_all(
                sa.select(*jobs.c)
                .where(jobs.c.tenant == TENANT, jobs.c.deleted_at.is_(None))
                .order_by(jobs.c.seq.desc())
                .limit(first)
            )
            return JobConnection(edges=[JobEdge(node=_strawberry_job(r._mapping)) for r in rows])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.connect()
        yield
        await database.disconnect()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    view: GraphQL[None, None] = GraphQL(strawberry.Schema(query=Query))
    return Starlette(
        routes=[Route("/graphql", view, methods=["GET", "POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )
