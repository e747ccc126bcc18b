"""dispatch's composition root: the one place that wires settings, database, broker and routes."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from caseloop_dispatch.adapters.tables import runtime_tables
from caseloop_dispatch.config import DispatchSettings
from caseloop_dispatch.domain.model import DisputeLimits
from caseloop_dispatch.entrypoints.http import router
from caseloop_dispatch.service_layer import handlers
from caseloop_dispatch.service_layer.handlers import DispatchServices
from caseloop_events.contracts.clock import Clock, clock_from_environment
from caseloop_events.contracts.envelope import Producer
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.runtime.http import service_app
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import ServiceRuntime
from caseloop_events.runtime.unit_of_work import Database


def create_app(
    settings: DispatchSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or DispatchSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_environment()
    reference = load_reference_data(settings.reference_dir or default_reference_dir())
    own_topic = kafka.topic_of(Producer.DISPATCH)
    database = Database(settings.resolved_database_url, runtime_tables, own_topic, clock)
    limits = DisputeLimits(
        returns=settings.return_limit,
        transfers=settings.transfer_limit,
        reworks=settings.rework_limit,
        reopenings=settings.reopen_limit,
    )
    services = DispatchServices(database=database, reference=reference, clock=clock, limits=limits)
    runtime = ServiceRuntime(
        producer=Producer.DISPATCH,
        database=database,
        kafka=kafka,
        consumes=(
            kafka.topic_of(Producer.INTAKE),
            kafka.topic_of(Producer.TRIAGE),
            own_topic,
            kafka.topic_of(Producer.SUPERVISION),
        ),
        handle=partial(handlers.handle_event, services),
        keeps=handlers.keeps,
    )
    return service_app(
        title="caseloop dispatch",
        summary="Assignment (交办): routes judged cases to the responsible unit and takes the unit's answers.",
        runtime=runtime,
        services=services,
        routers=[router, audit_router()],
        authenticator=settings.authenticator(),
        rate_limiter=settings.rate_limiter(),
        max_body_bytes=settings.max_body_bytes,
    )
