"""supervision's composition root: the one place that wires settings, database, broker, jobs and routes."""

from __future__ import annotations

import httpx
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
from caseloop_supervision.service_layer import handlers, jobs
from caseloop_supervision.service_layer.handlers import SupervisionServices


def create_app(
    settings: SupervisionSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``callback_transport`` replaces the network under the feedback deliveries (tests)."""
    settings = settings or SupervisionSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or SystemClock()
    database = Database(settings.resolved_database_url, runtime_tables, kafka.topic_of(Producer.SUPERVISION), clock)
    services = SupervisionServices(
        database=database,
        clock=clock,
        evaluation_window=settings.evaluation_window,
        feedback_policy=settings.feedback_policy,
    )

    async def close_cases_not_evaluated_in_time() -> None:
        await jobs.run_periodically(
            "auto-closure", settings.timer_interval, lambda: jobs.close_cases_not_evaluated_in_time(services)
        )

    async def deliver_feedback() -> None:
        # The client lives as long as the job: cancelling the job at shutdown closes it.
        async with httpx.AsyncClient(
            transport=callback_transport, timeout=settings.feedback_timeout, follow_redirects=False
        ) as http:
            await jobs.run_periodically(
                "feedback", settings.timer_interval, lambda: jobs.deliver_due_feedback(services, http)
            )

    runtime = ServiceRuntime(
        producer=Producer.SUPERVISION,
        database=database,
        kafka=kafka,
        # Every service's topic: supervision keeps every event of every case.
        consumes=tuple(kafka.topic_of(p) for p in Producer),
        handle=handlers.handle_event,
        background={"auto-closure": close_cases_not_evaluated_in_time, "feedback": deliver_feedback},
    )
    return service_app(
        title="caseloop supervision",
        summary="Supervision (督办) and feedback (反馈): verification, evaluation, reopening, closure, "
        "feedback to source systems, case timelines.",
        runtime=runtime,
        services=services,
        routers=[router],
    )
