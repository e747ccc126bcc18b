"""intake — screening (排查/受理): its definition, the one place that says what it is made of."""

from __future__ import annotations

from collections.abc import Mapping

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
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import audit_router
from caseloop_events.runtime.service import (
    Job,
    Service,
    ServiceDefinition,
    ServiceTables,
    Wiring,
    compose,
    keep,
    run_periodically,
)
from caseloop_intake.adapters import idempotency
from caseloop_intake.adapters.cases import IntakeStore
from caseloop_intake.adapters.migrations import MIGRATIONS
from caseloop_intake.adapters.tables import OPERATIONAL_TABLES, PROJECTIONS, metadata, runtime_tables
from caseloop_intake.config import IntakeSettings
from caseloop_intake.domain.model import CASES, IntakeCase, MergeCase, ReportCase, UnmergeCase
from caseloop_intake.entrypoints.http import router
from caseloop_intake.service_layer import handlers
from caseloop_intake.service_layer.handlers import IntakeDeps


def dependencies(wiring: Wiring[IntakeSettings]) -> IntakeDeps:
    return IntakeDeps(
        reference=wiring.reference, screening=wiring.settings.screening_rules, store=IntakeStore(wiring.database)
    )


def jobs(service: Service[IntakeSettings, IntakeDeps, IntakeCase]) -> Mapping[str, Job]:
    settings = service.settings

    async def forget_expired_idempotency_keys() -> None:
        await run_periodically(
            "idempotency-keys",
            settings.idempotency_cleanup_interval,
            lambda: idempotency.forget_expired(service.database, service.clock.now(), settings.idempotency_retention),
        )

    return {"idempotency-keys": forget_expired_idempotency_keys}


INTAKE = ServiceDefinition[IntakeSettings, IntakeDeps, IntakeCase](
    name=Producer.INTAKE,
    title="caseloop intake",
    summary="Screening (排查/受理): accepts cases raised by other government systems.",
    settings=IntakeSettings,
    tables=ServiceTables(metadata, runtime_tables, PROJECTIONS, OPERATIONAL_TABLES, MIGRATIONS),
    model=CASES,
    commands={
        ReportCase: handlers.report_case,
        MergeCase: handlers.merge_case,
        UnmergeCase: handlers.unmerge_case,
    },
    events={
        # supervision: whether a case is closed (a closed case draws no duplicates), or open again
        CaseClosed: keep,
        CaseReopened: keep,
        # its own, read back only when a replay rebuilds the case list
        CaseAccepted: keep,
        CaseRejected: keep,
        CaseLinkedAsDuplicate: keep,
        CasesMerged: keep,
        CaseUnmerged: keep,
    },
    project=handlers.project,
    routers=[router, audit_router()],
    dependencies=dependencies,
    jobs=jobs,
)


def create_app(
    settings: IntakeSettings | None = None, kafka: KafkaSettings | None = None, clock: Clock | None = None
) -> FastAPI:
    return compose(INTAKE, settings, kafka, clock)
