"""uvicorn's WebSocket protocol (`websockets-sansio`, its default), memory bounded.

`python -m app serve` runs it; with `uvicorn app.main:app`, pass
`--ws app.wsprotocol:BoundedWebSocketProtocol`. Three things uvicorn 0.55 leaves open,
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
  `ws_max_size`). Here a message's frames are gathered into one bytearray, and a
  message in more than MAX_FRAGMENTS frames ends the connection: parsing costs ~5 µs
  a frame, so 1.2 million of them held the event loop for seconds.
- Time: whatever a client sent arrives in reads of up to 256 KiB, which the protocol
  parsed at once (37,000 one-byte frames: 200 ms with every other client waiting).
  Here a read is parsed SLICE bytes at a time, the event loop free between slices; and
  a client's pings beyond a small allowance (PINGS_BURST, then PINGS_PER_SECOND) end
  its connection: each costs a parse and a pong, and clients ping every few seconds.

This leans on uvicorn's protocol class and its attributes (`frames`, `read_paused`,
`handle_cont`, `handle_ping`, `receive`, `keepalive_timeout`,
`send_receive_event_to_app`): that dependency is kept here alone (app/compat.py lists it),
and tests/test_ws_transport.py checks the behaviour against a real server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

# Bytes of a read parsed before the event loop gets a turn.
SLICE = 16 * 1024
# Frames one message may come in (browsers send one; libraries split only huge ones).
MAX_FRAGMENTS = 1024
# Pings a client may send at once, and then a second.
PINGS_BURST = 16
PINGS_PER_SECOND = 1.0


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing_paused = False
        # The message being received in several frames, so far, and how many.
        self.gathered: bytearray | None = None
        self.fragments = 0
        # What is left of a read still being parsed a slice at a time.
        self.unparsed: bytearray | None = None
        self.ping_allowance = float(PINGS_BURST)
        self.ping_checked = time.monotonic()

    # --- a read parsed a slice at a time -----------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.unparsed is not None:  # (reading resumed by uvicorn meanwhile)
            self.unparsed += data
            return
        if len(data) <= SLICE:
            super().data_received(data)
            return
        self.unparsed = bytearray(data)
        self.transport.pause_reading()
        self._parse_slice()

    def _parse_slice(self) -> None:
        unparsed = self.unparsed
        if unparsed is None or self.transport.is_closing():
            self.unparsed = None
            return
        piece = bytes(unparsed[:SLICE])
        del unparsed[:SLICE]
        super().data_received(piece)
        if unparsed and not self.transport.is_closing():
            asyncio.get_running_loop().call_soon(self._parse_slice)
            return
        self.unparsed = None
        # Reading goes on unless uvicorn (a message waits for the app) or a client
        # that does not read holds it.
        if not self.read_paused and not self.writing_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def handle_ping(self) -> None:
        now = time.monotonic()
        self.ping_allowance = min(
            float(PINGS_BURST),
            self.ping_allowance + (now - self.ping_checked) * PINGS_PER_SECOND,
        )
        self.ping_checked = now
        self.ping_allowance -= 1
        if self.ping_allowance < 0:
            self.transport.abort()  # a ping flood: the client is told nothing more
            return
        super().handle_ping()

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
            self.fragments = 1
        self.fragments += 1
        if self.fragments > MAX_FRAGMENTS:
            self.transport.abort()  # nothing legitimate comes in this many pieces
            return
        self.gathered += event.data
        if event.fin:
            self.frames, self.gathered = [bytes(self.gathered)], None
            self.send_receive_event_to_app()
