"""intake's composition root: the one place that wires settings, database, broker and routes."""

from __future__ import annotations

from fastapi import FastAPI

from caseloop_events.contracts.clock import Clock, clock_from_environment
from caseloop_events.contracts.envelope import Producer
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.runtime.http import service_app
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import ServiceRuntime, run_periodically
from caseloop_events.runtime.unit_of_work import Database
from caseloop_intake.adapters.tables import runtime_tables
from caseloop_intake.config import IntakeSettings
from caseloop_intake.entrypoints.http import router
from caseloop_intake.service_layer import handlers, idempotency
from caseloop_intake.service_layer.handlers import IntakeServices


def create_app(
    settings: IntakeSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or IntakeSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_environment()
    reference = load_reference_data(settings.reference_dir or default_reference_dir())
    own_topic = kafka.topic_of(Producer.INTAKE)
    database = Database(settings.resolved_database_url, runtime_tables, own_topic, clock)

    async def forget_expired_idempotency_keys() -> None:
        await run_periodically(
            "idempotency-keys",
            settings.idempotency_cleanup_interval,
            lambda: idempotency.forget_expired(database, clock.now(), settings.idempotency_retention),
        )

    runtime = ServiceRuntime(
        producer=Producer.INTAKE,
        database=database,
        kafka=kafka,
        # Supervision's topic tells which cases are closed: a closed case draws no duplicates.
        consumes=(own_topic, kafka.topic_of(Producer.SUPERVISION)),
        handle=handlers.handle_event,
        keeps=handlers.keeps,
        background={"idempotency-keys": forget_expired_idempotency_keys},
    )
    return service_app(
        title="caseloop intake",
        summary="Screening (排查/受理): accepts cases raised by other government systems.",
        runtime=runtime,
        services=IntakeServices(
            database=database, reference=reference, clock=clock, screening=settings.screening_rules
        ),
        routers=[router, audit_router()],
        authenticator=settings.authenticator(),
        rate_limiter=settings.rate_limiter(),
        max_body_bytes=settings.max_body_bytes,
    )
