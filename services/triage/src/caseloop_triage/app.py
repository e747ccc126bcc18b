"""triage — judgment (研判): its definition, the one place that says what it is made of."""

from __future__ import annotations

from fastapi import FastAPI

from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Producer
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import ServiceDefinition, ServiceTables, Wiring, compose, keep
from caseloop_triage.adapters.migrations import MIGRATIONS
from caseloop_triage.adapters.tables import OPERATIONAL_TABLES, PROJECTIONS, metadata, runtime_tables
from caseloop_triage.config import TriageSettings
from caseloop_triage.domain.model import CASES, JudgeCase, TriageCase
from caseloop_triage.entrypoints.http import router
from caseloop_triage.service_layer import handlers
from caseloop_triage.service_layer.handlers import TriageDeps


def dependencies(wiring: Wiring[TriageSettings]) -> TriageDeps:
    return TriageDeps(reference=wiring.reference, review_below_confidence=wiring.settings.review_below_confidence)


TRIAGE = ServiceDefinition[TriageSettings, TriageDeps, TriageCase](
    name=Producer.TRIAGE,
    title="caseloop triage",
    summary="Judgment (研判): what an accepted case is, how risky, who handles it, how fast.",
    settings=TriageSettings,
    tables=ServiceTables(metadata, runtime_tables, PROJECTIONS, OPERATIONAL_TABLES, MIGRATIONS),
    model=CASES,
    commands={JudgeCase: handlers.judge_case},
    events={
        # intake: a case to judge, or one that may no longer be judged (and back again)
        CaseAccepted: handlers.judge_when_due,
        CaseRejected: handlers.judge_when_due,
        CaseLinkedAsDuplicate: handlers.judge_when_due,
        CasesMerged: handlers.judge_when_due,
        CaseUnmerged: handlers.judge_when_due,
        # supervision: a closed case is not judged again until it is reopened
        CaseClosed: handlers.judge_when_due,
        CaseReopened: handlers.judge_when_due,
        # its own, read back only when a replay rebuilds the judgments and the review queue
        CaseJudged: keep,
        CaseQueuedForReview: keep,
    },
    project=handlers.project,
    routers=[router, audit_router()],
    dependencies=dependencies,
)


def create_app(
    settings: TriageSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    return compose(TRIAGE, settings, kafka, clock)
