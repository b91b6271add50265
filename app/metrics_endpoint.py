"""GET /metrics: who may read it, the job counts it refreshes, the Prometheus text.

Who may read it (`check_access`): a caller on this machine (loopback; behind a proxy
on this machine, the client it names), a bearer token with the `metrics:read` scope,
or anyone once METRICS_PUBLIC=true. Others get 401 (no or a bad token) or 403 (a
token without the scope), with the REST error body.
"""

from __future__ import annotations

import asyncio
import logging
import time

from databases import Database
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from app import metrics
from app.auth import METRICS_READ
from app.errors import Forbidden, Unauthenticated
from app.jobs import store
from app.logs import Throttle
from app.net import is_loopback
from app.outages import reason

logger = logging.getLogger("app.metrics")

# Seconds one count of jobs by status may take before the scrape answers without it.
COUNT_TIMEOUT = 5.0
WHO_MAY = (
    "metrics are served to callers on this machine, to bearer tokens with the "
    f"{METRICS_READ} scope, or to anyone with METRICS_PUBLIC=true"
)


def check_access(request: Request) -> None:
    """Return if the caller may read the metrics; else `Unauthenticated` or `Forbidden`."""
    if request.app.state.settings.metrics_public:
        return
    client = request.scope.get("client")
    if client and is_loopback(str(client[0])):
        return
    authorization = request.headers.get("authorization")
    if authorization is None:
        raise Unauthenticated(f"authentication required: {WHO_MAY}")
    caller = request.app.state.verifier.verify(authorization)
    if METRICS_READ not in caller.scopes:
        raise Forbidden(f"this token lacks the {METRICS_READ} scope ({WHO_MAY})")


class JobCounts:
    """The `jobs_gateway_jobs` gauge, counted again by a scrape that finds it older
    than `interval` seconds. At a million jobs a count reads a whole index (0.2 s on
    SQLite, 0.5 s on PostgreSQL: docs/operations.md#metrics); a scrape every 15 s
    must not cost that each time. Concurrent scrapes share one count; a failed or
    slow one leaves the last counts in place (an outage must not stop the scrape)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._counted_at = -float("inf")
        self._lock = asyncio.Lock()
        self._failures = Throttle(60.0)

    async def refresh(self, database: Database) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return
            try:
                async with asyncio.timeout(COUNT_TIMEOUT):
                    counts = await store.count_by_status(database)
            except Exception as exc:  # served without: the scrape must answer
                if self._failures.ready():
                    logger.warning("could not count jobs by status for /metrics: %s", reason(exc))
            else:
                for status, count in counts.items():
                    metrics.JOBS.labels(status.name.lower()).set(count)
            self._counted_at = time.monotonic()

    def _fresh(self) -> bool:
        return time.monotonic() - self._counted_at < self.interval


async def scrape(request: Request) -> Response:
    check_access(request)
    counts: JobCounts = request.app.state.job_counts
    await counts.refresh(request.state.database)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(
        encoder(metrics.registry()),
        media_type=content_type,
        headers={"Cache-Control": "no-store"},
    )
