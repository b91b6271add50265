"""The WebSocket layer of /graphql: strawberry's two protocol handlers, with `jobProgress`
and `jobUpdates` fanned out (one execution per change, one frame written per subscriber,
a slow client holding up nobody). Design: docs/architecture.md, "WebSocket layer".
Modules: handlers (the protocols), messages (malformed ones), expiry (token), fastpath
(serving an operation by fan-out), plan (which documents), groups (the registry), outbox.
"""

from app.graphql.ws.groups import Fanout
from app.graphql.ws.handlers import LegacyWSHandler, TransportWSHandler
from app.graphql.ws.plan import Plans

__all__ = ["Fanout", "LegacyWSHandler", "Plans", "TransportWSHandler"]
