"""Spans of job events: each publish, and each delivery in every process, in one trace.

A change's publish (`publish jobs_gateway_events`, a PRODUCER span, a child of the
request that made the change) puts its trace context in the event itself: W3C
`traceparent` and `tracestate` only (a client's baggage could be kilobytes, and a
PostgreSQL NOTIFY holds 8,000 bytes), whatever OTEL_PROPAGATORS says for HTTP. Every process that hears the event makes its delivery a
CONSUMER span (`process jobs_gateway_events`) whose parent is that context: so a
progress report over HTTP and the subscription frames it causes share one trace id.
The fan-out writes its subscribers' `next` frames inside the delivery span; a
subscription served strawberry's way sends its frame from its own task a moment later.
An event without a context (the change feed's, a catch-up's) is delivered without a span.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Link, SpanKind, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.jobs.model import Job

# The channel every job event travels on (app.jobs.broker.CHANNEL).
DESTINATION = "jobs_gateway_events"
_PROPAGATOR = TraceContextTextMapPropagator()
# The most characters of trace context an event carries (tracestate is at most 512).
MAX_CARRIED = 600


class EventSpans:
    def __init__(self, tracer: Tracer, broker_url: str) -> None:
        self.tracer = tracer
        scheme = broker_url.split(":", 1)[0]
        self.system = {"postgresql": "postgres", "rediss": "redis"}.get(scheme, scheme)

    def _attributes(self, job: Job, operation: str) -> dict[str, Any]:
        return {
            "messaging.system": self.system,
            "messaging.destination.name": DESTINATION,
            "messaging.operation.type": operation,
            "jobs.job.id": str(job.id),
        }

    @contextmanager
    def publishing(self, job: Job) -> Iterator[dict[str, str]]:
        """The publish span; yields the carrier (trace context) to send with the event."""
        if not get_current_span().is_recording():
            # Not traced (a change made outside a request), or sampled out: the
            # deliveries would not be recorded either.
            yield {}
            return
        with self.tracer.start_as_current_span(
            f"publish {DESTINATION}",
            kind=SpanKind.PRODUCER,
            attributes=self._attributes(job, "send"),
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            if sum(len(value) for value in carrier.values()) > MAX_CARRIED:
                carrier.pop("tracestate", None)
            yield carrier

    @contextmanager
    def delivering(self, carrier: object, job: Job) -> Iterator[None]:
        """The delivery span, in the publisher's trace (and linked to its publish)."""
        if not isinstance(carrier, dict) or not carrier:
            yield
            return
        parent = _PROPAGATOR.extract({str(k): str(v) for k, v in carrier.items()})
        published = get_current_span(parent).get_span_context()
        with self.tracer.start_as_current_span(
            f"process {DESTINATION}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=self._attributes(job, "process"),
            links=[Link(published)] if published.is_valid else None,
        ):
            yield
