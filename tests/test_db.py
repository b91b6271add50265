"""Storage: data survives restarts and migrations; listings use an index at any depth."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite as sqlite_dialect
from starlette.testclient import TestClient

from app.jobs.model import JobFilter, JobStatus
from app.jobs.store import list_query
from app.main import create_app
from app.settings import Settings
from tests.jobs_data import request_object


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db")
    with TestClient(create_app(settings)) as client:
        job = client.post("/encoding/jobs", json=request_object()).json()
        client.patch(f"/encoding/jobs/{job['id']}", json={"progress": 42})
    with TestClient(create_app(settings)) as client:
        again = client.get(f"/encoding/jobs/{job['id']}").json()
    assert again["progress"] == 42
    assert again["inputs"] == job["inputs"]


FILTERS = {
    "default": JobFilter(),
    "include-deleted": JobFilter(include_deleted=True),
    "status": JobFilter(status=JobStatus.COMPLETED),
    "video": JobFilter(video=uuid.uuid4()),
    "profile": JobFilter(profile=uuid.uuid4()),
}


@pytest.mark.parametrize("after", [None, 500_000], ids=["first-page", "deep-page"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_every_listing_is_an_index_range_scan(tmp_path: Path, name: str, after: int | None) -> None:
    path = tmp_path / "jobs.db"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{path}"))):
        pass  # migrated on start
    statement = list_query("default", FILTERS[name], 21, after).compile(
        dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True}
    )
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE")
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))
    # An index gives the rows in order: no full scan, no sort of the whole match.
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    assert not plan.startswith("SCAN jobs"), plan
