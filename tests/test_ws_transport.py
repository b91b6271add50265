"""The WebSocket transport against clients that need no token to hurt: a ping flood
from a client that never reads, a message in 1-byte frames, too many connections.

Real `python -m app serve` processes; the hostile clients are raw sockets writing
frames by hand (no client library would send them), and the server's memory is its
resident set (/proc/PID/status VmRSS).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from websockets.exceptions import ConnectionClosed

from support.servers import ROOT, Server, free_port, start_server
from tests.wsclient import PROTOCOLS, TRANSPORT_WS, graphql_socket

MIB = 1024 * 1024
MAX_CONNECTIONS = 3
TEXT, CONTINUATION, PING, PONG = 0x1, 0x0, 0x9, 0xA


def serve(folder: Path, **env: str) -> Server:
    return start_server({"DATABASE_URL": f"sqlite:///{folder}/jobs.db", **env}, folder / "log")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = serve(tmp_path_factory.mktemp("ws-transport"))
    yield running
    running.stop()


def rss(server: Server) -> int:
    return server.rss_kib() * 1024


def settled_rss(server: Server, limit: float = 30) -> int:
    """The server's RSS once it has stopped growing for a second (it may still be
    working through what it was sent)."""
    deadline = time.monotonic() + limit
    last = rss(server)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss(server)
        if now <= last:
            return now
        last = now
    return last


def upgrade(server: Server, protocol: str = TRANSPORT_WS) -> socket.socket:
    """A raw socket past the WebSocket handshake (it sends no `connection_init`)."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A client frame; the mask is all zeros (any key is valid), so the payload is as is."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed (or reset) the connection: reading ends, or fails
    as a reset does, within 5 s; False if it is still open and silent."""
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass  # what it sent before closing (pongs, a close frame)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first & 0x0F, exactly(length)


def test_a_ping_flood_from_a_client_that_never_reads_stays_bounded(gateway: Server) -> None:
    # Before: every pong waited in the server's write buffer (684 MB of pings held
    # 625 MiB). Now a client pinging past a small allowance is cut off (and one that
    # does not read is not read from meanwhile).
    flood = 32 * MIB
    burst = frame(PING, b"p" * 125) * 512
    with closing(upgrade(gateway)) as sock:
        before = rss(gateway)
        sock.settimeout(5)
        sent = 0
        try:
            while sent < flood:
                sent += sock.send(burst)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass  # cut off, or held back by TCP
        grown = settled_rss(gateway) - before
        assert closed_by_server(sock), "a client pinging this fast was not cut off"
    print(f"ping flood: {sent / MIB:.1f} MiB sent, server grew {grown / MIB:.1f} MiB")
    assert sent < flood, "the server read 32 MiB of pings"
    assert grown < 12 * MIB, (
        f"{sent / MIB:.1f} MiB of pings grew the server by {grown / MIB:.1f} MiB"
    )


def test_a_message_in_one_byte_frames_costs_its_size(gateway: Server) -> None:
    # Before: each 1-byte frame was kept as its own bytes object, ~40 bytes each, and
    # parsing them (~5 µs a frame) held the event loop for seconds. Now a message in
    # more than a thousand frames ends the connection.
    frames = 600_000
    with closing(upgrade(gateway)) as sock:
        before = rss(gateway)
        sock.settimeout(10)  # a server that stops reading without closing fails, not hangs
        sock.sendall(frame(TEXT, b"{", fin=False))
        batch = frame(CONTINUATION, b" ", fin=False) * 10_000
        sent = 0
        try:
            for _ in range(frames // 10_000):
                sock.sendall(batch)
                sent += 10_000
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert closed_by_server(sock), "a message in 600,000 frames did not end the connection"
        grown = settled_rss(gateway) - before
    print(f"{sent:,} 1-byte frames sent: server grew {grown / MIB:.1f} MiB")
    assert sent < frames, "the server read 600,000 fragments of one message"
    assert grown < 8 * MIB, f"{sent:,} 1-byte frames grew the server by {grown / MIB:.1f} MiB"
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connections_past_the_limit_are_told_to_try_again_later(
    tmp_path: Path, protocol: str
) -> None:
    server = serve(tmp_path, MAX_WEBSOCKET_CONNECTIONS=str(MAX_CONNECTIONS))
    try:
        with anyio.fail_after(30):
            async with graphql_socket(server.ws_url, protocol):
                async with graphql_socket(server.ws_url, protocol):
                    async with graphql_socket(server.ws_url, protocol):
                        with pytest.raises(ConnectionClosed) as refused:
                            async with graphql_socket(server.ws_url, protocol) as extra:
                                await extra.receive()
                        assert refused.value.rcvd is not None
                        assert refused.value.rcvd.code == 1013
                        assert "Try Again Later" in refused.value.rcvd.reason
                        # HTTP is not held back by open WebSockets.
                        async with httpx.AsyncClient(base_url=server.url) as http:
                            assert (await http.get("/healthz")).status_code == 200
            # Closed ones make room again.
            await anyio.sleep(0.5)
            async with graphql_socket(server.ws_url, protocol) as again:
                assert again.protocol == protocol
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()


TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def test_a_client_that_stops_reading_is_cut_when_its_keepalive_times_out(
    tmp_path: Path,
) -> None:
    # As documented for `uvicorn app.main:app` users, with short keep-alive pings.
    # uvicorn closed such a connection by first flushing what it held for the
    # client: for one that reads nothing, never; the connection stayed open.
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    command = [
        sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
        "--ws", "app.wsprotocol:BoundedWebSocketProtocol",
        "--ws-ping-interval", "1", "--ws-ping-timeout", "1",
    ]  # fmt: skip
    with (tmp_path / "log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=tmp_path / "log")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.1)
        with closing(upgrade(server)) as sock:
            sock.settimeout(3)
            burst = frame(PING, b"p" * 125) * 512
            # Until TCP holds it back, or the server cuts it already.
            with suppress(TimeoutError, ConnectionResetError, BrokenPipeError):
                while True:
                    sock.send(burst)
            deadline = time.monotonic() + 20
            while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline:
                time.sleep(0.2)
            assert tcp_state(sock) != TCP_ESTABLISHED, "the server still holds the connection"
    finally:
        server.stop()
