"""uvicorn's WebSocket protocol (`websockets-sansio`, its default), memory bounded.

`python -m app serve` runs it; with `uvicorn app.main:app`, pass
`--ws app.wsprotocol:BoundedWebSocketProtocol`. Two things uvicorn 0.55 leaves open,
in every implementation it has (websockets-sansio, wsproto; the deprecated
`websockets` one holds up to `ws_max_queue` whole messages per connection instead):

- A client that sends pings and never reads: each ping's pong goes into the
  transport's write buffer, which grows without end (684 MB of pings held 625 MiB).
  Here, while the write buffer is over its high-water mark, nothing more is read
  from the client: TCP stops it sending, and what it costs is the kernel's buffers.
  Its pongs (and our keep-alive pings) are not read either, so uvicorn's keep-alive
  (`ws_ping_interval` + `ws_ping_timeout`) gives up on it; the connection is then
  cut (its unsent data dropped), where uvicorn would wait for ever to flush it.
- A message in 1-byte continuation frames: each frame was kept as its own `bytes`
  object (~40 bytes per byte sent: ~36 MiB per connection under a 1 MiB
  `ws_max_size`). Here a message's frames are gathered into one bytearray.

This leans on uvicorn's protocol class and its attributes (`frames`, `read_paused`,
`handle_cont`, `receive`, `keepalive_timeout`): that dependency is kept here alone,
and tests/test_ws_transport.py checks the behaviour against a real server.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing_paused = False
        # The message being received in several frames, so far.
        self.gathered: bytearray | None = None

    # --- a client that does not read is not read from ----------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self.writing_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.writing_paused = False
        if not self.read_paused:  # uvicorn's own pause: a message waits for the app
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        message = await super().receive()
        if self.writing_paused:
            # uvicorn resumed reading once the app took its message; not yet.
            self.transport.pause_reading()
        return message

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        # uvicorn closes the transport, which first flushes what it holds: for a client
        # that reads nothing, never. Drop it instead (the peer has stopped answering).
        if self.transport.get_write_buffer_size():
            self.transport.abort()

    # --- a message's frames in one buffer ----------------------------------------------

    def handle_cont(self, event: Frame) -> None:
        # uvicorn's `handle_text`/`handle_bytes` put the first frame in `frames`.
        if self.gathered is None:
            self.gathered = bytearray(self.frames[0])
        self.gathered += event.data
        if event.fin:
            self.frames, self.gathered = [bytes(self.gathered)], None
            self.send_receive_event_to_app()
