"""intake's HTTP routes: translate requests into commands and call the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from caseloop_events.contracts.intake import Reporter
from caseloop_events.errors import InvalidInput
from caseloop_events.http import CorrelationId, PageOffset
from caseloop_intake.domain.model import IntakeCase, LocationGiven, ReportCase
from caseloop_intake.entrypoints.schemas import (
    CaseCreate,
    CaseCreated,
    CaseRead,
    CategoryRead,
    GridPage,
    GridRead,
)
from caseloop_intake.service_layer import handlers
from caseloop_intake.service_layer.handlers import IntakeServices


def get_services(request: Request) -> IntakeServices:
    services: IntakeServices = request.app.state.services
    return services


Services = Annotated[IntakeServices, Depends(get_services)]

router = APIRouter(prefix="/v1", tags=["screening"])


@router.post(
    "/cases",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseCreated,
    responses={200: {"model": CaseCreated, "description": "the case was reported before: the same case"}},
)
async def report_case(
    body: CaseCreate, services: Services, correlation_id: CorrelationId, response: Response
) -> CaseCreated:
    """Report a case. The same source_system and external_id always give the same case."""
    if body.category is not None and body.category not in services.reference.categories:
        raise InvalidInput("category", f"unknown category {body.category!r} (see GET /v1/categories)")
    command = ReportCase(
        source_system=body.source_system,
        external_id=body.external_id,
        title=body.title,
        description=body.description,
        category=body.category,
        location=LocationGiven(body.location.grid_code, body.location.address, body.location.lat, body.location.lon),
        reporter=Reporter(name=body.reporter.name, phone=body.reporter.phone) if body.reporter else None,
        occurred_at=body.occurred_at,
        attachments=tuple(str(url) for url in body.attachments),
        now=services.clock.now(),
    )
    outcome = await handlers.report_case(services, command, correlation_id)
    response.headers["Location"] = f"/v1/cases/{outcome.case.case_id}"
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    assert outcome.case.case_no is not None
    assert outcome.case.status is not None
    return CaseCreated(case_id=outcome.case.case_id, case_no=outcome.case.case_no, status=outcome.case.status)


@router.get("/cases/{case_id}", response_model=CaseRead)
async def read_case(case_id: UUID, services: Services) -> CaseRead:
    """What intake holds about a case."""
    return _case_read(await handlers.get_case(services, case_id))


def _case_read(case: IntakeCase) -> CaseRead:
    accepted = case.accepted
    assert accepted is not None
    assert case.status is not None
    assert case.case_no is not None
    return CaseRead(
        case_id=case.case_id,
        case_no=case.case_no,
        status=case.status,
        source_system=accepted.source_system,
        external_id=accepted.external_id,
        title=accepted.title,
        description=accepted.description,
        reported_category=accepted.reported_category,
        location=accepted.location,
        reporter=accepted.reporter,
        reported_occurred_at=accepted.reported_occurred_at,
        attachments=list(accepted.attachments),
        accepted_at=accepted.accepted_at,
    )


@router.get("/grids", response_model=GridPage, tags=["reference"])
async def list_grids(
    services: Services,
    town_code: Annotated[str | None, Query(max_length=32)] = None,
    village_code: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=64, description="part of a grid, group, village or town name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: PageOffset = 0,
) -> GridPage:
    """The grid codes of the region with their group, village, town and district."""
    places = [
        p
        for p in services.reference.grids.values()
        if (town_code is None or p.town_code == town_code)
        and (village_code is None or p.village_code == village_code)
        and (q is None or any(q in name for name in (p.grid_name, p.group_name, p.village_name, p.town_name)))
    ]
    places.sort(key=lambda p: p.grid_code)
    page = places[offset : offset + limit]
    return GridPage(
        items=[GridRead.model_validate(p.model_dump()) for p in page], total=len(places), limit=limit, offset=offset
    )


@router.get("/categories", response_model=list[CategoryRead], tags=["reference"])
async def list_categories(services: Services) -> list[CategoryRead]:
    """The case categories a report may name."""
    return [CategoryRead(code=c.code, name=c.name) for c in services.reference.categories.values()]
