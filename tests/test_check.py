"""`python -m app check` and /readyz tell an operator what is wrong, one line each."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app import db, health
from app.main import create_app
from app.settings import Settings
from support.servers import ROOT, free_port
from tests.tokens import SECRET, bearer, token


def check(**env: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "app", "check"],
        cwd=ROOT,
        env={**os.environ, "BROADCAST_URL": "memory://", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


def test_all_is_well(database_url: str) -> None:
    asyncio.run(db.migrate(Settings(database_url=database_url)))
    status, lines = check(DATABASE_URL=database_url)
    assert status == 0
    assert lines == [
        f"database: ok ({database_url})",
        f"migrations: ok (the schema is at {health.revisions()[-1]}, the newest)",
        "broadcast: ok (memory://)",
    ]


@pytest.mark.engines("sqlite")
def test_pending_migrations_are_named_with_what_to_run(database_url: str) -> None:
    first, *later = health.revisions()
    asyncio.run(db.migrate(Settings(database_url=database_url), first))
    status, lines = check(DATABASE_URL=database_url)
    assert status == 1
    assert lines[1] == (
        f"migrations: {len(later)} pending ({', '.join(later)}; the schema is at {first}): "
        "run `python -m app migrate`"
    )


def test_a_database_and_a_broker_that_cannot_be_reached_say_so() -> None:
    closed = free_port()
    status, lines = check(
        DATABASE_URL=f"postgresql://gateway:secret@127.0.0.1:{closed}/jobs",
        BROADCAST_URL=f"redis://127.0.0.1:{closed}/0",
    )
    assert status == 1
    assert len(lines) == 3
    assert lines[0].startswith("database: cannot reach the database: ")
    # Where, without the password.
    assert lines[0].endswith(f"(postgresql://gateway:***@127.0.0.1:{closed}/jobs)")
    assert lines[1] == "migrations: not checked: no database"
    assert lines[2].startswith("broadcast: cannot reach the broadcast broker: ConnectionError")


def test_a_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    status, lines = check(DATABASE_URL=f"sqlite:///{path}")
    assert status == 1
    assert lines[0].startswith(f"database: SQLite file '{path}' does not exist")
    assert not path.exists()


@pytest.mark.engines("sqlite")
def test_readyz_lists_each_problem_on_one_line(database_url: str) -> None:
    *_, before, newest = health.revisions()
    asyncio.run(db.migrate(Settings(database_url=database_url), before))
    settings = Settings(database_url=database_url, migrate_on_start=False)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["problems"] == [
        f"migrations: 1 pending ({newest}; the schema is at {before}): run `python -m app migrate`"
    ]
    assert body["database"] == "ok" and body["broadcast"] == "ok"


@pytest.mark.engines("sqlite")
def test_readyz_details_are_for_this_machine_or_a_token_holder(database_url: str) -> None:
    *_, before, newest = health.revisions()
    asyncio.run(db.migrate(Settings(database_url=database_url), before))
    settings = Settings(database_url=database_url, migrate_on_start=False, auth_jwt_secret=SECRET)
    app = create_app(settings)
    with TestClient(app, client=("203.0.113.9", 40000)) as remote:
        for headers in ({}, {"Authorization": "Bearer forged"}):
            ready = remote.get("/readyz", headers=headers)
            # The status a probe reads, and which parts: no revisions, addresses, errors.
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "unavailable",
                "problems": ["migrations"],
                "details": "for callers on this machine or with a valid bearer token",
            }
        # Any valid token, whatever its scope, reads it all.
        ready = remote.get("/readyz", headers=bearer(token(scope="jobs:report")))
        assert ready.status_code == 503
        assert newest in ready.json()["problems"][0] and "broker" in ready.json()
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        ready = local.get("/readyz")
        assert ready.status_code == 503
        assert newest in ready.json()["problems"][0] and "broker" in ready.json()
