"""triage's handlers: events from the log and officers' commands, each in one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete, select

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Envelope, Producer
from caseloop_events.contracts.errors import CaseNotFound
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.runtime.consumer import Delivery
from caseloop_events.runtime.storage import upsert_row
from caseloop_events.runtime.unit_of_work import Database, UnitOfWork
from caseloop_triage.adapters.tables import judgments, review_queue
from caseloop_triage.domain.model import (
    JudgeCase,
    Judgment,
    TriageCase,
    evolve,
    fold,
    judge_by_officer,
    judge_by_rules,
)

#: What triage keeps of supervision's topic: whether a case is closed. Nothing else is recorded.
SUPERVISION_EVENTS_KEPT = (CaseClosed, CaseReopened)


def keeps(event: Envelope) -> bool:
    """Of supervision's events, only closures and reopenings matter here."""
    return event.producer is not Producer.SUPERVISION or isinstance(event.payload, SUPERVISION_EVENTS_KEPT)


@dataclass(frozen=True)
class TriageServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    reference: ReferenceData
    clock: Clock
    review_below_confidence: float


async def handle_event(services: TriageServices, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
    """Record an event of the case; an accepted case not yet judged is judged by the rules (or queued
    for an officer when they are not confident)."""
    if not keeps(event):
        return
    history = await uow.lock_case(event.case_id)
    await uow.record(event)
    case = fold(event.case_id, causal_order([*history, event]))
    if not delivery.replaying:
        decided = judge_by_rules(case, services.reference, services.review_below_confidence, services.clock.now())
        if decided is not None:
            await uow.emit(decided)
            case = evolve(case, decided)
    await _project(uow, case)


async def judge_case(services: TriageServices, command: JudgeCase, correlation_id: UUID) -> Judgment:
    """An officer judges a case the rules sent for review, or re-judges a judged one."""
    async with services.database.transaction() as uow:
        case = fold(command.case_id, await uow.lock_case(command.case_id))
        event = judge_by_officer(case, command, services.reference, correlation_id)
        await uow.emit(event)
        case = evolve(case, event)
        await _project(uow, case)
    judgment = case.judgment
    assert judgment is not None
    return judgment


async def _project(uow: UnitOfWork, case: TriageCase) -> None:
    """Bring the case's judgment row and its place in the review queue in line with its folded state."""
    judgment = case.judgment
    if judgment is not None:
        decision = judgment.decision
        values = {
            "case_id": str(case.case_id),
            "category": decision.category,
            "risk_level": decision.risk_level,
            "sla_tier": decision.sla_tier.value,
            "handling_level": decision.handling_level.value,
            "campaign_ids": json.dumps(list(decision.campaign_ids)),
            "judged_by": decision.judged_by.value,
            "judged_by_id": judgment.judged_by_id,
            "confidence": decision.confidence,
            "judged_at": judgment.judged_at,
            "event_id": str(judgment.event_id),
            "body": decision.model_dump_json(),
        }
        await upsert_row(uow.session, judgments, values, ("case_id",))
    await _place_in_review_queue(uow, case)


async def _place_in_review_queue(uow: UnitOfWork, case: TriageCase) -> None:
    review, report = case.review, case.report
    if not case.awaits_officer or review is None or report is None or case.review_event is None:
        await uow.session.execute(delete(review_queue).where(review_queue.c.case_id == str(case.case_id)))
        return
    values = {
        "case_id": str(case.case_id),
        "case_no": report.case_no,
        "title": report.title,
        "description": report.description,
        "grid_code": report.location.grid_code,
        "town_code": report.location.town_code,
        "queued_at": case.review_event.occurred_at,
        "reason": review.reason,
        "candidate_categories": json.dumps(list(review.candidate_categories)),
        "event_id": str(case.review_event.event_id),
    }
    await upsert_row(uow.session, review_queue, values, ("case_id",))


async def get_judgment(services: TriageServices, case_id: UUID) -> Judgment:
    """The case's latest judgment; CaseNotFound when triage has not judged it."""
    async with services.database.reading() as session:
        row = (
            await session.execute(
                select(judgments.c.event_id, judgments.c.judged_at, judgments.c.body, judgments.c.judged_by_id).where(
                    judgments.c.case_id == str(case_id)
                )
            )
        ).first()
    if row is None:
        raise CaseNotFound(case_id)
    return Judgment(UUID(row.event_id), row.judged_at, CaseJudged.model_validate_json(row.body), row.judged_by_id)
