"""HTTP requests counted and timed by route template, method and status (app.metrics).

The route is Starlette's route path (`/encoding/jobs/{id}`), never the raw path: a
label per job id would grow the metrics without end. A request refused before routing
(413, 408, open mode's 403) is matched against the routes here; one no route matches
is `unmatched`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics


class RequestMetrics:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        # Each (route, method, status)'s series, looked up once: `labels()` checks and
        # locks each time. Bounded as the labels are.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine of its own around a WebSocket connection: its frame would
        # stay for the connection's whole life (~0.4 KiB a subscriber, bench.subscriptions).
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # unless an answer starts: the app raised

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            key = (self._template(scope), metrics.bounded_method(scope["method"]), status)
            series = self._series.get(key)
            if series is None:
                route, method, _ = key
                series = self._series[key] = (
                    metrics.HTTP_REQUESTS.labels(route, method, str(status)),
                    metrics.HTTP_DURATION.labels(route, method),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # answered before the router ran
            route = next((r for r in self.routes if r.matches(scope)[0] is not Match.NONE), None)
        if isinstance(route, Mount):
            return route.path + "/{path}"
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else metrics.UNMATCHED
