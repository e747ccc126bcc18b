"""Traces (OpenTelemetry): one tracer provider per process, spans for each request, each event
handled and each event published, and the W3C trace context carried across Kafka (ADR 0018).

The context travels with the event, not beside it: a unit of work stores the ``traceparent`` of
the span its events were emitted in with their outbox rows; the relay sends it as the record's
``traceparent`` header; the consumer handles the record in a span that is its child. So one trace
runs from the source system's POST through triage, dispatch and supervision.

Exporting is configuration: only with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set does a process send its spans anywhere (OTLP over
HTTP, batched on a thread of the exporter's own). Without it spans are still made — their ids
are what the logs and the stored ``traceparent`` carry — and dropped when they end.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic_settings import BaseSettings, SettingsConfigDict

from caseloop_events.contracts.envelope import Envelope
from caseloop_events.runtime.logs import bound_to_event

#: The instrumentation scope of the runtime's own spans.
TRACER_NAME = "caseloop_events.runtime"

_W3C = TraceContextTextMapPropagator()


class TelemetrySettings(BaseSettings):
    """The OpenTelemetry variables caseloop reads itself; the exporter reads the rest of
    ``OTEL_EXPORTER_OTLP_*`` (headers, timeout, certificates) on its own."""

    model_config = SettingsConfigDict(extra="ignore")

    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None

    @property
    def exports(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)


def tracer_provider(service_name: str, *, settings: TelemetrySettings | None = None) -> TracerProvider:
    """A tracer provider for one service: its spans named after it (``service.name``, in the
    ``caseloop`` namespace), exported over OTLP/HTTP only when an endpoint is configured."""
    settings = settings if settings is not None else TelemetrySettings()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name, "service.namespace": "caseloop"}))
    if settings.exports:
        provider.add_span_processor(_otlp_processor())
    return provider


def _otlp_processor() -> SpanProcessor:
    # Imported here: the exporter pulls in protobuf and requests, which a process that exports
    # nothing never needs.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def configure_tracing(service_name: str) -> TracerProvider:
    """Make the service's tracer provider the process's (once, where the process starts serving)."""
    provider = tracer_provider(service_name)
    trace.set_tracer_provider(provider)
    return provider


def tracer_of(provider: trace.TracerProvider | None) -> Tracer:
    """The runtime's tracer from ``provider``, or from the process's provider."""
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


def fastapi_telemetry(provider: trace.TracerProvider | None) -> TelemetryConfig:
    """FastAPI's own OpenTelemetry hooks (``FastAPI(telemetry=...)``): a server span per request,
    a child of the caller's ``traceparent``; no metrics (Prometheus has them) and no OTel log
    records (the logs are structlog's), no span per dependency and endpoint (the request's one
    span is what a case's trace needs)."""
    return {"tracer_provider": provider, "tracing": True, "metrics": False, "logs": False, "operation_spans": False}


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None outside any (a timer's round)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` that makes what follows a child of ``span``."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> otel_context.Context:
    """The context a ``traceparent`` names (an empty one for None or a malformed value: a new trace)."""
    if not traceparent:
        return otel_context.Context()
    return _W3C.extract({"traceparent": traceparent}, context=otel_context.Context())


@contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """Make the ``traceparent``'s span the current parent, for the log lines about an event handled
    outside its span (its retries, its dead letter)."""
    token = otel_context.attach(context_of(traceparent))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def handling(tracer: Tracer, event: Envelope, traceparent: str | None) -> Iterator[Span]:
    """Handle an event read from a topic: in a span named ``handle <type>`` that is a child of the
    span that published it, with its case, correlation and event ids bound to every log line."""
    with (
        bound_to_event(event),
        tracer.start_as_current_span(
            f"handle {event.type}",
            context=context_of(traceparent),
            kind=SpanKind.CONSUMER,
            attributes=event_attributes(event),
        ) as span,
    ):
        yield span


def event_attributes(event: Envelope) -> dict[str, str]:
    """A span's attributes naming the event and its case."""
    return stored_event_attributes(
        {
            "event_id": event.event_id,
            "type": event.type,
            "case_id": event.case_id,
            "correlation_id": event.correlation_id,
        }
    )


def stored_event_attributes(envelope: Mapping[str, Any]) -> dict[str, str]:
    """The same from an envelope's JSON fields (an outbox row, not validated)."""
    return {
        "messaging.system": "kafka",
        "messaging.message.id": str(envelope.get("event_id")),
        "caseloop.event_type": str(envelope.get("type")),
        "caseloop.case_id": str(envelope.get("case_id")),
        "caseloop.correlation_id": str(envelope.get("correlation_id")),
    }
