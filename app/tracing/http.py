"""A span per HTTP request and WebSocket connection: OpenTelemetry's ASGI middleware.

Configured for the gateway: named by route template (`GET /encoding/jobs/{job_id}`,
never a raw path: one name per route, whatever the ids); an incoming `traceparent`
continued (the middleware's own extraction, OTEL_PROPAGATORS); no span per ASGI
message (a WebSocket connection would get one per frame); query values, which may hold
GraphQL variables or cursors, replaced by `[REDACTED]` (the names stay); the
Authorization and Cookie headers sanitized even if an operator asks for request
headers (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span, TracerProvider
from starlette.routing import BaseRoute, Match

from app.logs import REDACTED

# Never captured as span attributes, whatever OTEL_INSTRUMENTATION_HTTP_CAPTURE_* ask.
SANITIZED_HEADERS = ["authorization", "cookie", "set-cookie", "proxy-authorization"]
_SANITIZE_VARIABLE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
# Span attributes (old and new HTTP conventions) that carry the query string.
_QUERY_ATTRIBUTES = ("http.target", "http.url", "url.query", "url.full")


def span_details(routes: Sequence[BaseRoute]) -> Any:
    """The middleware's `default_span_details`: the route template as the span name."""

    def details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        route = None
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                route = getattr(candidate, "path", None)
                break
        if scope["type"] == "websocket":
            return f"WebSocket {route or ''}".rstrip(), {"http.route": route} if route else {}
        method = scope.get("method", "HTTP")
        # An unknown path is named by its method alone: no name per stray URL.
        return (f"{method} {route}", {"http.route": route}) if route else (method, {})

    return details


def redact_query(value: str, whole: bool = False) -> str:
    """`value` (a URL or target; `whole`: a bare query) with each query value redacted."""
    if whole:
        return "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(value, True))
    if "?" not in value:
        return value
    parts = urlsplit(value)
    return urlunsplit(parts._replace(query=redact_query(parts.query, whole=True)))


def _server_request_hook(span: Span, scope: dict[str, Any]) -> None:
    if not scope.get("query_string") or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _QUERY_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redact_query(value, whole=name == "url.query"))


def middleware_options(
    routes: Sequence[BaseRoute], tracer_provider: TracerProvider
) -> dict[str, Any]:
    extra = [
        name.strip().lower()
        for name in os.environ.get(_SANITIZE_VARIABLE, "").split(",")
        if name.strip()
    ]
    return {
        "default_span_details": span_details(routes),
        "server_request_hook": _server_request_hook,
        "tracer_provider": tracer_provider,
        # Metrics are /metrics' business; the middleware's own would be a second set.
        "meter_provider": NoOpMeterProvider(),
        "exclude_spans": ["receive", "send"],
        "http_capture_headers_sanitize_fields": [*SANITIZED_HEADERS, *extra],
    }
