"""triage's handlers: events from the log, each in one transaction, and the judgment query."""

from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from caseloop_events.causal import causal_order
from caseloop_events.clock import Clock
from caseloop_events.consumer import Delivery
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.envelope import Actor, Envelope, Producer, event_caused_by
from caseloop_events.errors import CaseNotFound
from caseloop_events.reference import ReferenceData
from caseloop_events.storage import upsert
from caseloop_events.unit_of_work import Database, UnitOfWork
from caseloop_triage.adapters.tables import judgments
from caseloop_triage.domain.judgment import judge
from caseloop_triage.domain.model import Judgment, TriageCase, evolve, fold


@dataclass(frozen=True)
class TriageServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    reference: ReferenceData
    clock: Clock


async def handle_event(services: TriageServices, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
    """Record an event of the case; an accepted case not yet judged is judged by the rules."""
    history = await uow.lock_case(event.case_id)
    await uow.record(event)
    case = fold(event.case_id, causal_order([*history, event]))
    if not delivery.replaying and case.awaits_judgment:
        case = await _judge(services, uow, case)
    await _project(uow, case)


async def _judge(services: TriageServices, uow: UnitOfWork, case: TriageCase) -> TriageCase:
    assert case.accepted_event is not None
    assert case.report is not None
    judged = event_caused_by(
        case.accepted_event,
        judge(case.report, services.reference),
        actor=Actor.system(Producer.TRIAGE),
        occurred_at=services.clock.now(),
        decision="judged",
    )
    await uow.emit(judged)
    return evolve(case, judged)


async def _project(uow: UnitOfWork, case: TriageCase) -> None:
    """Bring the case's judgment row in line with its folded state."""
    if case.judgment is None:
        return
    decision = case.judgment.decision
    values = {
        "case_id": str(case.case_id),
        "category": decision.category,
        "risk_level": decision.risk_level,
        "sla_tier": decision.sla_tier.value,
        "handling_level": decision.handling_level.value,
        "campaign_ids": json.dumps(list(decision.campaign_ids)),
        "judged_by": decision.judged_by.value,
        "confidence": decision.confidence,
        "judged_at": case.judgment.judged_at,
        "event_id": str(case.judgment.event_id),
        "body": decision.model_dump_json(),
    }
    await uow.session.execute(upsert(judgments, values, ("case_id",), uow.dialect))


async def get_judgment(services: TriageServices, case_id: UUID) -> Judgment:
    """The case's latest judgment; CaseNotFound when triage has not judged it."""
    async with services.database.reading() as session:
        row = (
            await session.execute(
                select(judgments.c.event_id, judgments.c.judged_at, judgments.c.body).where(
                    judgments.c.case_id == str(case_id)
                )
            )
        ).first()
    if row is None:
        raise CaseNotFound(case_id)
    return Judgment(UUID(row.event_id), row.judged_at, CaseJudged.model_validate_json(row.body))
