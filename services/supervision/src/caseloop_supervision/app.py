"""supervision — supervision (督办) and feedback (反馈): its definition, the one place that says what
it is made of."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import httpx
from fastapi import FastAPI

from caseloop_events.contracts.calendar import WorkingCalendar
from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.dispatch import (
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
    CaseTransferred,
    ExtensionRequested,
)
from caseloop_events.contracts.envelope import Producer
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseUrged,
    CaseVerificationFailed,
    CaseVerified,
    ClockPaused,
    ClockStopped,
    DeadlineSet,
    ExtensionDecided,
    FeedbackDelivered,
    FeedbackFailed,
    RegionModeSwitched,
    SlaProfileChanged,
    SupervisionNoticeIssued,
)
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import Job, Service, ServiceDefinition, ServiceTables, Wiring, compose, keep
from caseloop_events.runtime.service import run_periodically as every
from caseloop_supervision.adapters.migrations import MIGRATIONS
from caseloop_supervision.adapters.store import SupervisionStore
from caseloop_supervision.adapters.tables import OPERATIONAL_TABLES, PROJECTIONS, metadata, runtime_tables
from caseloop_supervision.config import SupervisionSettings
from caseloop_supervision.domain.clocks import ClockRules, DecideExtension, UrgeCase
from caseloop_supervision.domain.decisions import EvaluateHandling, VerifyResult
from caseloop_supervision.domain.model import CASES, SupervisedCase
from caseloop_supervision.entrypoints.http import case_router, region_router, report_router
from caseloop_supervision.entrypoints.metrics import cases_by_town
from caseloop_supervision.service_layer import commands, timers
from caseloop_supervision.service_layer.projection import project
from caseloop_supervision.service_layer.supervising import SupervisionDeps, supervise

log = logging.getLogger(__name__)


def warn_about_the_calendar(calendar: WorkingCalendar, this_year: int) -> None:
    """Working-day deadlines need this year's and next year's holidays: say so when they are missing."""
    for year in (this_year, this_year + 1):
        if not calendar.covers(year):
            log.warning("calendar.json has no holidays for %d: working days there count weekends only", year)
        elif calendar.years[year].provisional:
            log.warning("calendar.json's %d holidays are provisional (%s)", year, calendar.years[year].source)


def dependencies(wiring: Wiring[SupervisionSettings]) -> SupervisionDeps:
    warn_about_the_calendar(wiring.reference.calendar, wiring.clock.now().year)
    return SupervisionDeps(
        rules=ClockRules(wiring.reference),
        store=SupervisionStore(wiring.database),
        evaluation_window=wiring.settings.evaluation_window,
        feedback_policy=wiring.settings.feedback_policy,
    )


Supervision = Service[SupervisionSettings, SupervisionDeps, SupervisedCase]


def jobs(service: Supervision, callback_transport: httpx.AsyncBaseTransport | None = None) -> Mapping[str, Job]:
    """The timers: notices, the closure of cases not evaluated in time, and the callbacks."""
    settings, deps, clock, handle = service.settings, service.deps, service.clock, service.handle

    async def notices() -> None:
        await every("notices", settings.timer_interval, lambda: timers.issue_due_notices(handle, deps, clock))

    async def auto_closure() -> None:
        await every(
            "auto-closure",
            settings.timer_interval,
            lambda: timers.close_cases_not_evaluated_in_time(handle, deps, clock),
        )

    async def feedback() -> None:
        # The client lives as long as the job: cancelling the job at shutdown closes it.
        async with httpx.AsyncClient(
            transport=callback_transport, timeout=settings.feedback_timeout, follow_redirects=False
        ) as http:
            await every(
                "feedback", settings.timer_interval, lambda: timers.deliver_due_feedback(handle, deps, clock, http)
            )

    return {"notices": notices, "auto-closure": auto_closure, "feedback": feedback}


SUPERVISION = ServiceDefinition[SupervisionSettings, SupervisionDeps, SupervisedCase](
    name=Producer.SUPERVISION,
    title="caseloop supervision",
    summary="Supervision (督办) and feedback (反馈): deadlines, escalation notices, urging, extensions, "
    "emergency mode, verification, evaluation, reopening, closure, feedback to source systems, case timelines, "
    "daily reports.",
    settings=SupervisionSettings,
    tables=ServiceTables(metadata, runtime_tables, PROJECTIONS, OPERATIONAL_TABLES, MIGRATIONS),
    model=CASES,
    commands={
        VerifyResult: commands.verify_result,
        EvaluateHandling: commands.evaluate_handling,
        UrgeCase: commands.urge_case,
        DecideExtension: commands.decide_on_extension,
        commands.SwitchRegionMode: commands.switch_mode,
        commands.ChangeProfile: commands.hold_to_the_region_profile,
        commands.IssueDueNotices: commands.issue_due_notices,
        commands.CloseWithoutEvaluation: commands.close_without_evaluation,
        commands.RecordFeedbackAttempt: commands.record_feedback_attempt,
    },
    events={
        # every other service's facts of a case: its timeline, and where its clocks stand
        CaseAccepted: supervise,
        CaseRejected: supervise,
        CaseLinkedAsDuplicate: supervise,
        CasesMerged: supervise,
        CaseUnmerged: supervise,
        CaseJudged: supervise,
        CaseQueuedForReview: supervise,
        CaseAssigned: supervise,
        CaseAcknowledged: supervise,
        CaseReturned: supervise,
        CaseTransferred: supervise,
        ExtensionRequested: supervise,
        CaseResultReported: supervise,
        # its own, read back only when a replay rebuilds the case list, the links and the region modes
        CaseVerified: keep,
        CaseVerificationFailed: keep,
        CaseEvaluated: keep,
        CaseClosed: keep,
        CaseReopened: keep,
        FeedbackDelivered: keep,
        FeedbackFailed: keep,
        DeadlineSet: keep,
        ClockPaused: keep,
        ClockStopped: keep,
        SupervisionNoticeIssued: keep,
        CaseUrged: keep,
        ExtensionDecided: keep,
        SlaProfileChanged: keep,
        RegionModeSwitched: keep,
    },
    project=project,
    routers=[case_router, region_router, report_router, audit_router()],
    dependencies=dependencies,
    jobs=jobs,
    collectors=lambda service: [cases_by_town(service.deps.store, service.clock, service.reference)],
)


def create_app(
    settings: SupervisionSettings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``callback_transport`` replaces the network under the feedback deliveries (tests)."""
    definition = SUPERVISION
    if callback_transport is not None:
        definition = replace(SUPERVISION, jobs=lambda service: jobs(service, callback_transport))
    return compose(definition, settings, kafka, clock)
