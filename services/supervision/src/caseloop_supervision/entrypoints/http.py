"""supervision's HTTP routes: translate requests into commands and call the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.supervision import Rating
from caseloop_events.http import CorrelationId, PageOffset, RequestBody
from caseloop_supervision.domain.decisions import EvaluateHandling, VerifyResult
from caseloop_supervision.service_layer import handlers
from caseloop_supervision.service_layer.handlers import SupervisionServices
from caseloop_supervision.service_layer.views import CasePage, CaseView, Timeline


def get_services(request: Request) -> SupervisionServices:
    services: SupervisionServices = request.app.state.services
    return services


Services = Annotated[SupervisionServices, Depends(get_services)]


class VerificationIn(RequestBody):
    passed: bool
    by: str = Field(min_length=1, max_length=64, description="the verifying supervisor")
    note: str = Field(default="", max_length=2000)


class EvaluationIn(RequestBody):
    rating: Rating
    comment: str = Field(default="", max_length=2000)


router = APIRouter(prefix="/v1/cases", tags=["supervision"])


@router.get("", response_model=CasePage)
async def list_cases(
    services: Services,
    status: CaseStatus | None = None,
    town_code: Annotated[str | None, Query(max_length=32)] = None,
    unit_id: Annotated[str | None, Query(max_length=64, description="the lead or an assisting unit")] = None,
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    returned_more_than_once: Annotated[
        bool | None, Query(description="true: returned twice or more (退单拉锯); false: at most once")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: PageOffset = 0,
) -> CasePage:
    """Cases, most recently changed first, filtered by status, town, unit, campaign and returns."""
    return await handlers.list_cases(
        services,
        status=status.value if status else None,
        town_code=town_code,
        unit_id=unit_id,
        campaign_id=campaign_id,
        returned_more_than_once=returned_more_than_once,
        limit=limit,
        offset=offset,
    )


@router.get("/{case_id}", response_model=CaseView)
async def read_case(case_id: UUID, services: Services) -> CaseView:
    """Where the case stands, who holds it, how it got there, and where its feedback stands."""
    return await handlers.get_case(services, case_id)


@router.get("/{case_id}/timeline", response_model=Timeline)
async def read_timeline(case_id: UUID, services: Services) -> Timeline:
    """Every event of the case in causal order, with who acted and what caused each."""
    return await handlers.get_timeline(services, case_id)


@router.post("/{case_id}/verification", response_model=CaseView)
async def verify_result(
    case_id: UUID, body: VerificationIn, services: Services, correlation_id: CorrelationId
) -> CaseView:
    """Verify the unit's reported result (核查); failing sends the case back for rework."""
    command = VerifyResult(
        passed=body.passed, by=body.by, note=body.note, now=services.clock.now(), correlation_id=correlation_id
    )
    return await handlers.verify_result(services, case_id, command)


@router.post("/{case_id}/evaluation", response_model=CaseView)
async def evaluate_handling(
    case_id: UUID, body: EvaluationIn, services: Services, correlation_id: CorrelationId
) -> CaseView:
    """The citizen's evaluation (回访评价); satisfied or basically satisfied closes the case, unsatisfied
    reopens it (重办)."""
    command = EvaluateHandling(
        rating=body.rating, comment=body.comment, now=services.clock.now(), correlation_id=correlation_id
    )
    return await handlers.evaluate_handling(services, case_id, command)
