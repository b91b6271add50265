"""Every metric the gateway exports, defined once (prometheus-client).

Each is updated by one call where the thing happens (the HTTP middleware, the GraphQL
extension, the WebSocket handlers and fan-out, the event listener, the broker, the
database pools, the outage rule); `app.metrics_endpoint` serves them at GET /metrics.
docs/operations.md#metrics lists them with their labels and meaning.

No label carries an unbounded value: routes are templates (`/encoding/jobs/{id}`),
methods and operation names are folded into a bounded set (`bounded_method`,
`OperationNames`), outcomes are the contract's error codes.

With `serve --workers N` the supervisor points PROMETHEUS_MULTIPROC_DIR at a folder
of its own before the workers start (app.cli): prometheus-client then keeps every
value in a file per process, and one scrape adds them up (`registry`). Gauges say
how: `livesum` (connections, subscriptions: the sum over live workers), `livemin`
(the broker is up only if it is in every worker), `mostrecent` (the job counts: one
database, any worker's latest reading).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

PREFIX = "jobs_gateway_"

# -- HTTP ------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    PREFIX + "http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    PREFIX + "http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by route template and method.",
    ["route", "method"],
)
# The route of a request no route matched (a raw path is never a label).
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def bounded_method(method: str) -> str:
    """The method, or "other" for anything a client made up."""
    return method if method in _METHODS else "other"


# -- GraphQL -----------------------------------------------------------------------

GRAPHQL_OPERATIONS = Counter(
    PREFIX + "graphql_operations",
    "GraphQL operations by type (query, mutation, subscription; unknown if the document "
    "did not parse), operation name (bounded, see docs) and outcome (ok, or the first "
    "error's code). Subscriptions are counted when they end.",
    ["type", "name", "outcome"],
)
GRAPHQL_DURATION = Histogram(
    PREFIX + "graphql_operation_duration_seconds",
    "Seconds to answer a GraphQL query or mutation, by type and operation name.",
    ["type", "name"],
)
# Distinct operation names one process labels; later ones are counted as OTHER.
OPERATION_NAMES_LIMIT = 100
# Longer names are counted as OTHER (GraphQL names have no length limit of their own).
OPERATION_NAME_LENGTH = 64
ANONYMOUS = "anonymous"
OTHER = "other"
_CODE = re.compile(r"[A-Z][A-Z_]{0,39}")


class OperationNames:
    """The first OPERATION_NAMES_LIMIT distinct names seen are labels; the rest OTHER.

    A client chooses operation names: without a bound, one sending a new name with
    each request would grow the metrics (and every scrape) without end.
    """

    def __init__(self, limit: int = OPERATION_NAMES_LIMIT) -> None:
        self.limit = limit
        self._known: set[str] = set()

    def label(self, name: str | None) -> str:
        if name is None:
            return ANONYMOUS
        if name in self._known:
            return name
        if len(self._known) >= self.limit or len(name) > OPERATION_NAME_LENGTH:
            return OTHER
        self._known.add(name)
        return name


def outcome(code: object) -> str:
    """An error code as a label: one of ours (upper case), else OTHER."""
    return code if isinstance(code, str) and _CODE.fullmatch(code) else OTHER


# -- WebSocket, subscriptions and events -----------------------------------------------

PROTOCOLS = ("graphql-transport-ws", "graphql-ws")
# Subscriptions over HTTP (app.graphql.streams): graphql-sse's and Apollo's multipart.
STREAM_PROTOCOLS = ("graphql-sse", "multipart")

WEBSOCKET_CONNECTIONS = Gauge(
    PREFIX + "websocket_connections",
    "Open GraphQL WebSocket connections, by protocol (graphql-transport-ws, graphql-ws).",
    ["protocol"],
    multiprocess_mode="livesum",
)
HTTP_STREAMS = Gauge(
    PREFIX + "http_streams",
    "Open GraphQL subscription streams over HTTP, by protocol (graphql-sse, multipart).",
    ["protocol"],
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    PREFIX + "subscriptions",
    "Subscriptions running, by protocol (both WebSocket subprotocols, graphql-sse, multipart).",
    ["protocol"],
    multiprocess_mode="livesum",
)
FANOUT_GROUPS = Gauge(
    PREFIX + "fanout_groups",
    "Groups of subscribers served by one execution per change (same document, variables "
    "and tenant).",
    multiprocess_mode="livesum",
)
EVENTS_PUBLISHED = Counter(
    PREFIX + "events_published",
    "Job changes published: sent through the broker, or deferred while it was away "
    "(published once it is back).",
    ["outcome"],
)
EVENTS_DELIVERED = Counter(
    PREFIX + "events_delivered",
    "Job states handed to subscriptions (one per subscription a change concerns).",
)
EVENTS_CONFLATED = Counter(
    PREFIX + "events_conflated",
    "Job states dropped for a slow subscriber because a later state of the same job replaced them.",
)
SUBSCRIPTIONS_INTERRUPTED = Counter(
    PREFIX + "subscriptions_interrupted",
    "Subscriptions ended with SUBSCRIPTION_INTERRUPTED, by reason: fell_behind (a client "
    "too slow) or broker_outage (too much missed to catch up).",
    ["reason"],
)
BROKER_RECONNECTS = Counter(
    PREFIX + "broker_reconnects",
    "Times the broadcast broker connection was lost and made again.",
)
BROKER_UP = Gauge(
    PREFIX + "broker_up",
    "1 while the broadcast broker connection delivers (in every worker), else 0.",
    multiprocess_mode="livemin",
)

# -- database ------------------------------------------------------------------------

DB_CONNECTIONS_IN_USE = Gauge(
    PREFIX + "db_pool_connections_in_use",
    "Database connections held by a request or task right now.",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_MAX = Gauge(
    PREFIX + "db_pool_connections_max",
    "The most database connections the pools may hold (SQLite: 8 a process; PostgreSQL: "
    "DATABASE_POOL_SIZE a process).",
    multiprocess_mode="livesum",
)
DB_POOL_WAITS = Counter(
    PREFIX + "db_pool_waits",
    "Times a task had to wait for a database connection because all were in use.",
)
DB_ERRORS = Counter(
    PREFIX + "db_errors",
    "Failed database statements by kind: unavailable (out of reach: UNAVAILABLE), "
    "integrity (a constraint), timeout, other (a bug).",
    ["kind"],
)
UNAVAILABLE = Counter(
    PREFIX + "unavailable_answers",
    "Answers saying the database is out of reach, by API: graphql (an UNAVAILABLE error, "
    "over HTTP or WebSocket) or rest (503).",
    ["api"],
)

# -- jobs ------------------------------------------------------------------------------

JOBS = Gauge(
    PREFIX + "jobs",
    "Jobs by status (every tenant's, deleted ones too), counted at most every "
    "METRICS_JOBS_INTERVAL seconds.",
    ["status"],
    multiprocess_mode="mostrecent",
)

# -- several processes -------------------------------------------------------------------

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def multiprocess_dir() -> Path | None:
    """Where the workers keep their values (set before the first import), or None."""
    folder = os.environ.get(MULTIPROC_ENV)
    return Path(folder) if folder else None


@contextmanager
def shared_between_workers(workers: int) -> Iterator[None]:
    """With several workers: PROMETHEUS_MULTIPROC_DIR at a new empty folder while they
    run, removed after. A folder the operator set already is used as it is (and is
    theirs to empty before each start: prometheus-client adds up what it finds)."""
    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="jobs-gateway-metrics-") as folder:
        os.environ[MULTIPROC_ENV] = folder
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


def registry() -> CollectorRegistry:
    """What a scrape reads: this process's metrics, or the sum over every worker's files
    (prometheus-client's multiprocess mode; process_* and python_* metrics only
    without it)."""
    folder = multiprocess_dir()
    if folder is None:
        return REGISTRY
    forget_dead_workers(folder)
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected, path=str(folder))  # type: ignore[no-untyped-call]
    return collected


def forget_dead_workers(folder: Path) -> None:
    """Drop the live gauges of workers that are gone (killed, or crashed): what uvicorn
    restarts in their place counts afresh. A worker that stops cleanly does it itself
    (`worker_stopped`). Counters of dead workers stay: a total never goes back."""
    for path in folder.glob("gauge_live*.db"):
        found = _LIVE_FILE.fullmatch(path.name)
        if found is None:
            continue
        pid = int(found.group(1))
        if pid != os.getpid() and not _running(pid):
            multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def worker_stopped() -> None:
    folder = multiprocess_dir()
    if folder is not None:
        multiprocess.mark_process_dead(os.getpid(), str(folder))  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_at_zero() -> None:
    """Series of known label values exist from the start, at 0: a rate over a series
    that appears only with its first event misses that event."""
    for protocol in PROTOCOLS:
        WEBSOCKET_CONNECTIONS.labels(protocol)
    for protocol in STREAM_PROTOCOLS:
        HTTP_STREAMS.labels(protocol)
    for protocol in (*PROTOCOLS, *STREAM_PROTOCOLS):
        SUBSCRIPTIONS.labels(protocol)
    for published in ("sent", "deferred"):
        EVENTS_PUBLISHED.labels(published)
    for reason in ("fell_behind", "broker_outage"):
        SUBSCRIPTIONS_INTERRUPTED.labels(reason)
    for kind in ("unavailable", "integrity", "timeout", "other"):
        DB_ERRORS.labels(kind)
    for api in ("graphql", "rest"):
        UNAVAILABLE.labels(api)


_start_at_zero()
