"""docs/nginx.conf, run by a real nginx in front of a real gateway (skipped without nginx)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest

from support.servers import ROOT, Server, free_port, start_server
from tests.tokens import JOB_INPUT, SECRET, bearer, token
from tests.wsclient import JOB_UPDATES, graphql_socket

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

AUTH = bearer(token())


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert NGINX is not None
    folder = tmp_path_factory.mktemp("proxy")
    gateway: Server = start_server(
        {"DATABASE_URL": f"sqlite:///{folder}/jobs.db", "AUTH_JWT_SECRET": SECRET},
        folder / "server.log",
    )
    port = free_port()
    config = (ROOT / "docs" / "nginx.conf").read_text()
    gateway_port = gateway.url.rsplit(":", 1)[1]
    config = config.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{gateway_port};")
    config = config.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    (folder / "nginx.conf").write_text(config)
    command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g"]
    settings = f"daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log;"
    checked = subprocess.run([*command, settings, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen([*command, settings])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        nginx.terminate()
        nginx.wait(10)
        gateway.stop()


def test_requests_pass_through_with_the_gateways_headers(proxy: str) -> None:
    created = httpx.post(f"{proxy}/encoding/jobs", json=JOB_INPUT, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.headers["x-content-type-options"] == "nosniff"
    job_id = created.json()["id"]
    assert httpx.get(f"{proxy}/encoding/jobs/{job_id}", headers=AUTH).json()["id"] == job_id


def test_the_proxy_refuses_long_header_lines_and_large_bodies(proxy: str) -> None:
    long_line = httpx.get(f"{proxy}/healthz", headers={"X-Big": "a" * 9000})
    assert long_line.status_code == 400  # nginx: "Request Header Or Cookie Too Large"
    large = httpx.post(
        f"{proxy}/encoding/jobs",
        content=b"{" + b" " * 1_100_000 + b"}",
        headers={"content-type": "application/json", **AUTH},
    )
    assert large.status_code == 413


@pytest.mark.anyio
async def test_subscriptions_work_through_the_proxy(proxy: str) -> None:
    ws_url = "ws" + proxy.removeprefix("http") + "/graphql"
    with anyio.fail_after(30):
        async with graphql_socket(ws_url, payload=AUTH) as ws:
            await ws.subscribe("u", JOB_UPDATES)
            async with httpx.AsyncClient() as http:
                created = await http.post(f"{proxy}/encoding/jobs", json=JOB_INPUT, headers=AUTH)
            assert (await ws.job("u"))["id"] == created.json()["id"]
