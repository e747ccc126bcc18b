"""triage's HTTP routes: translate requests into commands and queries and call the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.runtime.auth import Principal, Role, admits
from caseloop_events.runtime.http import CorrelationId, PageOffset
from caseloop_events.runtime.service import Service, service_of
from caseloop_triage.adapters import queries
from caseloop_triage.adapters.queries import ReviewQueuePage
from caseloop_triage.config import TriageSettings
from caseloop_triage.domain.judgment import OfficerChoice
from caseloop_triage.domain.model import JudgeCase, Judgment, TriageCase
from caseloop_triage.entrypoints.schemas import JudgmentCreate, JudgmentRead, RuleHitRead
from caseloop_triage.service_layer.handlers import TriageDeps

#: The composed triage service: its commands (``handle``), database and dependencies.
Triage = Annotated[Service[TriageSettings, TriageDeps, TriageCase], Depends(service_of)]

router = APIRouter(prefix="/v1", tags=["judgment"])

TriageOfficer = Annotated[Principal, Depends(admits(Role.TRIAGE_OFFICER))]
JudgmentReader = Annotated[Principal, Depends(admits(Role.TRIAGE_OFFICER, Role.SUPERVISOR))]


@router.get("/cases/{case_id}/judgment", response_model=JudgmentRead)
async def read_judgment(case_id: UUID, triage: Triage, _: JudgmentReader) -> JudgmentRead:
    """How triage judged the case: category, risk, campaigns, handling level, deadline tier and why."""
    return _judgment_read(case_id, await queries.latest_judgment(triage.database, case_id), triage.reference)


@router.post("/cases/{case_id}/judgment", response_model=JudgmentRead)
async def judge_case(
    case_id: UUID, body: JudgmentCreate, triage: Triage, correlation_id: CorrelationId, caller: TriageOfficer
) -> JudgmentRead:
    """An officer judges a case the rules sent for review, or re-judges a judged case (give a reason)."""
    choice = OfficerChoice(
        by=body.by,
        category=body.category,
        risk_level=body.risk_level,
        sla_tier=body.sla_tier,
        handling_level=body.handling_level,
        campaign_ids=tuple(body.campaign_ids) if body.campaign_ids is not None else None,
        reason=body.reason,
    )
    command = JudgeCase(
        case_id=case_id,
        choice=choice,
        now=triage.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    judgment: Judgment = await triage.handle(command)
    return _judgment_read(case_id, judgment, triage.reference)


@router.get("/review-queue", response_model=ReviewQueuePage)
async def review_queue(
    triage: Triage,
    caller: JudgmentReader,
    town_code: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: PageOffset = 0,
) -> ReviewQueuePage:
    """The cases awaiting an officer's judgment, the longest waiting first; a caller scoped to a town
    sees that town's (403 for another's)."""
    town = caller.narrowed_to_region(town_code)
    return await queries.review_queue_page(triage.database, town, limit, offset)


def _judgment_read(case_id: UUID, judgment: Judgment, reference: ReferenceData) -> JudgmentRead:
    decision = judgment.decision
    category = reference.categories.get(decision.category)
    return JudgmentRead(
        case_id=case_id,
        category=decision.category,
        category_name=category.name if category is not None else decision.category,
        risk_level=decision.risk_level,
        campaign_ids=list(decision.campaign_ids),
        handling_level=decision.handling_level,
        sla_tier=decision.sla_tier,
        rules_fired=[RuleHitRead(rule_id=hit.rule_id, reason=hit.reason) for hit in decision.rules_fired],
        judged_by=decision.judged_by,
        judged_by_id=judgment.judged_by_id,
        confidence=decision.confidence,
        judged_at=judgment.judged_at,
        event_id=judgment.event_id,
        supersedes_event_id=decision.supersedes_event_id,
        rejudgment_reason=decision.rejudgment_reason,
    )
