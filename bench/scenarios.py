"""What the HTTP benchmarks send: the request kinds, each server's request, the data.

Shared by `bench.http` (over the wire, wrk) and `bench.asgi` (in process, CPU time).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.load import Request

TENANT = "default"  # the open-mode tenant
PROFILE = "2876db3d-ed16-4cf2-af82-98a383009e3c"
VIDEO = "62dcb602-e95b-483c-badf-9497914717a5"
INPUT = "340dd145-c06b-4d72-a8cc-0f6b270eb065"
# The job every read asks for, and the one every progress report changes.
READ_ID = uuid.UUID("0b9f6a8e-6c3e-4d0c-9d4f-5d7a1e2b3c4d")
REPORT_ID = uuid.UUID("7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f")

JOB_FIELDS = "id status progress profile video inputs createdAt"

GATEWAY = "gateway"
PER_CALL = "bare, connection per call"
REUSED = "bare, one reused connection"
FASTEST = "bare, fastest (plain SQL)"
STRAWBERRY = "strawberry, default"
# The yardstick every ratio is against: the fastest route that can be written for the
# same answer (bench.baselines.bare_fastest). It serves the reads only.
BEST_BARE = FASTEST


def _graphql(query: str) -> Request:
    return Request("POST", "/graphql", json.dumps({"query": query}).encode())


def _persisted(query: str) -> Request:
    """The hash alone, as Apollo Client's persisted-query link sends a known query."""
    sha256 = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    return Request("POST", "/graphql", json.dumps({"extensions": extensions}).encode())


def _registration(query: str) -> Request:
    """The hash with its document: what registers it (the link's retry)."""
    sha256 = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    body = {"query": query, "extensions": extensions}
    return Request("POST", "/graphql", json.dumps(body).encode())


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    requests: dict[str, Request]  # server -> the request it answers
    check: Callable[[dict[str, Any]], bool]  # gateway answer is the expected one
    # Sent to the gateway once before anything is measured (a persisted query's registration).
    setup: Request | None = None


def _graphql_ok(field: str) -> Callable[[dict[str, Any]], bool]:
    def check(answer: dict[str, Any]) -> bool:
        data = answer.get("data")
        return "errors" not in answer and isinstance(data, dict) and data.get(field) is not None

    return check


def _page_size(answer: dict[str, Any]) -> int:
    return len(answer["data"]["jobs"]["edges"])


def scenarios() -> list[Scenario]:
    job_query = f'{{ job(id: "{READ_ID}") {{ {JOB_FIELDS} }} }}'
    jobs_query = f"{{ jobs(first: 50) {{ edges {{ node {{ {JOB_FIELDS} }} }} }} }}"
    # As a Relay client pages: every edge's cursor and the page's end.
    cursors_query = (
        f"{{ jobs(first: 50) {{ edges {{ cursor node {{ {JOB_FIELDS} }} }} "
        f"pageInfo {{ endCursor hasNextPage }} }} }}"
    )
    create = (
        f'mutation {{ createJob(input: {{inputs: ["{INPUT}"], profile: "{PROFILE}", '
        f'video: "{VIDEO}"}}) {{ {JOB_FIELDS} }} }}'
    )
    report = f'mutation {{ updateJobProgress(id: "{REPORT_ID}", progress: 50) {{ {JOB_FIELDS} }} }}'
    bare_one = Request("GET", f"/jobs/{READ_ID}")
    bare_page = Request("GET", "/jobs?limit=50")
    return [
        Scenario(
            "job",
            "`job(id)` query",
            {
                GATEWAY: _graphql(job_query),
                PER_CALL: bare_one,
                REUSED: bare_one,
                FASTEST: bare_one,
                STRAWBERRY: _graphql(job_query),
            },
            _graphql_ok("job"),
        ),
        Scenario(
            "job-persisted",
            "`job(id)` query, persisted (hash only)",
            {GATEWAY: _persisted(job_query), FASTEST: bare_one},
            _graphql_ok("job"),
            setup=_registration(job_query),
        ),
        Scenario(
            "jobs",
            "`jobs(first: 50)` list",
            {
                GATEWAY: _graphql(jobs_query),
                PER_CALL: bare_page,
                REUSED: bare_page,
                FASTEST: bare_page,
                STRAWBERRY: _graphql(jobs_query),
            },
            lambda answer: _graphql_ok("jobs")(answer) and _page_size(answer) == 50,
        ),
        Scenario(
            "jobs-persisted",
            "`jobs(first: 50)` list, persisted (hash only)",
            {GATEWAY: _persisted(jobs_query), FASTEST: bare_page},
            lambda answer: _graphql_ok("jobs")(answer) and _page_size(answer) == 50,
            setup=_registration(jobs_query),
        ),
        Scenario(
            "cursors",
            "`jobs(first: 50)` list with every edge's cursor",
            {GATEWAY: _graphql(cursors_query)},
            lambda answer: _graphql_ok("jobs")(answer) and _page_size(answer) == 50,
        ),
        Scenario(
            "create",
            "`createJob` mutation",
            {
                GATEWAY: _graphql(create),
                PER_CALL: Request(
                    "POST",
                    "/jobs",
                    json.dumps({"inputs": [INPUT], "profile": PROFILE, "video": VIDEO}).encode(),
                ),
                REUSED: Request(
                    "POST",
                    "/jobs",
                    json.dumps({"inputs": [INPUT], "profile": PROFILE, "video": VIDEO}).encode(),
                ),
            },
            _graphql_ok("createJob"),
        ),
        Scenario(
            "progress",
            "`updateJobProgress` mutation",
            {
                GATEWAY: _graphql(report),
                PER_CALL: Request("POST", f"/jobs/{REPORT_ID}/progress", b'{"progress": 50}'),
                REUSED: Request("POST", f"/jobs/{REPORT_ID}/progress", b'{"progress": 50}'),
            },
            _graphql_ok("updateJobProgress"),
        ),
        Scenario(
            "rest",
            "REST `GET /encoding/jobs/{id}`",
            {
                GATEWAY: Request("GET", f"/encoding/jobs/{READ_ID}"),
                PER_CALL: bare_one,
                REUSED: bare_one,
                FASTEST: bare_one,
            },
            lambda answer: answer.get("id") == str(READ_ID),
        ),
    ]


def prepare_database(url: str, count: int) -> None:
    """Migrate, then add `count` jobs of tenant `default` in one transaction.

    Through SQLAlchemy's pysqlite dialect: the one `databases` uses, so the values are
    stored exactly as the gateway stores them.
    """
    import sqlalchemy as sa

    from app import db
    from app.settings import Settings

    asyncio.run(db.migrate(Settings(database_url=url)))
    start = datetime.now(UTC) - timedelta(seconds=count)
    rows = []
    for index in range(count):
        job_id = uuid.uuid4()
        if index == count // 2:
            job_id = READ_ID
        elif index == count - 1:
            job_id = REPORT_ID
        when = start + timedelta(seconds=index)
        rows.append(
            {
                "id": job_id,
                "tenant": TENANT,
                "status": 0 if index % 3 or index == count - 1 else 1,
                "progress": 0 if index == count - 1 else index % 101,
                "profile": uuid.UUID(PROFILE),
                "video": uuid.uuid4(),
                "inputs": [str(uuid.uuid4()) for _ in range(1 + index % 3)],
                "created_at": when,
                "updated_at": when,
                "deleted_at": None,
            }
        )
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(db.jobs.insert(), rows)
    engine.dispose()
