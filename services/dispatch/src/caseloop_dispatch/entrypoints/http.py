"""dispatch's HTTP routes: translate requests into commands and call the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request

from caseloop_dispatch.domain.model import AcknowledgeCase, ReportResult
from caseloop_dispatch.entrypoints.schemas import AcknowledgementCreate, ResultCreate, UnitRead
from caseloop_dispatch.service_layer import handlers, views
from caseloop_dispatch.service_layer.handlers import DispatchServices
from caseloop_dispatch.service_layer.views import AssignmentView, InboxPage
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.http import CorrelationId, PageOffset


def get_services(request: Request) -> DispatchServices:
    services: DispatchServices = request.app.state.services
    return services


Services = Annotated[DispatchServices, Depends(get_services)]

router = APIRouter(prefix="/v1", tags=["assignment"])


@router.get("/cases/{case_id}/assignment", response_model=AssignmentView)
async def read_assignment(case_id: UUID, services: Services) -> AssignmentView:
    """The unit a case is assigned to, why, and where it stands."""
    return await views.assignment(services.database, case_id)


@router.post("/cases/{case_id}/acknowledge", response_model=AssignmentView)
async def acknowledge_case(
    case_id: UUID, body: AcknowledgementCreate, services: Services, correlation_id: CorrelationId
) -> AssignmentView:
    """The assigned unit signs for the case (签收); its handling clock starts."""
    command = AcknowledgeCase(case_id=case_id, unit_id=body.unit_id, by=body.by, now=services.clock.now())
    return await handlers.acknowledge_case(services, command, correlation_id)


@router.post("/cases/{case_id}/result", response_model=AssignmentView)
async def report_result(
    case_id: UUID, body: ResultCreate, services: Services, correlation_id: CorrelationId
) -> AssignmentView:
    """The assigned unit reports the case handled (办结), with what it did."""
    command = ReportResult(
        case_id=case_id,
        unit_id=body.unit_id,
        by=body.by,
        summary=body.summary,
        evidence=tuple(body.evidence),
        now=services.clock.now(),
    )
    return await handlers.report_case_result(services, command, correlation_id)


@router.get("/units/{unit_id}/cases", response_model=InboxPage)
async def unit_inbox(
    services: Services,
    unit_id: Annotated[str, Path(max_length=64)],
    status: CaseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: PageOffset = 0,
) -> InboxPage:
    """A unit's inbox: the cases assigned to it, newest first."""
    return await views.unit_inbox(services.database, services.reference, unit_id, status, limit, offset)


@router.get("/units", response_model=list[UnitRead], tags=["reference"])
async def list_units(services: Services) -> list[UnitRead]:
    """The responsible units and the responsibility list (职责清单) of each."""
    return [
        UnitRead(
            unit_id=unit.unit_id,
            name=unit.name,
            kind=unit.kind,
            level=unit.level,
            town_code=unit.town_code,
            categories=list(unit.categories),
            area_towns="all" if unit.area_towns is None else sorted(unit.area_towns),
        )
        for unit in services.reference.units.values()
    ]
