"""Structured logs and traces (ADR 0018): what a log line carries, how the log format and the OTLP
exporter are configured, and the trace context an event keeps through the outbox onto Kafka."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from fastapi import APIRouter, Depends, FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from caseloop_events.contracts.envelope import Producer
from caseloop_events.runtime.http import CorrelationId, case_named_in_path
from caseloop_events.runtime.kafka import KafkaSettings, record_traceparent, stored_event_headers
from caseloop_events.runtime.logs import LogFormat, bound_to_event, log_format_from_environment, log_formatter
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.serve import serve
from caseloop_events.runtime.service import Service, ServiceSettings
from caseloop_events.runtime.telemetry import TelemetrySettings, handling, tracer_provider
from caseloop_events.testing.probe import Verify, an_acknowledgement

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


class LogLines:
    """The lines a logger wrote through the service's renderer."""

    def __init__(self, log_format: LogFormat = "json") -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(log_formatter("probe", log_format))
        self.logger = logging.getLogger(f"caseloop.test.{uuid.uuid4().hex}")
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False

    def text(self) -> str:
        return self.stream.getvalue()

    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


def test_a_line_logged_while_an_event_is_handled_names_its_case_correlation_and_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    event = an_acknowledgement()
    lines = LogLines()

    with (
        provider.get_tracer("test").start_as_current_span("handle case.acknowledged") as span,
        bound_to_event(event),
    ):
        lines.logger.warning("the unit %s acknowledged late", "U-TRANSPORT")
    lines.logger.info("after the event")

    during, after = lines.objects()
    assert during["message"] == "the unit U-TRANSPORT acknowledged late"
    assert during["level"] == "warning"
    assert during["service"] == "probe"
    assert during["case_id"] == str(event.case_id)
    assert during["correlation_id"] == str(event.correlation_id)
    assert during["event_id"] == str(event.event_id)
    assert during["event_type"] == "case.acknowledged"
    assert during["trace_id"] == format_trace_id(span.get_span_context().trace_id)
    assert during["span_id"] == format_span_id(span.get_span_context().span_id)
    assert "timestamp" in during
    assert "case_id" not in after, "what an event bound is unbound once it is handled"
    assert "trace_id" not in after


def test_an_exception_is_logged_in_its_json_line() -> None:
    lines = LogLines()

    try:
        raise RuntimeError("the broker went away")
    except RuntimeError:
        lines.logger.exception("outbox relay failed")

    [line] = lines.objects()
    assert line["message"] == "outbox relay failed"
    assert "RuntimeError: the broker went away" in line["exception"]


def test_the_console_format_is_for_people_not_json() -> None:
    lines = LogLines("console")

    lines.logger.info("intake started")

    assert "intake started" in lines.text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines.text())


async def test_a_line_logged_for_a_request_names_the_case_its_path_names_and_its_correlation_id() -> None:
    lines = LogLines()
    router = APIRouter(prefix="/v1/cases")

    @router.post("/{case_id}/urge")
    async def urge(case_id: uuid.UUID, correlation_id: CorrelationId) -> dict[str, str]:
        lines.logger.info("urged")
        return {}

    app = FastAPI()
    app.include_router(router, dependencies=[Depends(case_named_in_path)])
    case_id, correlation_id = uuid.uuid4(), uuid.uuid4()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        response = await client.post(f"/v1/cases/{case_id}/urge", headers={"X-Correlation-ID": str(correlation_id)})
    structlog.contextvars.clear_contextvars()  # the test client ran the request in this very task

    assert response.status_code == 200
    [line] = lines.objects()
    assert line["case_id"] == str(case_id)
    assert line["correlation_id"] == str(correlation_id)


def test_an_unknown_log_format_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASELOOP_LOG_FORMAT", "xml")

    with pytest.raises(ValueError, match=r"^CASELOOP_LOG_FORMAT must be json or console, not 'xml'$"):
        log_format_from_environment()

    class ProbeSettings(ServiceSettings):
        service_name: ClassVar[str] = "probe"
        port: int = 65000

    with pytest.raises(SystemExit, match=r"^caseloop probe: CASELOOP_LOG_FORMAT must be json or console, not 'xml'$"):
        serve(FastAPI, ProbeSettings())


def test_json_is_the_log_format_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASELOOP_LOG_FORMAT", raising=False)

    assert log_format_from_environment() == "json"


def test_no_exporter_and_no_thread_unless_an_otlp_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    threads = threading.active_count()

    provider = tracer_provider("intake")
    with provider.get_tracer("test").start_as_current_span("POST /v1/cases") as span:
        assert span.get_span_context().is_valid, "spans are still made: the logs and the outbox carry their ids"

    assert not TelemetrySettings().exports
    assert provider._active_span_processor._span_processors == ()
    assert threading.active_count() == threads
    assert provider.resource.attributes["service.name"] == "intake"
    provider.shutdown()


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.received.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_spans_go_to_the_otlp_endpoint_configured(monkeypatch: pytest.MonkeyPatch, collector: str) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)

    provider = tracer_provider("dispatch")
    with provider.get_tracer("test").start_as_current_span("handle case.judged"):
        pass
    assert provider.force_flush()
    provider.shutdown()

    [(path, content_type, body)] = Collector.received
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    assert b"handle case.judged" in body
    assert b"dispatch" in body


def test_the_traceparent_header_is_sent_only_when_there_is_one() -> None:
    envelope = json.loads(an_acknowledgement().model_dump_json())
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    assert "traceparent" not in dict(stored_event_headers(envelope))
    assert dict(stored_event_headers(envelope, traceparent=traceparent))["traceparent"] == traceparent.encode()


async def records_on(kafka: KafkaSettings, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.kafka_bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


@pytest.fixture
async def relay_producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = kafka_settings.producer("test")
    await producer.start()
    yield producer
    await producer.stop()


async def test_an_event_emitted_in_a_span_is_published_in_its_trace_from_the_database_and_from_memory(
    probe: Service[Any, Any, Any],
    relay_producer: AIOKafkaProducer,
    kafka_settings: KafkaSettings,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    case_id = uuid.uuid4()
    with tracer.start_as_current_span("POST /v1/cases/{case_id}/verification") as first:
        await probe.handle(Verify(case_id, by="supervisor-1"))
    relay = OutboxRelay(probe.database, relay_producer, tracer=tracer)
    assert await relay.publish_round() == 1, "read from the database"
    with tracer.start_as_current_span("POST /v1/cases/{case_id}/verification") as second:
        await probe.handle(Verify(case_id, by="supervisor-2"))
    assert await relay.publish_round() == 1, "handed over in memory"

    records = await records_on(kafka_settings, kafka_settings.topic_of(Producer.SUPERVISION), 2)
    published = {span.context.span_id: span for span in exporter.get_finished_spans() if span.context}
    for record, request in zip(records, (first, second), strict=True):
        traceparent = record_traceparent(record)
        assert traceparent is not None
        _, trace_id, span_id, _ = traceparent.split("-")
        assert trace_id == format_trace_id(request.get_span_context().trace_id)
        publish = published[int(span_id, 16)]
        assert publish.name == "publish case.verified", "the record names the span that published it"
        assert publish.parent is not None
        assert publish.parent.span_id == request.get_span_context().span_id, "a child of the span it was emitted in"


def test_an_event_without_a_valid_traceparent_is_handled_in_a_trace_of_its_own(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    event = an_acknowledgement()

    for traceparent in (None, "", "00-not-a-trace-01", "00-00000000000000000000000000000000-0000000000000000-01"):
        with handling(provider.get_tracer("test"), event, traceparent):
            pass

    handled = exporter.get_finished_spans()
    assert [span.name for span in handled] == ["handle case.acknowledged"] * 4
    assert all(span.parent is None for span in handled), "no parent: a new trace each"
    assert len({span.context.trace_id for span in handled if span.context}) == 4
