"""Without PUBLIC_URL, each job's `url` names the address actually served, and resolves:
here uvicorn run directly, bound to every interface (0.0.0.0), where the url names the
address the client connected to (`python -m app serve --port P`: tests/test_clients.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from app.urls import served_url
from support.servers import ROOT, free_port
from tests.tokens import JOB_INPUT

CREATE = "mutation($input: CreateJobInput!) { createJob(input: $input) { id url } }"


def created_urls(base: str) -> list[str]:
    """The `url` of a job created over REST (and its Location), and over GraphQL."""
    rest = httpx.post(base + "/encoding/jobs", json=JOB_INPUT)
    assert rest.status_code == 201, rest.text
    assert rest.headers["location"] == rest.json()["url"]
    graphql = httpx.post(
        base + "/graphql", json={"query": CREATE, "variables": {"input": JOB_INPUT}}
    )
    return [rest.json()["url"], graphql.json()["data"]["createJob"]["url"]]


def assert_resolves(url: str) -> None:
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    assert response.json()["url"] == url


def test_uvicorn_run_directly_on_every_interface(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PUBLIC_URL"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/jobs.db"
    with (tmp_path / "log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # A client on this machine reaches it on loopback (open mode serves no other).
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start:\n{(tmp_path / 'log').read_text()}")
            time.sleep(0.05)
        for url in created_urls(base):
            assert url.startswith(f"{base}/encoding/jobs/")
            assert_resolves(url)
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"scheme": "http", "server": ("127.0.0.1", 18521)}, "http://127.0.0.1:18521"),
        ({"scheme": "https", "server": ("10.0.0.7", 443)}, "https://10.0.0.7"),
        ({"scheme": "ws", "server": ("::1", 8000)}, "http://[::1]:8000"),
        ({"scheme": "wss", "server": ("api.example.test", 443)}, "https://api.example.test"),
        # A Unix socket has no address: the Host header, if it is only a host and port.
        (
            {
                "scheme": "http",
                "server": ("/run/jobs.sock", None),
                "headers": [(b"host", b"jobs.internal:8080")],
            },
            "http://jobs.internal:8080",
        ),
        (
            {"scheme": "http", "server": None, "headers": [(b"host", b"evil.test/x?y")]},
            "http://localhost",
        ),
    ],
    ids=["ipv4", "https default port", "ipv6 websocket", "wss name", "unix socket", "bad host"],
)
def test_the_served_address_as_a_url(scope: dict[str, object], expected: str) -> None:
    assert served_url(scope) == expected
