"""One trace follows a case from the source system's POST through intake, triage, dispatch and
supervision: the four services in this process on a real broker, each with its own tracer
provider recording into memory (ADR 0018)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy import select

from caseloop_dispatch.app import DISPATCH
from caseloop_dispatch.config import DispatchSettings
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import Service, ServiceDefinition, ServiceSettings, compose
from caseloop_events.testing.fixtures import DevelopmentCaller, eventually
from caseloop_intake.app import INTAKE
from caseloop_intake.config import IntakeSettings
from caseloop_supervision.app import SUPERVISION
from caseloop_supervision.config import SupervisionSettings
from caseloop_triage.app import TRIAGE
from caseloop_triage.config import TriageSettings

THE_LOOP: tuple[tuple[ServiceDefinition[Any, Any, Any], Callable[..., ServiceSettings]], ...] = (
    (INTAKE, IntakeSettings),
    (TRIAGE, TriageSettings),
    (DISPATCH, DispatchSettings),
    (SUPERVISION, SupervisionSettings),
)


@dataclass
class TracedService:
    client: httpx.AsyncClient
    runtime: Service[Any, Any, Any]
    spans: InMemorySpanExporter

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.spans.get_finished_spans()


@pytest.fixture
async def the_loop(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[dict[str, TracedService]]:
    """The four services on SQLite, in this process, each recording its spans in memory."""
    services: dict[str, TracedService] = {}
    async with AsyncExitStack() as stack:
        for definition, settings in THE_LOOP:
            name = definition.name.value
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            app: FastAPI = compose(
                definition,
                settings(database_url=f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}", CASELOOP_DATA_DIR=tmp_path),
                kafka_settings,
                tracer_provider=provider,
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), auth=DevelopmentCaller(), base_url=f"http://{name}"
                )
            )
            services[name] = TracedService(client, app.state.service, exporter)
        yield services

        async def every_relay_idle() -> bool:
            for service in services.values():
                if service.runtime.relay is None or await service.runtime.relay.pending() > 0:
                    return False
            return True

        await eventually(every_relay_idle)


def the_source_systems_traceparent() -> tuple[str, str, str]:
    """A ``traceparent`` as a source system's own tracing would send it: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def spans_of_case(service: TracedService, case_id: str) -> list[ReadableSpan]:
    return [span for span in service.finished() if (span.attributes or {}).get("caseloop.case_id") == case_id]


def names(spans: list[ReadableSpan]) -> set[str]:
    return {span.name for span in spans}


async def test_one_trace_runs_from_the_source_systems_post_through_all_four_services(
    the_loop: dict[str, TracedService],
) -> None:
    header, trace_id, source_span_id = the_source_systems_traceparent()
    intake, triage, dispatch, supervision = (the_loop[name] for name in ("intake", "triage", "dispatch", "supervision"))

    response = await intake.client.post(
        "/v1/cases",
        json={
            "source_system": "hotline-12345",
            "external_id": "TRACE-1",
            "title": "小区门口垃圾堆积",
            "description": "垃圾三天没人清运，气味很大",
            "location": {"grid_code": "3301100010010101"},
        },
        headers={"traceparent": header},
    )
    assert response.status_code == 201, response.text
    case_id = response.json()["case_id"]

    # Round the loop: intake accepts, triage judges, dispatch assigns, supervision projects it.
    await eventually(lambda: "handle case.assigned" in names(spans_of_case(supervision, case_id)), timeout=60)
    assert (await supervision.client.get(f"/v1/cases/{case_id}")).status_code == 200

    [post] = [span for span in intake.finished() if span.kind is SpanKind.SERVER and span.name == "POST /v1/cases"]
    assert post.context is not None
    assert post.parent is not None
    assert format_trace_id(post.context.trace_id) == trace_id
    assert format_span_id(post.parent.span_id) == source_span_id, "the request's span continues the caller's"

    expected = [
        (intake, {"publish case.accepted"}),
        (triage, {"handle case.accepted", "publish case.judged"}),
        (dispatch, {"handle case.judged", "publish case.assigned"}),
        (supervision, {"handle case.accepted", "handle case.judged", "handle case.assigned"}),
    ]
    for service, span_names in expected:
        spans = spans_of_case(service, case_id)
        assert span_names <= names(spans), f"{service.runtime.name}: {sorted(names(spans))}"
        assert {format_trace_id(span.context.trace_id) for span in spans if span.context} == {trace_id}, (
            f"{service.runtime.name}'s spans of the case are all in the source system's trace"
        )

    [handled] = [s for s in spans_of_case(dispatch, case_id) if s.name == "handle case.judged"]
    [published] = [s for s in spans_of_case(triage, case_id) if s.name == "publish case.judged"]
    assert handled.parent is not None
    assert published.context is not None
    assert handled.parent.span_id == published.context.span_id, "handled as a child of the span that published it"


async def test_the_outbox_keeps_the_trace_context_each_event_was_emitted_in(
    the_loop: dict[str, TracedService],
) -> None:
    header, trace_id, _ = the_source_systems_traceparent()
    intake = the_loop["intake"]

    response = await intake.client.post(
        "/v1/cases",
        json={
            "source_system": "hotline-12345",
            "external_id": "TRACE-2",
            "title": "路灯不亮",
            "description": "晚上整条路的路灯都不亮，行人看不清",
            "location": {"grid_code": "3301100010010201"},
        },
        headers={"traceparent": header},
    )
    assert response.status_code == 201, response.text

    outbox = intake.runtime.database.tables.outbox
    async with intake.runtime.database.reading() as session:
        [(envelope, traceparent)] = (
            await session.execute(
                select(outbox.c.envelope, outbox.c.traceparent).where(outbox.c.case_id == response.json()["case_id"])
            )
        ).all()
    assert json.loads(envelope)["type"] == "case.accepted"
    assert traceparent is not None
    assert traceparent.split("-")[1] == trace_id
