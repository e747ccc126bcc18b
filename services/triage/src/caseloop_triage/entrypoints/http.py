"""triage's HTTP routes: translate requests into queries and call the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from caseloop_triage.entrypoints.schemas import JudgmentRead, RuleHitRead
from caseloop_triage.service_layer import handlers
from caseloop_triage.service_layer.handlers import TriageServices


def get_services(request: Request) -> TriageServices:
    services: TriageServices = request.app.state.services
    return services


Services = Annotated[TriageServices, Depends(get_services)]

router = APIRouter(prefix="/v1", tags=["judgment"])


@router.get("/cases/{case_id}/judgment", response_model=JudgmentRead)
async def read_judgment(case_id: UUID, services: Services) -> JudgmentRead:
    """How triage judged the case: category, risk, campaigns, handling level, deadline tier and why."""
    judgment = await handlers.get_judgment(services, case_id)
    decision = judgment.decision
    category = services.reference.categories.get(decision.category)
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
        confidence=decision.confidence,
        judged_at=judgment.judged_at,
        event_id=judgment.event_id,
    )
