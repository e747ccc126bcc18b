"""triage's composition root: the one place that wires settings, database, broker and routes."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from caseloop_events.contracts.clock import Clock, clock_from_environment
from caseloop_events.contracts.envelope import Producer
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.runtime.http import service_app
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import ServiceRuntime
from caseloop_events.runtime.unit_of_work import Database
from caseloop_triage.adapters.tables import runtime_tables
from caseloop_triage.config import TriageSettings
from caseloop_triage.entrypoints.http import router
from caseloop_triage.service_layer import handlers
from caseloop_triage.service_layer.handlers import TriageServices


def create_app(
    settings: TriageSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or TriageSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_environment()
    reference = load_reference_data(settings.reference_dir or default_reference_dir())
    own_topic = kafka.topic_of(Producer.TRIAGE)
    database = Database(settings.resolved_database_url, runtime_tables, own_topic, clock)
    services = TriageServices(
        database=database,
        reference=reference,
        clock=clock,
        review_below_confidence=settings.review_below_confidence,
    )
    runtime = ServiceRuntime(
        producer=Producer.TRIAGE,
        database=database,
        kafka=kafka,
        # Supervision's topic tells which cases are closed: a closed case is not judged again.
        consumes=(kafka.topic_of(Producer.INTAKE), own_topic, kafka.topic_of(Producer.SUPERVISION)),
        handle=partial(handlers.handle_event, services),
        keeps=handlers.keeps,
    )
    return service_app(
        title="caseloop triage",
        summary="Judgment (研判): what an accepted case is, how risky, who handles it, how fast.",
        runtime=runtime,
        services=services,
        routers=[router, audit_router()],
        authenticator=settings.authenticator(),
        rate_limiter=settings.rate_limiter(),
        max_body_bytes=settings.max_body_bytes,
    )
