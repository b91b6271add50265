"""Subscriptions over HTTP at /graphql: the GraphQL over Server-Sent Events protocol
(graphql-sse, distinct and single connection modes) and Apollo's multipart HTTP
subscriptions, served by the same machinery as WebSocket (the fan-out, the bounded
per-subscriber buffers, token expiry, shutdown). Modules: endpoint (which requests,
how answered, limits), stream (one response's operations), framing (each transport's
frames). Design: docs/architecture.md, "Subscriptions over HTTP".
"""

from app.graphql.streams.endpoint import Streams

__all__ = ["Streams"]
