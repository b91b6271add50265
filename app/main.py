"""create_app(settings): routes, lifespan, error handlers. `app` reads the environment."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app import db, health, logs, metrics, metrics_endpoint, openapi, outages, rest, web
from app.auth import TokenVerifier
from app.errors import AppError
from app.graphql.view import GraphQLView
from app.http_metrics import RequestMetrics
from app.jobs import idempotency
from app.jobs.cursors import CursorCodec
from app.jobs.events import CLOSE_TIMEOUT, JobEvents
from app.jobs.service import StoredStates
from app.jobs.sweeper import KeySweeper
from app.memory import IdleCollection, ReceivedBytesCollection
from app.middleware import BodyLimit, LoopbackOnly
from app.request_id import RequestId, new_request_id
from app.responses import error_response
from app.settings import Settings, SettingsError
from app.shutdown import drain_before_exit
from app.webhooks.deliverer import Deliverer
from app.webhooks.outbox import Outbox
from app.webhooks.secrets import SecretBox
from app.webhooks.sender import Sender
from app.webhooks.service import WebhookConfig
from app.wslimit import WebSocketLimit

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("app")


def create_app(settings: Settings, tracer_provider: TracerProvider | None = None) -> Starlette:
    """The gateway. Traces are on when the settings (OTEL_*) say so, or with a
    `tracer_provider` of the caller's (tests, an embedding application)."""
    # Memory freed once a wave of subscriptions or WebSocket connections has gone.
    idle = IdleCollection()
    tracing = None
    if settings.tracing or tracer_provider is not None:
        # Only now: with tracing off, no OpenTelemetry module is even imported.
        from app.tracing import Tracing

        tracing = Tracing.start(settings.traces_exporters, tracer_provider)
    graphql = GraphQLView(settings, tracing=tracing)
    # Job changes record webhook deliveries here; this process's deliverer sends them.
    outbox = Outbox(settings.public_url, settings.webhook_progress_interval)
    webhook_config = WebhookConfig(
        box=SecretBox.from_settings(settings),
        allow_private=settings.webhook_allow_private_targets,
    )
    outages.quiet_reconnect_logs()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        if settings.open_mode:
            warn_open_mode()
        if tracing is not None and settings.tracing:
            from app.tracing import describe

            logger.info("tracing on: spans to %s", describe(settings.traces_exporters))
        if settings.migrate_on_start:
            applied = await db.migrate(settings)
            if applied:
                logger.info("database migrated: applied %s", ", ".join(applied))
        database = await db.connect(
            settings, traced=tracing.database_class if tracing is not None else None
        )
        # After a broker outage, subscribers are caught up from the database.
        events = JobEvents(
            settings.broadcast_url,
            states=StoredStates(database),
            # Memory freed once a wave of subscribers has gone (app/memory.py).
            on_idle=idle,
            change_poll_interval=settings.change_poll_interval,
            exit_before_publishing_finish=settings.test_hook_exit_before_publishing_finish,
            spans=tracing.events(settings.broadcast_url) if tracing is not None else None,
        )
        if settings.test_hook_exit_before_publishing_finish:
            logger.warning(
                "TEST_HOOK_EXIT_BEFORE_PUBLISHING_FINISH is on: this process exits as soon as "
                "a job finishes. For fault drills and tests only."
            )
        # Expired idempotency keys deleted in small batches (app/jobs/sweeper.py).
        sweeper = KeySweeper(database, settings.idempotency_key_ttl)
        deliverer = Deliverer(
            database,
            outbox,
            webhook_config.box,
            Sender(
                settings.webhook_connect_timeout,
                settings.webhook_timeout,
                settings.webhook_allow_private_targets,
            ),
            poll_interval=settings.webhook_poll_interval,
            retry_scale=settings.webhook_retry_scale,
        )
        try:
            await events.connect()
            sweeper.start()
            await deliverer.start()

            # SIGTERM ends subscriptions (clients get `complete`) before uvicorn drops sockets.
            async def drain() -> None:
                await events.close_subscriptions()
                # Streams over HTTP end once their operations have sent `complete`.
                await graphql.streams.close()

            with (
                drain_before_exit(drain, timeout=CLOSE_TIMEOUT),
                gc_thresholds(*GC_THRESHOLDS),
            ):
                yield {"database": database, "events": events}
        finally:
            # Each step bounded: a worker stuck in one must still exit (a `--workers`
            # process that never ends keeps the port and its metrics files).
            await _stop_within("the webhook deliverer", deliverer.stop)
            await _stop_within("the idempotency key sweeper", sweeper.stop)
            await _stop_within("the broker connection", events.disconnect)
            await _stop_within("the database connection", database.disconnect)
            # With several workers: this one's live gauges leave the sum.
            metrics.worker_stopped()
            if tracing is not None:
                tracing.shutdown()  # the spans still batched are sent

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        events: JobEvents = request.state.events
        found = await health.report(request.state.database, events)
        problems = found.problems
        status_code = 503 if problems else 200
        if not health.may_see_details(request):
            # Anyone may probe; addresses and driver errors are for operators.
            return JSONResponse(health.summary(found), status_code=status_code)
        return JSONResponse(
            {
                "status": "unavailable" if problems else "ready",
                # One line per problem, naming the part: what an operator reads first.
                "problems": problems,
                "database": found.database or "ok",
                "migrations": found.migrations or ("unknown" if found.database else "ok"),
                "broadcast": found.broadcast or "ok",
                "broker": events.status(),
                # Live subscriptions this process serves, and its asyncio tasks (a
                # number that keeps growing under steady load is a leak).
                "subscriptions": events.subscriber_count,
                "tasks": len(asyncio.all_tasks()),
            },
            status_code=status_code,
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        # The id the client was answered with (X-Request-ID), as in every log line.
        found = logs.current()
        request_id = found.request_id if found and found.request_id else new_request_id()
        logger.exception(
            "unexpected error on %s %s [request id %s]",
            request.method,
            # Not request.url: it parses the Host header, which may be what is wrong.
            request.scope["path"],
            request_id,
        )
        response = error_response(
            500, "INTERNAL_SERVER_ERROR", f"internal error (request id {request_id})"
        )
        response.headers["X-Request-ID"] = request_id
        return response

    routes = [
        # PUT and DELETE: graphql-sse's single connection mode (app.graphql.streams).
        Route("/graphql", graphql, methods=["GET", "POST", "PUT", "DELETE"]),
        WebSocketRoute("/graphql", graphql),
        *rest.routes,
        openapi.route(settings),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint.scrape),
        *web.routes(settings),
    ]
    middleware = _middleware(settings, idle, routes)
    # Request ids outermost (every line logged in a request carries its id), tracing
    # around them (so the id's lines carry the request's trace id too).
    middleware.insert(
        0, Middleware(RequestId, trace_id=tracing.trace_id if tracing is not None else None)
    )
    if tracing is not None:
        middleware.insert(0, tracing.middleware(routes))
    app = Starlette(
        routes=routes,
        exception_handlers={
            AppError: rest.app_error,
            HTTPException: rest.http_error,
            Exception: unexpected,
        },
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.job_counts = metrics_endpoint.JobCounts(settings.metrics_jobs_interval)
    app.state.verifier = TokenVerifier(settings)
    # One cursor key for GraphQL and REST (app.jobs.cursors).
    app.state.cursors = CursorCodec.from_settings(settings)
    app.state.outbox = outbox
    app.state.webhooks = webhook_config
    return app


# Seconds each step of the lifespan's shutdown may take before the next one goes on.
STOP_SECONDS = 5.0


async def _stop_within(what: str, stop: Callable[[], Awaitable[None]]) -> None:
    try:
        await asyncio.wait_for(stop(), STOP_SECONDS)
    except TimeoutError:
        logger.warning("shutdown: %s did not stop within %g s; going on", what, STOP_SECONDS)


# Live subscriptions keep millions of objects alive. With CPython's default young
# threshold (700) enough of each change's short-lived objects get promoted that a
# full collection follows every few changes and stalls every subscriber for seconds
# at 10,000 of them (bench/subscriptions.py); collected less often, they die young.
GC_THRESHOLDS = (50_000, 50, 100)


@contextmanager
def gc_thresholds(*thresholds: int) -> Iterator[None]:
    """Set the thresholds; and what exists once the app has started (modules, the
    schema, compiled statements: ~120,000 objects, never garbage) is frozen out of
    every later collection, which traversed it each time (~60 ms a full one)."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def _middleware(
    settings: Settings, idle: IdleCollection, routes: list[BaseRoute]
) -> list[Middleware]:
    # Outermost: a connection past the limit costs as little as it can.
    middleware = [
        Middleware(WebSocketLimit, limit=settings.max_websocket_connections, on_idle=idle),
        # Every HTTP answer counted, the refusals of the middleware below too.
        Middleware(RequestMetrics, routes=routes),
    ]
    if settings.cors_origins:
        # Bearer tokens, not cookies: no credentials mode needed.
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Accept",
                    "X-GraphQL-Event-Stream-Token",
                    idempotency.HEADER,
                ],
                expose_headers=["Location", rest.REPLAYED_HEADER],
                max_age=600,
            )
        )
    if settings.open_mode:
        middleware.append(Middleware(LoopbackOnly, settings=settings))
    middleware.append(
        Middleware(
            BodyLimit, max_bytes=settings.max_body_bytes, timeout=settings.request_body_timeout
        )
    )
    # Garbage freed under steady requests, not only when subscriptions end (app/memory.py).
    middleware.append(Middleware(ReceivedBytesCollection, every=settings.gc_collect_bytes))
    return middleware


def warn_open_mode() -> None:
    for line in (
        "*" * 72,
        "AUTH_JWT_SECRET is not set: the gateway runs OPEN, without authentication.",
        "Every request acts as tenant 'default' with every scope; loopback only.",
        "Set AUTH_JWT_SECRET (and issue tokens with `python -m app token`) to serve others.",
        "*" * 72,
    ):
        logger.warning(line)


def _from_environment() -> Starlette:
    try:
        return create_app(Settings.from_env())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def __getattr__(name: str) -> Starlette:
    # `app.main:app` is built from the environment when a server asks for it, not
    # on import, so importing this module (tests, tools) reads no environment.
    if name == "app":
        return _from_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
