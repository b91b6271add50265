"""GraphiQL and the jobs page over HTTP: served without a token, from our own files.

What the pages do in a browser is in test_browser.py.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app import web
from app.main import create_app
from app.settings import Settings
from app.web import assets

HTML = {"Accept": "text/html"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Token mode: the pages must load without one all the same.
    return Settings(
        database_url=f"sqlite:///{tmp_path}/jobs.db", auth_jwt_secret=secrets.token_urlsafe(32)
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def linked(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


needs_assets = pytest.mark.skipif(
    bool(assets.missing()), reason=assets.install_hint() or "browser files installed"
)


def test_graphiql_loads_without_a_token_and_only_from_the_gateway(client: TestClient) -> None:
    response = client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-auth="token"' in response.text
    links = linked(response.text)
    assert "vendor/graphiql/graphiql.min.js" in links
    # Nothing from a CDN: every file is a relative URL on this server.
    assert [link for link in links if "//" in link or link.startswith("/")] == []
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy


def test_jobs_page_and_the_root_redirect(client: TestClient) -> None:
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 302
    assert home.headers["location"] == "jobs"
    page = client.get("/", headers=HTML)
    assert page.url.path == "/jobs"
    assert page.status_code == 200
    assert "vendor/graphql-ws/umd/graphql-ws.min.js" in linked(page.text)
    assert "content-security-policy" in page.headers


def test_open_mode_pages_ask_for_no_token(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/open.db")
    with TestClient(create_app(settings)) as client:
        for path in ("/graphql", "/jobs"):
            assert 'data-auth="open"' in client.get(path, headers=HTML).text


@needs_assets
@pytest.mark.parametrize("path", ["/graphql", "/jobs"])
def test_every_file_a_page_links_is_served(client: TestClient, path: str) -> None:
    page = client.get(path, headers=HTML).text
    for link in linked(page):
        if link.startswith("data:") or link == "graphql":
            continue
        response = client.get("/" + link)
        assert response.status_code == 200, link
        assert response.content, link


@needs_assets
def test_only_the_listed_vendor_files_are_served(client: TestClient) -> None:
    assert client.get("/vendor/graphiql/graphiql.min.js").status_code == 200
    assert client.get("/vendor/graphiql/package.json").status_code == 404
    assert client.get("/vendor/graphiql/../react/package.json").status_code == 404
    assert client.get("/vendor/playwright-core/package.json").status_code == 404


def test_missing_browser_files_404_and_one_log_line_says_how_to_install(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node_modules = tmp_path / "node_modules"
    with caplog.at_level(logging.WARNING, logger="app.web"):
        routes = web.routes(settings, node_modules=node_modules)
    [record] = [r for r in caplog.records if r.name == "app.web"]
    message = record.getMessage()
    assert "\n" not in message
    assert str(node_modules) in message and "npm ci" in message
    assert "graphiql" in message and "graphql-ws" in message

    with TestClient(Starlette(routes=routes)) as client:
        assert client.get("/vendor/graphiql/graphiql.min.js").status_code == 404
        assert client.get("/jobs").status_code == 200


def test_installed_files_log_nothing(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node_modules = tmp_path / "node_modules"
    for package, files in assets.FILES.items():
        for name in files:
            path = node_modules / package / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("/* stand-in */")
    with caplog.at_level(logging.WARNING, logger="app.web"):
        routes = web.routes(settings, node_modules=node_modules)
    assert [r for r in caplog.records if r.name == "app.web"] == []
    with TestClient(Starlette(routes=routes)) as client:
        assert client.get("/vendor/react/umd/react.production.min.js").text == "/* stand-in */"
