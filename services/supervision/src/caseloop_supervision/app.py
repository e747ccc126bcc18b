"""supervision's composition root: the one place that wires settings, database, broker and routes."""

from __future__ import annotations

from fastapi import FastAPI

from caseloop_events.clock import Clock, SystemClock
from caseloop_events.envelope import Producer
from caseloop_events.http import service_app
from caseloop_events.kafka import KafkaSettings
from caseloop_events.runtime import ServiceRuntime
from caseloop_events.unit_of_work import Database
from caseloop_supervision.adapters.tables import runtime_tables
from caseloop_supervision.config import SupervisionSettings
from caseloop_supervision.entrypoints.http import router
from caseloop_supervision.service_layer import handlers
from caseloop_supervision.service_layer.handlers import SupervisionServices


def create_app(
    settings: SupervisionSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or SupervisionSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or SystemClock()
    database = Database(settings.resolved_database_url, runtime_tables, kafka.topic_of(Producer.SUPERVISION), clock)
    runtime = ServiceRuntime(
        producer=Producer.SUPERVISION,
        database=database,
        kafka=kafka,
        # Every service's topic: supervision keeps every event of every case.
        consumes=tuple(kafka.topic_of(p) for p in Producer),
        handle=handlers.handle_event,
    )
    return service_app(
        title="caseloop supervision",
        summary="Supervision (督办) and feedback (反馈): verification, evaluation, closure, case timelines.",
        runtime=runtime,
        services=SupervisionServices(database=database, clock=clock),
        routers=[router],
    )
