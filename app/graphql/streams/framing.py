"""How each HTTP subscription transport frames an operation's results on the wire.

- graphql-sse, distinct connections: one operation per response; `event: next` with
  the result as `data`, then `event: complete`.
- graphql-sse, single connection: the operations of one reservation on one response;
  `data` carries `{"id", "payload"}` (`next`) and `{"id"}` (`complete`).
- Apollo multipart subscriptions (`multipart/mixed; subscriptionSpec="1.0"`): each
  part `{"payload": result}`; `{}` as a heartbeat; a transport error (the stream ends
  without a result) `{"payload": null, "errors": [...]}`; the closing delimiter last.

Payloads arrive as JSON text (encoded once per change by the fan-out), so frames are
put together as text. JSON from orjson never holds a newline, which SSE requires.
"""

from __future__ import annotations

import orjson

SSE = "text/event-stream"
MULTIPART = "multipart/mixed"
BOUNDARY = "graphql"

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # A live stream: nothing may cache, compress or hold it back (nginx: X-Accel-Buffering).
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
MULTIPART_HEADERS = [
    (b"content-type", f'multipart/mixed; boundary="{BOUNDARY}"; subscriptionSpec="1.0"'.encode()),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


def _quoted(op_id: str) -> str:
    return orjson.dumps(op_id).decode()


class Framing:
    """One transport's frames. `operation_ids`: whether frames name their operation."""

    headers: list[tuple[bytes, bytes]] = SSE_HEADERS
    # As the metrics label it (app.metrics.STREAM_PROTOCOLS).
    protocol = "graphql-sse"
    # Sent once when the response starts, and once when it ends.
    opening = ""
    closing = ""
    heartbeat = ":\n\n"
    # Seconds between heartbeats: idle proxies and load balancers cut silent responses.
    heartbeat_interval = 12.0

    def next(self, op_id: str, payload: str) -> str:
        return f"event: next\ndata: {payload}\n\n"

    def complete(self, op_id: str) -> str:
        # An empty `data:` line: EventSource drops an event without one.
        return "event: complete\ndata: \n\n"

    def ended(self, op_id: str, error: str) -> list[str]:
        """The frames ending an operation the server stops with this error (a JSON
        GraphQL error object): the error as a result, then `complete`."""
        return [self.next(op_id, f'{{"errors":[{error}]}}'), self.complete(op_id)]


class DistinctSSE(Framing):
    """graphql-sse's distinct connections mode: one operation, frames without its id."""


class SingleSSE(Framing):
    """graphql-sse's single connection mode: every frame names its operation."""

    def next(self, op_id: str, payload: str) -> str:
        return f'event: next\ndata: {{"id":{_quoted(op_id)},"payload":{payload}}}\n\n'

    def complete(self, op_id: str) -> str:
        return f'event: complete\ndata: {{"id":{_quoted(op_id)}}}\n\n'


class Multipart(Framing):
    """Apollo's multipart HTTP subscriptions (as strawberry frames them, which
    @apollo/client's HttpLink reads)."""

    headers = MULTIPART_HEADERS
    protocol = "multipart"
    opening = f"--{BOUNDARY}"
    closing = "--\r\n"
    heartbeat_interval = 5.0  # the protocol's: a heartbeat every 5 seconds

    def __init__(self) -> None:
        self.heartbeat = self._part("{}")

    def _part(self, body: str) -> str:
        return f"\r\nContent-Type: application/json; charset=utf-8\r\n\r\n{body}\r\n--{BOUNDARY}"

    def next(self, op_id: str, payload: str) -> str:
        return self._part(f'{{"payload":{payload}}}')

    def complete(self, op_id: str) -> str:
        # The response ends after its one operation; the closing delimiter says so.
        return ""

    def ended(self, op_id: str, error: str) -> list[str]:
        # A transport error: the subscription ends without a GraphQL result.
        return [self._part(f'{{"payload":null,"errors":[{error}]}}')]
