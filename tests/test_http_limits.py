"""What `python -m app serve` bounds at the HTTP level: head size and time, body time.

A real uvicorn process, raw sockets: the bytes a hostile client sends, as it sends them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from support.servers import Server, rss_kib, start_server
from tests.jobs_data import request_object

HEAD_TIMEOUT = 1
BODY_TIMEOUT = 1
MAX_HEADER_BYTES = 32_768
# Far longer than any answer takes here; before the limits, the server never answered.
PATIENCE = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("http-limits")
    running = start_server(
        {
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "REQUEST_HEADER_TIMEOUT": str(HEAD_TIMEOUT),
            "REQUEST_BODY_TIMEOUT": str(BODY_TIMEOUT),
            "MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        },
        folder / "server.log",
    )
    yield running
    running.stop()


def connect(server: Server) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def test_a_head_over_the_limit_is_431(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 33_000)
        status, headers, body = answer(until_closed(sock))
    assert status == 431
    assert b"MAX_HEADER_BYTES" in body
    assert headers["x-content-type-options"] == "nosniff"


def test_an_endless_head_is_cut_without_being_held(server: Server) -> None:
    before = rss_mib(server.process.pid)
    size = 32 * 1024 * 1024
    chunk = b"a" * 65536
    sent = 0
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: what should happen
        received = until_closed(sock)
    # Before: all 32 MiB taken (+28 MiB held), then answered 200.
    assert received == b"" or answer(received)[0] == 431
    assert sent < 8 * 1024 * 1024
    assert rss_mib(server.process.pid) - before < 8


def test_a_head_sent_too_slowly_is_408_and_the_connection_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        status, headers, body = answer(until_closed(sock))
    assert status == 408
    assert b"REQUEST_HEADER_TIMEOUT" in body
    assert headers["connection"] == "close"
    assert time.monotonic() - started < PATIENCE / 2


def test_many_idle_and_half_sent_connections_are_all_closed(server: Server) -> None:
    # Before: every one of them still open after PATIENCE seconds.
    sockets = [connect(server) for _ in range(100)]
    try:
        for sock in sockets[::2]:
            sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        deadline = time.monotonic() + PATIENCE
        for sock in sockets:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            until_closed(sock)  # returns once closed, or raises TimeoutError
    finally:
        for sock in sockets:
            sock.close()
    # Serving on as before.
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert answer(until_closed(sock))[0] == 200


def drip(sock: socket.socket, stop: threading.Event) -> None:
    """One byte every 0.2 s: never idle long, never done."""
    while not stop.wait(0.2):
        try:
            sock.sendall(b" ")
        except OSError:
            return


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/encoding/jobs", "REQUEST_TIMEOUT"), ("/graphql", "BAD_REQUEST")],
)
def test_a_body_sent_too_slowly_is_408(server: Server, path: str, shape: str) -> None:
    stop = threading.Event()
    with connect(server) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 10000\r\n\r\n{".encode()
        )
        dripping = threading.Thread(target=drip, args=(sock, stop))
        dripping.start()
        started = time.monotonic()
        try:
            status, _, body = answer(until_closed(sock))
        finally:
            stop.set()
            dripping.join()
    assert status == 408
    assert time.monotonic() - started < PATIENCE / 2
    message = json.loads(body)
    if path == "/graphql":
        [error] = message["errors"]
        assert error["extensions"]["code"] == shape
    else:
        error = message["error"]
        assert error["code"] == shape
    assert "REQUEST_BODY_TIMEOUT" in error["message"]


def test_a_kept_alive_connection_may_idle_between_requests(server: Server) -> None:
    # The head timer runs while a head is due, not between requests (the
    # keep-alive timeout, 5 s, is uvicorn's): pausing longer than both limits is fine.
    body = json.dumps(request_object()).encode()
    request = (
        b"POST /encoding/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(request)
            received = b""
            while b'"deleted_at"' not in received and (chunk := sock.recv(65536)):
                received += chunk
            assert answer(received)[0] == 201
            time.sleep(HEAD_TIMEOUT + BODY_TIMEOUT + 0.5)


def test_every_answer_says_nosniff(server: Server) -> None:
    requests = {
        200: b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        404: b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        415: b"POST /encoding/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}",
        # uvicorn's own answer to bytes that are not HTTP.
        400: b"NOT HTTP\r\n\r\n",
        # A WebSocket handshake refused (open mode, a malformed Host).
        -400: b"GET /graphql HTTP/1.1\r\nHost: [::1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n",
    }
    for expected, request in requests.items():
        with connect(server) as sock:
            if not request.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in request:
                request += b"Connection: close\r\n\r\n"
            sock.sendall(request)
            status, headers, _ = answer(until_closed(sock))
        assert status == abs(expected), request
        assert headers.get("x-content-type-options") == "nosniff", (status, headers)


def test_a_malformed_host_on_a_websocket_handshake_is_400_saying_so(server: Server) -> None:
    # Open mode checks Host; "[::1" made urlsplit raise: a 500 before.
    with connect(server) as sock:
        sock.sendall(
            b"GET /graphql HTTP/1.1\r\nHost: [::1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        )
        status, _, body = answer(until_closed(sock))
    assert status == 400
    assert json.loads(body) == {
        "error": {"code": "BAD_REQUEST", "message": "Host: malformed ('[::1')"}
    }


def test_open_mode_refuses_what_a_local_proxy_forwards_for_another_machine(
    server: Server,
) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1, as from a proxy on this machine.
    with connect(server) as sock:
        sock.sendall(
            b"GET /encoding/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
        )
        status, _, body = answer(until_closed(sock))
    assert status == 403
    assert "203.0.113.9" in json.loads(body)["error"]["message"]
