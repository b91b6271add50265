"""Traces: a real uvicorn server in this process, its spans caught by the SDK's in-memory exporter.

A createJob's HTTP, GraphQL and database spans share one trace (the one a client's
`traceparent` names, when it sends one); a progress report and the subscription frame
it causes are tied by the event's delivery span; no variable value reaches a span; and
with tracing off nothing of OpenTelemetry is loaded at all.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.main import create_app
from app.settings import Settings, SettingsError, traces_exporters
from support.servers import ROOT, free_port
from tests.jobs_data import CREATE, INPUT, PROFILE, REPORT, VIDEO, request_object
from tests.wsclient import JOB_PROGRESS, LEGACY_WS, TRANSPORT_WS, graphql_socket

pytestmark = pytest.mark.anyio

LIMIT = 10
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


@dataclass
class Traced:
    url: str
    http: httpx.AsyncClient
    exporter: InMemorySpanExporter

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    async def graphql(
        self, query: str, headers: Mapping[str, str] | None = None, **variables: Any
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
async def traced(database_url: str) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=database_url, public_url=url)
    app = create_app(settings, tracer_provider=provider)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    with anyio.fail_after(LIMIT):
        await until(lambda: server.started)
    async with httpx.AsyncClient(base_url=url) as http:
        yield Traced(url, http, exporter)
    server.should_exit = True
    await serving
    provider.shutdown()


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition` holds; the caller's `fail_after` bounds the wait."""
    while True:
        if condition():
            return
        await asyncio.sleep(0.01)


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_a_create_jobs_http_graphql_and_database_spans_share_the_trace_the_client_sent(
    traced: Traced, database_url: str
) -> None:
    created = await traced.graphql(
        CREATE, headers={"traceparent": TRACEPARENT}, input=request_object()
    )
    job_id = created["createJob"]["id"]
    spans = traced.spans()

    [request] = named(spans, "POST /graphql")  # the route, never the raw path
    [operation] = named(spans, "mutation createJob")
    [insert] = named(spans, "INSERT jobs")
    [publish] = named(spans, "publish jobs_gateway_events")
    for span in (request, operation, insert, publish):
        assert trace_id(span) == TRACE_ID, span.name
    # The client's span is the request's parent: its trace is continued, not restarted.
    assert request.kind == SpanKind.SERVER
    assert request.parent is not None and format(request.parent.span_id, "016x") == PARENT_SPAN_ID
    assert operation.parent is not None and request.context is not None
    assert operation.parent.span_id == request.context.span_id
    assert insert.parent is not None and operation.context is not None
    assert insert.parent.span_id == operation.context.span_id
    assert dict(operation.attributes or {})["graphql.operation.type"] == "mutation"
    insert_attributes = dict(insert.attributes or {})
    assert insert_attributes["db.system.name"] == database_url.split(":", 1)[0]
    assert str(insert_attributes["db.query.text"]).startswith("INSERT INTO jobs")

    # No value the client sent, nor the new job's id in SQL, is in any attribute.
    every_value = json.dumps([dict(span.attributes or {}) for span in spans], default=str)
    for sent in (INPUT, PROFILE, VIDEO):
        assert sent not in every_value
    assert job_id not in json.dumps(insert_attributes)


@pytest.mark.engines("sqlite")
async def test_without_a_traceparent_a_request_starts_a_trace_of_its_own(traced: Traced) -> None:
    await traced.graphql("query Page { jobs(first: 5) { totalCount } }")
    spans = traced.spans()
    [request] = named(spans, "POST /graphql")
    [operation] = named(spans, "query Page")
    assert request.parent is None
    assert dict(operation.attributes or {})["graphql.operation.name"] == "Page"
    assert {trace_id(span) for span in spans} == {trace_id(request)}
    assert {span.name for span in spans} >= {"SELECT jobs"}


@pytest.mark.engines("sqlite")
async def test_rest_spans_are_named_by_route_template_and_query_values_never_recorded(
    traced: Traced,
) -> None:
    created = await traced.http.post("/encoding/jobs", json=request_object())
    job_id = created.json()["id"]
    assert (await traced.http.get(f"/encoding/jobs/{job_id}")).status_code == 200
    cursor_secret_looking = "c2VjcmV0LWN1cnNvcg"
    listed = await traced.http.get(f"/encoding/jobs?limit=5&cursor={cursor_secret_looking}")
    assert listed.status_code == 422  # not a cursor of ours; the span is what matters
    names = {span.name for span in traced.spans()}
    assert {"POST /encoding/jobs", "GET /encoding/jobs/{id}", "GET /encoding/jobs"} <= names
    every_value = json.dumps([dict(span.attributes or {}) for span in traced.spans()])
    assert cursor_secret_looking not in every_value
    assert "limit=[REDACTED]" in every_value


@pytest.mark.engines("sqlite")
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_progress_report_and_the_frame_it_causes_are_tied_by_the_delivery_span(
    traced: Traced, protocol: str
) -> None:
    created = await traced.graphql(CREATE, input=request_object())
    job_id = created["createJob"]["id"]
    with anyio.fail_after(LIMIT):
        async with graphql_socket(traced.ws_url, protocol) as ws:
            await ws.subscribe("progress", JOB_PROGRESS, id=job_id)
            assert (await ws.job("progress"))["progress"] == 0
            await traced.graphql(
                REPORT, headers={"traceparent": TRACEPARENT}, id=job_id, progress=40
            )
            assert (await ws.job("progress"))["progress"] == 40

    spans = traced.spans()
    # The subscribe is a WebSocket operation span, a child of the connection's span.
    [connection] = named(spans, "WebSocket /graphql")
    [subscribe] = named(spans, "WebSocket subscription jobProgress")
    assert subscribe.parent is not None and connection.context is not None
    assert subscribe.parent.span_id == connection.context.span_id
    assert dict(subscribe.attributes or {})["graphql.operation.id"] == "progress"
    # The report's publish and the delivery that wrote the frame: one trace, the report's.
    [report] = named(spans, "mutation updateJobProgress")
    publishes = [s for s in named(spans, "publish jobs_gateway_events") if trace_id(s) == TRACE_ID]
    deliveries = [s for s in named(spans, "process jobs_gateway_events") if trace_id(s) == TRACE_ID]
    assert trace_id(report) == TRACE_ID
    assert len(publishes) == 1 and len(deliveries) == 1
    [publish], [delivery] = publishes, deliveries
    assert delivery.kind == SpanKind.CONSUMER and publish.context is not None
    assert delivery.parent is not None and delivery.parent.span_id == publish.context.span_id
    assert [link.context.span_id for link in delivery.links] == [publish.context.span_id]
    assert dict(delivery.attributes or {})["jobs.job.id"] == job_id
    [update] = named(spans, "UPDATE jobs")
    assert trace_id(update) == TRACE_ID
    assert dict(publish.attributes or {})["messaging.system"] == "memory"


def test_traces_are_off_unless_the_otel_variables_ask_and_refused_when_they_ask_wrongly() -> None:
    assert traces_exporters({}) == ()
    assert traces_exporters({"OTEL_SERVICE_NAME": "gw"}) == ()
    assert traces_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ("otlp",)
    assert traces_exporters({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == (
        "otlp",
    )
    assert traces_exporters({"OTEL_TRACES_EXPORTER": "console,otlp"}) == ("console", "otlp")
    assert (
        traces_exporters({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == ()
    )
    assert traces_exporters({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) == ()
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER must be otlp, console"):
        traces_exporters({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf"):
        traces_exporters({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(SettingsError, match="OTEL_SDK_DISABLED must be true or false"):
        traces_exporters({"OTEL_SDK_DISABLED": "maybe"})


OFF_CHECK = """
import sys
from app.main import create_app
from app.settings import Settings
app = create_app(Settings.from_env())
stack = [type(m.cls).__name__ if not isinstance(m.cls, type) else m.cls.__name__ for m in app.user_middleware]
# (redis-py imports OpenTelemetry's metrics SDK when it is installed, for an opt-in of
# its own: what tracing loads is the tracing SDK and the instrumentation.)
parts = ("app.tracing", "opentelemetry.sdk.trace", "opentelemetry.instrumentation")
loaded = sorted(name for name in sys.modules if name.startswith(parts))
print(stack, loaded)
"""


def test_with_tracing_off_neither_the_tracing_sdk_nor_any_instrumentation_is_loaded(
    tmp_path: Path,
) -> None:
    # An OTEL_* variable that does not switch traces on (the service's name) is set.
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
        "OTEL_SERVICE_NAME": "jobs",
    }
    done = subprocess.run(
        [sys.executable, "-c", OFF_CHECK], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    middleware, loaded = done.stdout.split("] [", 1)
    assert "RequestId" in middleware and "OpenTelemetryMiddleware" not in middleware
    for part in ("app.tracing", "opentelemetry.sdk.trace", "opentelemetry.instrumentation"):
        assert part not in loaded, done.stdout
