"""The OpenTelemetry SDK's tracer provider, built from the standard OTEL_* variables.

The SDK reads most of them itself: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
(the resource), OTEL_TRACES_SAMPLER(_ARG) (sampling, parent-based always-on by
default), OTEL_BSP_* (the batch processor), OTEL_EXPORTER_OTLP_* (endpoint, headers,
timeout, compression, certificates). Which exporters, and whether at all, is decided
in app.settings (`traces_exporters`).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

SERVICE = "jobs-gateway"


def resource() -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES as the SDK reads them; unnamed, the
    service is `jobs-gateway` rather than the SDK's `unknown_service`."""
    from importlib.metadata import PackageNotFoundError, version

    found = Resource.create()
    extra: dict[str, str] = {}
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        extra[SERVICE_NAME] = SERVICE
    if SERVICE_VERSION not in found.attributes:
        try:
            extra[SERVICE_VERSION] = version(SERVICE)
        except PackageNotFoundError:
            pass
    return found.merge(Resource(extra)) if extra else found


def exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # OTLP over HTTP/protobuf: endpoint, headers, timeout, compression from OTEL_EXPORTER_OTLP_*.
    return OTLPSpanExporter()


def tracer_provider(exporters: Sequence[str]) -> TracerProvider:
    """Spans batched (never exported on the request's path) to each named exporter."""
    provider = TracerProvider(resource=resource())
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter(name)))
    return provider
