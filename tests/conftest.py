from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import Database
from starlette.testclient import TestClient

from app import db
from app.main import create_app
from app.settings import Settings
from support.postgres import PostgresDatabases
from support.servers import Server, start_server

PUBLIC_URL = "https://api.example.test"

GraphQL = Callable[..., dict[str, Any]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Every test that uses the database runs once per engine, as encode/databases does:
# SQLite always, PostgreSQL when TEST_POSTGRES_URL is set (skipped, with the reason, if
# not). `@pytest.mark.engines("sqlite")` keeps a test to the engines it names.
ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engines(*names): run only on these database engines (sqlite, postgresql)"
    )
    config.addinivalue_line(
        "markers",
        "slow: takes over a minute on a busy machine (builds and installs the wheel); "
        "CI runs it, `-m 'not slow'` leaves it out while developing",
    )
    config.addinivalue_line(
        "markers",
        "fast_paths: asserts the fast paths' own workings (fan-out groups, execution counts, "
        "PlainFieldsExecutor, pooled SQLite); skipped when FAST_PATHS=false turns them off",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # CI runs the GraphQL and subscription tests once more with FAST_PATHS=false: the
    # behaviour tests must hold both ways; these look at what is only there when on.
    if Settings().fast_paths:
        return
    skip = pytest.mark.skip(reason="FAST_PATHS=false: the fast paths it looks at are off")
    for item in items:
        if item.get_closest_marker("fast_paths"):
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    if any(
        "database_url" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")
    ):
        return  # the test chooses its own URLs
    marker = metafunc.definition.get_closest_marker("engines")
    engines = list(marker.args) if marker else list(ENGINES)
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise pytest.UsageError(f"engines marker: unknown engine(s) {sorted(unknown)}")
    metafunc.parametrize("database_url", engines, indirect=True, ids=engines)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    admin_url = os.environ.get("TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    databases = PostgresDatabases(admin_url)
    try:
        databases.start()
        yield databases
    finally:
        databases.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for this test alone: a new SQLite file, or the session's
    PostgreSQL database emptied (see tests/postgres.py)."""
    engine = getattr(request, "param", "sqlite")
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path}/jobs.db"
        return
    postgres: PostgresDatabases = request.getfixturevalue("postgres_databases")
    yield postgres.fresh()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated database on `database_url`, connected as the app connects."""
    settings = Settings(database_url=database_url)
    await db.migrate(settings)
    database = await db.connect(settings)
    yield database
    await database.disconnect()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, public_url=PUBLIC_URL)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=PUBLIC_URL) as test_client:
        yield test_client


@pytest.fixture
def gql(client: TestClient) -> GraphQL:
    """POST a GraphQL operation; returns the decoded JSON body (asserting HTTP 200)."""

    def run(query: str, **variables: Any) -> dict[str, Any]:
        response = client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return run


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """A real `python -m app serve` process (uvicorn) on a free port."""
    running = start_server({"DATABASE_URL": database_url}, tmp_path / "server.log")
    yield running
    running.stop()
