"""dispatch — assignment (交办): its definition, the one place that says what it is made of."""

from __future__ import annotations

from fastapi import FastAPI

from caseloop_dispatch.adapters.migrations import MIGRATIONS
from caseloop_dispatch.adapters.tables import OPERATIONAL_TABLES, PROJECTIONS, metadata, runtime_tables
from caseloop_dispatch.config import DispatchSettings
from caseloop_dispatch.domain.model import (
    CASES,
    AcknowledgeCase,
    AssignJointly,
    DispatchCase,
    DisputeLimits,
    ReportResult,
    RequestExtension,
    ReturnCase,
    TransferCase,
)
from caseloop_dispatch.entrypoints.http import router
from caseloop_dispatch.service_layer import handlers
from caseloop_dispatch.service_layer.handlers import DispatchDeps
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
    CaseReopened,
    CaseVerificationFailed,
    CaseVerified,
    ExtensionDecided,
)
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import ServiceDefinition, ServiceTables, Wiring, compose, keep


def dependencies(wiring: Wiring[DispatchSettings]) -> DispatchDeps:
    settings = wiring.settings
    limits = DisputeLimits(
        returns=settings.return_limit,
        transfers=settings.transfer_limit,
        reworks=settings.rework_limit,
        reopenings=settings.reopen_limit,
    )
    return DispatchDeps(reference=wiring.reference, limits=limits)


#: Every event of another service that may change what a case's assignment should be.
_reassess = handlers.assign_when_the_case_calls_for_it

DISPATCH = ServiceDefinition[DispatchSettings, DispatchDeps, DispatchCase](
    name=Producer.DISPATCH,
    title="caseloop dispatch",
    summary="Assignment (交办): routes judged cases to the responsible unit and takes the unit's answers.",
    settings=DispatchSettings,
    tables=ServiceTables(metadata, runtime_tables, PROJECTIONS, OPERATIONAL_TABLES, MIGRATIONS),
    model=CASES,
    commands={
        AcknowledgeCase: handlers.acknowledge_case,
        ReportResult: handlers.report_case_result,
        RequestExtension: handlers.ask_for_extension,
        ReturnCase: handlers.return_the_case,
        TransferCase: handlers.transfer_the_case,
        AssignJointly: handlers.assign_units_jointly,
    },
    events={
        # intake: where the case is, and whether it may be assigned at all
        CaseAccepted: _reassess,
        CaseLinkedAsDuplicate: _reassess,
        CaseRejected: _reassess,
        CasesMerged: _reassess,
        CaseUnmerged: _reassess,
        # triage: what the case is
        CaseQueuedForReview: _reassess,
        CaseJudged: _reassess,
        # supervision: verification, reopening, closure and extension decisions
        CaseVerified: _reassess,
        CaseVerificationFailed: _reassess,
        CaseReopened: _reassess,
        CaseClosed: _reassess,
        ExtensionDecided: _reassess,
        # its own, read back only when a replay rebuilds the assignments
        CaseAssigned: keep,
        CaseAcknowledged: keep,
        CaseReturned: keep,
        CaseTransferred: keep,
        ExtensionRequested: keep,
        CaseResultReported: keep,
    },
    project=handlers.project,
    routers=[router, audit_router()],
    dependencies=dependencies,
)


def create_app(
    settings: DispatchSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    return compose(DISPATCH, settings, kafka, clock)
