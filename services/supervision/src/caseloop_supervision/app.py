"""supervision's composition root: the one place that wires settings, database, broker, jobs and routes."""

from __future__ import annotations

import logging
from functools import partial

import httpx
from fastapi import FastAPI

from caseloop_events.contracts.calendar import WorkingCalendar
from caseloop_events.contracts.clock import Clock, clock_from_environment
from caseloop_events.contracts.envelope import Producer
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.runtime.http import service_app
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import ServiceRuntime
from caseloop_events.runtime.unit_of_work import Database
from caseloop_supervision.adapters.tables import runtime_tables
from caseloop_supervision.config import SupervisionSettings
from caseloop_supervision.domain.clocks import ClockRules
from caseloop_supervision.entrypoints.http import case_router, region_router, report_router
from caseloop_supervision.service_layer import handlers, jobs
from caseloop_supervision.service_layer.handlers import SupervisionServices

log = logging.getLogger(__name__)


def warn_about_the_calendar(calendar: WorkingCalendar, this_year: int) -> None:
    """Working-day deadlines need this year's and next year's holidays: say so when they are missing."""
    for year in (this_year, this_year + 1):
        if not calendar.covers(year):
            log.warning("calendar.json has no holidays for %d: working days there count weekends only", year)
        elif calendar.years[year].provisional:
            log.warning("calendar.json's %d holidays are provisional (%s)", year, calendar.years[year].source)


def create_app(
    settings: SupervisionSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``callback_transport`` replaces the network under the feedback deliveries (tests)."""
    settings = settings or SupervisionSettings()
    kafka = kafka or KafkaSettings()
    clock = clock or clock_from_environment()
    database = Database(settings.resolved_database_url, runtime_tables, kafka.topic_of(Producer.SUPERVISION), clock)
    reference = load_reference_data(settings.reference_dir or default_reference_dir())
    warn_about_the_calendar(reference.calendar, clock.now().year)
    services = SupervisionServices(
        database=database,
        clock=clock,
        rules=ClockRules(reference),
        evaluation_window=settings.evaluation_window,
        feedback_policy=settings.feedback_policy,
    )

    async def issue_due_notices() -> None:
        await jobs.run_periodically("notices", settings.timer_interval, lambda: jobs.issue_due_notices(services))

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
        handle=partial(handlers.handle_event, services),
        background={
            "notices": issue_due_notices,
            "auto-closure": close_cases_not_evaluated_in_time,
            "feedback": deliver_feedback,
        },
    )
    return service_app(
        title="caseloop supervision",
        summary="Supervision (督办) and feedback (反馈): deadlines, escalation notices, urging, extensions, "
        "emergency mode, verification, evaluation, reopening, closure, feedback to source systems, case timelines, "
        "daily reports.",
        runtime=runtime,
        services=services,
        routers=[case_router, region_router, report_router, audit_router()],
        authenticator=settings.authenticator(),
        rate_limiter=settings.rate_limiter(),
        max_body_bytes=settings.max_body_bytes,
    )
