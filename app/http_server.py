"""How `python -m app serve` runs uvicorn: what the HTTP server itself bounds.

uvicorn's default HTTP/1.1 protocol (httptools) buffers a request head of any size
for as long as a client cares to take: an unterminated 130 MiB header was held
(+188 MiB) and then answered, and a connection that sends half a head, or nothing,
stays open for good. Its h11 protocol has a head size limit, but costs twice the
CPU per request here (/healthz 179 µs against 89 µs, docs/limits.md), and has no
head timeout either. So the gateway keeps httptools and subclasses its protocol
(uvicorn takes a protocol class as `http=`) to add both bounds.

What this leans on beyond asyncio's Protocol interface: httptools' parser callbacks
(`on_message_begin`/`on_headers_complete`/`on_message_complete`, which uvicorn
implements on the protocol itself), and uvicorn's `transport`, `loop`, `cycle` and
`server_state.default_headers` attributes. All of it lives here;
tests/test_http_limits.py fails if a uvicorn upgrade moves any of it.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.middleware import RESPONSE_HEADERS
from app.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The HTTP part of `uvicorn.run`'s arguments for these settings."""
    return {
        "http": BoundedHeadProtocol,
        "headers": RESPONSE_HEADERS,
        # uvicorn's own default, said here: an idle kept-alive connection is closed
        # after this long (a new connection's idle time is the head timeout).
        "timeout_keep_alive": 5,
    }


@cache
def _settings() -> Settings:
    # Read in each worker process (uvicorn imports this class there by name);
    # `serve` has already checked the environment.
    return Settings.from_env()


class BoundedHeadProtocol(HttpToolsProtocol):
    """HTTP/1.1 with a bound on each request head: MAX_HEADER_BYTES bytes, sent
    within REQUEST_HEADER_TIMEOUT seconds of connecting or of its first byte.

    Over the size: 431 and the connection closed, with at most one more read
    (256 KiB) buffered. Over the time: 408 (just closed if nothing was sent).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = _settings()
        self.max_head_bytes = settings.max_header_bytes
        self.head_timeout = settings.request_header_timeout
        # Between one request's end and the next one's headers, bytes are head.
        self.reading_head = True
        self.head_bytes = 0
        self.heads = 0  # request heads completed on this connection
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is closed too.
        self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Only a read that starts and ends inside one head counts: a request's
        # last body bytes never count as the next one's head. (Like h11's limit on
        # an incomplete event, a head that arrives whole in one read, at most
        # 256 KiB, is not refused; what is held stays bounded.)
        waiting, heads = self.reading_head, self.heads
        super().data_received(data)
        if not (waiting and self.reading_head and heads == self.heads):
            return
        if self.transport.is_closing():
            return
        self.head_bytes += len(data)
        if self.head_bytes > self.max_head_bytes:
            self._refuse(
                b"431 Request Header Fields Too Large",
                f"request head (request line and headers) larger than {self.max_head_bytes} "
                "bytes (MAX_HEADER_BYTES)",
            )
        elif self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    # httptools parser callbacks (uvicorn's protocol is the parser's callback object).
    def on_message_begin(self) -> None:
        self.head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.heads += 1
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.head_bytes == 0:
            self.transport.close()
            return
        self._refuse(
            b"408 Request Timeout",
            f"request head (request line and headers) not received within "
            f"{self.head_timeout} s (REQUEST_HEADER_TIMEOUT)",
        )

    def _refuse(self, status: bytes, message: str) -> None:
        """Answer `status` and close; just close if a response is under way
        (a pipelined request's head), which an answer here would corrupt."""
        self._stop_head_timer()
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode()
            head = [b"HTTP/1.1 " + status + b"\r\n"]
            head += [name + b": " + value + b"\r\n" for name, value in self._default_headers()]
            head += [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _default_headers(self) -> list[tuple[bytes, bytes]]:
        # uvicorn's server, date and configured headers (nosniff), as on its own answers.
        return list(self.server_state.default_headers)
