"""GET /metrics scraped from real gateways with prometheus-client's own parser.

Each family moves with the traffic that should move it: a created job, a report, a
subscriber on each protocol, a refused request, a database outage (its SQLite file on
a filesystem that fills up, as tests/test_database_outage.py does); with `--workers 2`
one scrape returns the sum over both processes. Who may read it is tested each way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from graphql import parse as parse_graphql
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from app.graphql.metrics import name_label
from app.metrics import OperationNames
from app.settings import Settings, SettingsError
from support.servers import Server, start_server
from tests.jobs_data import CREATE, REPORT, request_object
from tests.test_database_outage import fill, small_filesystem
from tests.tokens import SECRET, bearer, token
from tests.wsclient import (
    JOB_PROGRESS,
    JOB_UPDATES,
    LEGACY_WS,
    TRANSPORT_WS,
    GraphQLSocket,
    graphql_socket,
)

LIMIT = 60
JOBS = token(scope="jobs:read jobs:write jobs:report")
METRICS = token(tenant="ops", scope="metrics:read")
FAST_PATHS = Settings().fast_paths
# What uvicorn takes the client's address from behind a proxy on this machine.
REMOTE = {"X-Forwarded-For": "203.0.113.7"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: Server, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(f"{server.url}/metrics", headers=headers or {}, timeout=LIMIT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, metric: str, /, **labels: str) -> float:
    return value(after, metric, **labels) - value(before, metric, **labels)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("metrics")
    server = start_server(
        {
            "DATABASE_URL": f"sqlite:///{folder}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            # Counted afresh at each scrape: the test sees a created job at once.
            "METRICS_JOBS_INTERVAL": "0",
        },
        folder / "server.log",
        timeout=LIMIT,
    )
    yield server
    server.stop()


def graphql(server: Server, query: str, auth: str | None = JOBS, **variables: object) -> Any:
    headers = bearer(auth) if auth else {}
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=LIMIT,
    )
    return response.json()


NAMED_REPORT = REPORT.replace("mutation(", "mutation Report(", 1)


def test_requests_jobs_and_operations_move_their_families(gateway: Server) -> None:
    before = scrape(gateway)
    created = httpx.post(
        f"{gateway.url}/encoding/jobs", json=request_object(), headers=bearer(JOBS), timeout=LIMIT
    )
    assert created.status_code == 201
    job_id = created.json()["id"]
    assert httpx.get(f"{gateway.url}/encoding/jobs/{job_id}", headers=bearer(JOBS)).is_success
    reported = graphql(gateway, NAMED_REPORT, id=job_id, progress=40)
    assert reported["data"]["updateJobProgress"]["progress"] == 40
    # Refused: no token (REST 401, GraphQL UNAUTHENTICATED), and a path no route has.
    assert httpx.get(f"{gateway.url}/encoding/jobs").status_code == 401
    refused = graphql(gateway, CREATE, auth=None, input=request_object())
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # Refused inside the operation: a token without the scope.
    reader = token(scope="jobs:read")
    forbidden = graphql(gateway, CREATE, auth=reader, input=request_object())
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert httpx.get(f"{gateway.url}/no/such/{job_id}").status_code == 404
    # Refused before routing (the body cap): counted under the route it was aimed at.
    too_large = httpx.post(
        f"{gateway.url}/encoding/jobs", content=b"x" * 1_048_577, headers=bearer(JOBS)
    )
    assert too_large.status_code == 413
    response = httpx.get(f"{gateway.url}/metrics", timeout=LIMIT)
    after = parse(response.text)

    http = "jobs_gateway_http_requests_total"
    assert moved(before, after, http, route="/encoding/jobs", method="POST", status="201") == 1
    assert moved(before, after, http, route="/encoding/jobs/{id}", method="GET", status="200") == 1
    assert moved(before, after, http, route="/encoding/jobs", method="GET", status="401") == 1
    # The report and the scope refusal answer 200; the call without a token 401.
    assert moved(before, after, http, route="/graphql", method="POST", status="200") == 2
    assert moved(before, after, http, route="/graphql", method="POST", status="401") == 1
    assert moved(before, after, http, route="unmatched", method="GET", status="404") == 1
    assert moved(before, after, http, route="/encoding/jobs", method="POST", status="413") == 1
    duration = "jobs_gateway_http_request_duration_seconds_count"
    assert moved(before, after, duration, route="/encoding/jobs/{id}", method="GET") == 1

    operations = "jobs_gateway_graphql_operations_total"
    assert moved(before, after, operations, type="mutation", name="Report", outcome="ok") == 1
    # The call without a token never ran (401 before execution: the HTTP family has
    # it); the one without the scope ran and was refused.
    assert (
        moved(before, after, operations, type="mutation", name="anonymous", outcome="FORBIDDEN")
        == 1
    )
    timed = "jobs_gateway_graphql_operation_duration_seconds_count"
    assert moved(before, after, timed, type="mutation", name="Report") == 1

    assert moved(before, after, "jobs_gateway_jobs", status="in_progress") == 1
    assert moved(before, after, "jobs_gateway_events_published_total", outcome="sent") == 2
    if FAST_PATHS:  # the pooled SQLite backend (FAST_PATHS=false: databases' own, no pool)
        assert value(after, "jobs_gateway_db_pool_connections_max") == 8
        assert value(after, "jobs_gateway_db_pool_connections_in_use") == 0
    assert value(after, "jobs_gateway_broker_up") == 1

    # No label carries a job id, a token or a raw path.
    assert job_id not in response.text
    assert JOBS not in response.text and "/no/such" not in response.text


async def progress(socket: GraphQLSocket, count: int) -> dict[str, int]:
    """The next `count` results on the connection, by operation id (in any order:
    strawberry's way runs each subscription as its own task)."""
    found = {}
    for _ in range(count):
        message = await socket.receive()
        assert message["type"] == socket.next_type, message
        found[message["id"]] = message["payload"]["data"]["jobProgress"]["progress"]
    return found


@pytest.mark.anyio
async def test_subscribers_on_each_protocol_move_connections_subscriptions_and_events(
    gateway: Server,
) -> None:
    job = graphql(gateway, CREATE, input=request_object())["data"]["createJob"]
    before = scrape(gateway)
    with anyio.fail_after(LIMIT):
        async with (
            graphql_socket(gateway.ws_url, TRANSPORT_WS, payload=bearer(JOBS)) as current,
            graphql_socket(gateway.ws_url, LEGACY_WS, payload=bearer(JOBS)) as legacy,
        ):
            named = JOB_PROGRESS.replace("subscription (", "subscription Follow(", 1)
            await current.subscribe("a", named, id=job["id"])
            await current.subscribe("b", named, id=job["id"])
            await legacy.subscribe("c", JOB_PROGRESS, id=job["id"])
            assert await progress(current, 2) == {"a": 0, "b": 0}
            assert await progress(legacy, 1) == {"c": 0}
            during = scrape(gateway)
            graphql(gateway, REPORT, id=job["id"], progress=10)
            assert await progress(current, 2) == {"a": 10, "b": 10}
            assert await progress(legacy, 1) == {"c": 10}
            await current.stop("a")
            graphql(gateway, REPORT, id=job["id"], progress=100, status="COMPLETED")
            assert [j["progress"] for j in await current.until_complete("b")] == [100]
            assert [j["progress"] for j in await legacy.until_complete("c")] == [100]
    # The connections close as the clients leave (a moment after).
    for _ in range(LIMIT * 20):
        after = scrape(gateway)
        if not any(
            value(after, gauge, protocol=protocol)
            for gauge in ("jobs_gateway_websocket_connections", "jobs_gateway_subscriptions")
            for protocol in (TRANSPORT_WS, LEGACY_WS)
        ):
            break
        await anyio.sleep(0.05)

    for protocol, running in ((TRANSPORT_WS, 2), (LEGACY_WS, 1)):
        assert value(during, "jobs_gateway_websocket_connections", protocol=protocol) == 1
        assert value(during, "jobs_gateway_subscriptions", protocol=protocol) == running
        assert value(after, "jobs_gateway_websocket_connections", protocol=protocol) == 0
        assert value(after, "jobs_gateway_subscriptions", protocol=protocol) == 0
    if FAST_PATHS:
        # Two documents (one named, one not): two groups, each executed once per change.
        assert value(during, "jobs_gateway_fanout_groups") == 2
        assert value(after, "jobs_gateway_fanout_groups") == 0
    # 3 subscribers heard the report, then 2 the completion.
    assert moved(before, after, "jobs_gateway_events_delivered_total") == 5
    operations = "jobs_gateway_graphql_operations_total"
    assert moved(before, after, operations, type="subscription", name="Follow", outcome="ok") == 2
    assert (
        moved(before, after, operations, type="subscription", name="anonymous", outcome="ok") == 1
    )


@pytest.mark.anyio
async def test_a_subscriber_that_stops_reading_moves_conflated_and_interrupted(
    gateway: Server,
) -> None:
    # As tests/test_job_updates_fanout.py stalls one: big messages, no compression,
    # many subscriptions on a connection that stops reading; its buffers fill.
    inputs = [str(uuid.uuid4()) for _ in range(100)]
    ops = [f"s{n}" for n in range(16)]
    before = scrape(gateway)
    async with httpx.AsyncClient(base_url=gateway.url, headers=bearer(JOBS), timeout=LIMIT) as http:
        with anyio.fail_after(LIMIT * 2):
            async with graphql_socket(
                gateway.ws_url,
                payload=bearer(JOBS),
                compression=None,
                max_queue=1,
                ping_interval=None,
            ) as stalled:
                for op in ops:
                    await stalled.subscribe(op, JOB_UPDATES)
                for _ in range(LIMIT * 20):
                    subscribed = scrape(gateway)
                    if value(subscribed, "jobs_gateway_subscriptions", protocol=TRANSPORT_WS) >= 16:
                        break
                    await anyio.sleep(0.05)
                # One job changing over and over: a slow subscriber is owed its latest
                # state only, the ones between are dropped (conflated).
                created = await http.post("/encoding/jobs", json=request_object(inputs=inputs))
                job = created.json()["id"]
                for progress in range(1, 100):
                    await http.patch(f"/encoding/jobs/{job}", json={"progress": progress})
                conflated = scrape(gateway)
                # More than 64 jobs waiting: each subscription is told it fell behind.
                for _ in range(1_000):
                    after = scrape(gateway)
                    if (
                        moved(
                            before,
                            after,
                            "jobs_gateway_subscriptions_interrupted_total",
                            reason="fell_behind",
                        )
                        >= 16
                    ):
                        break
                    for _ in range(10):
                        await http.post("/encoding/jobs", json=request_object(inputs=inputs))
    assert moved(before, conflated, "jobs_gateway_events_conflated_total") > 0
    interrupted = "jobs_gateway_subscriptions_interrupted_total"
    assert moved(before, after, interrupted, reason="fell_behind") == 16
    assert moved(before, after, interrupted, reason="broker_outage") == 0
    operations = "jobs_gateway_graphql_operations_total"
    assert (
        moved(
            before,
            after,
            operations,
            type="subscription",
            name="anonymous",
            outcome="SUBSCRIPTION_INTERRUPTED",
        )
        == 16
    )


def test_who_may_read_the_metrics(gateway: Server, tmp_path: Path) -> None:
    url = f"{gateway.url}/metrics"
    # Loopback: no token needed.
    assert httpx.get(url).status_code == 200
    # From elsewhere (a proxy on this machine names the client): a metrics:read token.
    anonymous = httpx.get(url, headers=REMOTE)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
    assert "metrics:read" in anonymous.json()["error"]["message"]
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = httpx.get(url, headers={**REMOTE, **bearer(token(secret="x" * 40 + "Abc123!?"))})
    assert forged.status_code == 401
    without_scope = httpx.get(url, headers={**REMOTE, **bearer(JOBS)})
    assert without_scope.status_code == 403
    assert without_scope.json()["error"] == {
        "code": "FORBIDDEN",
        "message": without_scope.json()["error"]["message"],
    }
    assert "lacks the metrics:read scope" in without_scope.json()["error"]["message"]
    assert httpx.get(url, headers={**REMOTE, **bearer(METRICS)}).status_code == 200

    # METRICS_PUBLIC=true: anyone.
    public = start_server(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
            "AUTH_JWT_SECRET": SECRET,
            "METRICS_PUBLIC": "true",
        },
        tmp_path / "server.log",
        timeout=LIMIT,
    )
    try:
        assert httpx.get(f"{public.url}/metrics", headers=REMOTE).status_code == 200
    finally:
        public.stop()


def test_a_database_outage_moves_statement_errors_and_unavailable_answers(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem to fill up needs root")
    with small_filesystem("8m") as folder:
        server = start_server(
            {"DATABASE_URL": f"sqlite:///{folder}/jobs.db"}, tmp_path / "log", timeout=LIMIT
        )
        try:
            before = scrape(server)
            filler = fill(folder)
            try:
                posted = httpx.post(
                    f"{server.url}/encoding/jobs", json=request_object(), timeout=LIMIT
                )
                assert posted.status_code == 503
                created = graphql(server, CREATE, auth=None, input=request_object())
                assert created["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
                during = scrape(server)
            finally:
                filler.unlink()
        finally:
            server.stop()
    unavailable = "jobs_gateway_unavailable_answers_total"
    assert moved(before, during, unavailable, api="rest") == 1
    assert moved(before, during, unavailable, api="graphql") == 1
    assert moved(before, during, "jobs_gateway_db_errors_total", kind="unavailable") == 2
    http = "jobs_gateway_http_requests_total"
    assert moved(before, during, http, route="/encoding/jobs", method="POST", status="503") == 1
    operations = "jobs_gateway_graphql_operations_total"
    assert (
        moved(before, during, operations, type="mutation", name="anonymous", outcome="UNAVAILABLE")
        == 1
    )


@pytest.mark.fast_paths  # the gauge it adds up is the pooled SQLite backend's
def test_with_two_workers_one_scrape_adds_up_both(tmp_path: Path) -> None:
    redis = os.environ.get("REDIS_URL")
    if not redis:
        pytest.skip("REDIS_URL is not set: two workers need a broker")
    server = start_server(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "BROADCAST_URL": redis},
        tmp_path / "server.log",
        args=("--workers", "2"),
        timeout=LIMIT,
    )
    try:
        workers = wait_for_workers(server, 2)
        folder = metrics_folder(workers[0])
        # Fresh connections until each worker has answered some (the kernel chooses).
        sent = 0
        deadline = time.monotonic() + LIMIT
        while min(worker_count(folder, pid) for pid in workers) == 0:
            assert time.monotonic() < deadline, "one worker answered nothing"
            for _ in range(10):
                assert httpx.get(f"{server.url}/healthz").status_code == 200
                sent += 1
        samples = scrape(server)
        healthz = value(
            samples,
            "jobs_gateway_http_requests_total",
            route="/healthz",
            method="GET",
            status="200",
        )
        assert healthz == sent
        assert healthz == sum(worker_count(folder, pid) for pid in workers)
        # Gauges of live workers add up too: 8 SQLite connections each.
        assert value(samples, "jobs_gateway_db_pool_connections_max") == 16

        # A killed worker's gauges leave the sum; the one uvicorn starts instead counts.
        os.kill(workers[0], 9)
        replaced = wait_for_workers(server, 2, without=workers[0])
        deadline = time.monotonic() + LIMIT
        while value(scrape(server), "jobs_gateway_db_pool_connections_max") != 16 or not all(
            list(folder.glob(f"gauge_livesum_{pid}.db")) for pid in replaced
        ):
            assert time.monotonic() < deadline, "the dead worker's gauges stayed"
            time.sleep(0.1)
    finally:
        server.stop()
    # The folder was the supervisor's: removed when it stopped.
    assert not folder.exists()


def wait_for_workers(server: Server, count: int, without: int | None = None) -> list[int]:
    deadline = time.monotonic() + LIMIT
    while True:
        workers = [pid for pid in server.workers() if pid != without]
        if len(workers) == count and all(ready(pid) for pid in workers):
            return workers
        assert time.monotonic() < deadline, f"workers: {workers}"
        time.sleep(0.1)


def ready(pid: int) -> bool:
    folder = metrics_folder(pid)
    return any(folder.glob(f"*_{pid}.db"))


def metrics_folder(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for entry in environ:
        if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError(f"worker {pid} has no PROMETHEUS_MULTIPROC_DIR")


def worker_count(folder: Path, pid: int) -> float:
    """The /healthz requests one worker answered, from its own file alone."""
    with tempfile.TemporaryDirectory() as alone:
        for path in folder.glob(f"counter_{pid}.db"):
            shutil.copy(path, alone)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
        return (
            registry.get_sample_value(
                "jobs_gateway_http_requests_total",
                {"route": "/healthz", "method": "GET", "status": "200"},
            )
            or 0.0
        )


def test_operation_names_are_bounded() -> None:
    names = OperationNames(limit=2)
    assert [names.label(n) for n in ("A", "B", "C", "A", None)] == [
        "A",
        "B",
        "other",
        "A",
        "anonymous",
    ]
    assert OperationNames().label("N" * 65) == "other"
    document = parse_graphql("query Known { __typename }")
    # A name the document does not have (a client's typo or junk) is never a label.
    assert name_label(document, "Unknown" + uuid.uuid4().hex) == "other"
    assert name_label(None, "Anything") == "other"
    assert name_label(document, None) == "anonymous"


def test_metrics_settings_are_checked_at_start() -> None:
    assert Settings.from_env({"METRICS_JOBS_INTERVAL": "0"}).metrics_jobs_interval == 0
    assert Settings.from_env({"METRICS_PUBLIC": "true"}).metrics_public
    for name, bad in (("METRICS_JOBS_INTERVAL", "-1"), ("METRICS_JOBS_INTERVAL", "3601")):
        with pytest.raises(SettingsError, match=f"{name} must be a whole number of seconds"):
            Settings.from_env({name: bad})
    with pytest.raises(SettingsError, match="METRICS_PUBLIC must be true or false"):
        Settings.from_env({"METRICS_PUBLIC": "maybe"})
