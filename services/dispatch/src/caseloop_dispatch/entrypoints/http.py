"""dispatch's HTTP routes: translate requests into commands and call the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query

from caseloop_dispatch.adapters import assignments
from caseloop_dispatch.adapters.assignments import AssignmentView, InboxPage
from caseloop_dispatch.config import DispatchSettings
from caseloop_dispatch.domain.model import (
    AcknowledgeCase,
    AssignJointly,
    DispatchCase,
    ReportResult,
    RequestExtension,
    ReturnCase,
    TransferCase,
)
from caseloop_dispatch.entrypoints.schemas import (
    AcknowledgementCreate,
    ExtensionCreate,
    JointAssignmentCreate,
    ResultCreate,
    ReturnCreate,
    TransferCreate,
    UnitRead,
)
from caseloop_dispatch.service_layer.handlers import DispatchDeps
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.errors import NotFound
from caseloop_events.runtime.auth import Forbidden, Principal, Role, admits
from caseloop_events.runtime.http import CorrelationId, PageOffset
from caseloop_events.runtime.service import Service, service_of

#: The composed dispatch service: its commands (``handle``), database and dependencies.
Dispatch = Annotated[Service[DispatchSettings, DispatchDeps, DispatchCase], Depends(service_of)]

router = APIRouter(prefix="/v1", tags=["assignment"])

Unit = Annotated[Principal, Depends(admits(Role.UNIT))]
Supervisor = Annotated[Principal, Depends(admits(Role.SUPERVISOR))]
UnitOrSupervisor = Annotated[Principal, Depends(admits(Role.UNIT, Role.SUPERVISOR))]


async def _require_case_access(dispatch: Dispatch, caller: Principal, case_id: UUID) -> AssignmentView:
    """The case's assignment, if the caller may see it: a unit it is assigned to (lead or assisting),
    or a supervisor of its region; 403 else."""
    assignment = await assignments.assignment(dispatch.database, case_id)
    units = [assignment.unit_id, *assignment.assisting_unit_ids]
    caller.require_case(source_system=None, unit_ids=units, place_code=assignment.town_code)
    return assignment


async def _require_acting_unit(dispatch: Dispatch, caller: Principal, case_id: UUID, unit_id: str) -> None:
    """A unit acts only in its own name, and only on a case assigned to it (403 else)."""
    if unit_id != caller.unit_id:
        raise Forbidden(f"unit {caller.unit_id} may not act as unit {unit_id}")
    await _require_access_to_the_case(dispatch, caller, case_id)


async def _require_access_to_the_case(dispatch: Dispatch, caller: Principal, case_id: UUID) -> None:
    """What ``_require_case_access`` checks, on the case as dispatch keeps it in memory (no database
    round trip for a case it handled lately); a refusal is checked again on the case as stored."""

    def may_command(case: DispatchCase) -> None:
        assignment = case.assignment
        if assignment is None:
            raise NotFound(f"case {case_id} has no assignment")
        units = [assignment.unit_id, *assignment.assisting_unit_ids]
        caller.require_case(source_system=None, unit_ids=units, place_code=assignment.town_code)

    await dispatch.check(case_id, may_command)


@router.get("/cases/{case_id}/assignment", response_model=AssignmentView)
async def read_assignment(case_id: UUID, dispatch: Dispatch, caller: UnitOrSupervisor) -> AssignmentView:
    """The unit a case is assigned to, why, and where it stands (for its units and its region's supervisors)."""
    return await _require_case_access(dispatch, caller, case_id)


@router.post("/cases/{case_id}/acknowledge", response_model=AssignmentView)
async def acknowledge_case(
    case_id: UUID, body: AcknowledgementCreate, dispatch: Dispatch, correlation_id: CorrelationId, caller: Unit
) -> AssignmentView:
    """The assigned unit signs for the case (签收); its handling clock starts."""
    await _require_acting_unit(dispatch, caller, case_id, body.unit_id)
    command = AcknowledgeCase(
        case_id=case_id,
        unit_id=body.unit_id,
        by=body.by,
        now=dispatch.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: AssignmentView = await dispatch.handle(command)
    return view


@router.post("/cases/{case_id}/result", response_model=AssignmentView)
async def report_result(
    case_id: UUID, body: ResultCreate, dispatch: Dispatch, correlation_id: CorrelationId, caller: Unit
) -> AssignmentView:
    """The assigned unit reports the case handled (办结), with what it did."""
    await _require_acting_unit(dispatch, caller, case_id, body.unit_id)
    command = ReportResult(
        case_id=case_id,
        unit_id=body.unit_id,
        by=body.by,
        summary=body.summary,
        evidence=tuple(body.evidence),
        now=dispatch.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: AssignmentView = await dispatch.handle(command)
    return view


@router.post("/cases/{case_id}/extension", response_model=AssignmentView)
async def request_extension(
    case_id: UUID, body: ExtensionCreate, dispatch: Dispatch, correlation_id: CorrelationId, caller: Unit
) -> AssignmentView:
    """The lead unit asks for more time (延期), with its reason and the deadline it needs; a supervisor
    approves or refuses it in supervision (``POST /v1/cases/{case_id}/extension/decision``)."""
    await _require_acting_unit(dispatch, caller, case_id, body.unit_id)
    command = RequestExtension(
        case_id=case_id,
        unit_id=body.unit_id,
        by=body.by,
        reason=body.reason,
        due_at=body.due_at,
        now=dispatch.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: AssignmentView = await dispatch.handle(command)
    return view


@router.post("/cases/{case_id}/return", response_model=AssignmentView)
async def return_case(
    case_id: UUID, body: ReturnCreate, dispatch: Dispatch, correlation_id: CorrelationId, caller: Unit
) -> AssignmentView:
    """The lead unit returns the case (退单) with a reason; dispatch re-routes it at once to another unit
    that answers for it (never one that returned it), or to the fallback owner once the returns reach the
    limit. Fallback owners cannot return."""
    await _require_acting_unit(dispatch, caller, case_id, body.unit_id)
    command = ReturnCase(
        case_id=case_id,
        unit_id=body.unit_id,
        by=body.by,
        reason=body.reason,
        now=dispatch.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: AssignmentView = await dispatch.handle(command)
    return view


@router.post("/cases/{case_id}/transfer", response_model=AssignmentView)
async def transfer_case(
    case_id: UUID, body: TransferCreate, dispatch: Dispatch, correlation_id: CorrelationId, caller: Unit
) -> AssignmentView:
    """The lead unit hands the case to a named unit (转派) with a reason, within the transfer limit."""
    await _require_acting_unit(dispatch, caller, case_id, body.unit_id)
    command = TransferCase(
        case_id=case_id,
        unit_id=body.unit_id,
        by=body.by,
        to_unit_id=body.to_unit_id,
        reason=body.reason,
        now=dispatch.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: AssignmentView = await dispatch.handle(command)
    return view


@router.post("/cases/{case_id}/assignment", response_model=AssignmentView)
async def assign_jointly(
    case_id: UUID, body: JointAssignmentCreate, dispatch: Dispatch, correlation_id: CorrelationId, caller: Supervisor
) -> AssignmentView:
    """A dispatcher assigns a lead unit and assisting units together, before the lead acknowledges.
    Only the lead answers for the case; assisting units see it in their inbox."""
    await _require_access_to_the_case(dispatch, caller, case_id)
    command = AssignJointly(
        case_id=case_id,
        lead_unit_id=body.lead_unit_id,
        assisting_unit_ids=tuple(body.assisting_unit_ids),
        by=body.by,
        reason=body.reason,
        now=dispatch.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: AssignmentView = await dispatch.handle(command)
    return view


@router.get("/units/{unit_id}/cases", response_model=InboxPage)
async def unit_inbox(
    dispatch: Dispatch,
    caller: UnitOrSupervisor,
    unit_id: Annotated[str, Path(max_length=64)],
    status: CaseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: PageOffset = 0,
) -> InboxPage:
    """A unit's inbox: the cases it leads or assists, newest assignment first (a unit reads its own)."""
    caller.require_unit([unit_id])
    return await assignments.unit_inbox(dispatch.database, dispatch.reference, unit_id, status, limit, offset)


@router.get("/units", response_model=list[UnitRead], tags=["reference"])
async def list_units(dispatch: Dispatch) -> list[UnitRead]:
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
        for unit in dispatch.reference.units.values()
    ]
