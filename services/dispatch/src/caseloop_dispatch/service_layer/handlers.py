"""dispatch's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from caseloop_dispatch.adapters.tables import assignments
from caseloop_dispatch.domain.model import (
    AcknowledgeCase,
    DispatchCase,
    ReportResult,
    acknowledge,
    evolve,
    fold,
    report_result,
    route,
)
from caseloop_dispatch.service_layer.views import AssignmentView, row_of, view_of
from caseloop_events.clock import Clock
from caseloop_events.consumer import Delivery
from caseloop_events.envelope import Envelope
from caseloop_events.errors import InvalidInput
from caseloop_events.reference import ReferenceData
from caseloop_events.storage import upsert
from caseloop_events.unit_of_work import Database, UnitOfWork


@dataclass(frozen=True)
class DispatchServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    reference: ReferenceData
    clock: Clock


async def acknowledge_case(
    services: DispatchServices, command: AcknowledgeCase, correlation_id: UUID
) -> AssignmentView:
    """The assigned unit signs for the case (签收)."""
    _require_known_unit(services.reference, command.unit_id)
    async with services.database.transaction() as uow:
        case = fold(command.case_id, await uow.lock_case(command.case_id))
        event = acknowledge(case, command, correlation_id)
        await uow.emit(event)
        view = await _project(uow, evolve(case, event))
    assert view is not None
    return view


async def report_case_result(services: DispatchServices, command: ReportResult, correlation_id: UUID) -> AssignmentView:
    """The assigned unit reports the case handled (办结)."""
    _require_known_unit(services.reference, command.unit_id)
    async with services.database.transaction() as uow:
        case = fold(command.case_id, await uow.lock_case(command.case_id))
        event = report_result(case, command, correlation_id)
        await uow.emit(event)
        view = await _project(uow, evolve(case, event))
    assert view is not None
    return view


async def handle_event(services: DispatchServices, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
    """Any event of a case: fold it in, assign the case once it is located and judged, project."""
    await uow.lock_case(event.case_id)
    await uow.record(event)
    case = fold(event.case_id, await uow.case_events(event.case_id))
    if not delivery.replaying:
        assigned = route(case, services.reference, services.clock.now())
        if assigned is not None:
            await uow.emit(assigned)
            case = evolve(case, assigned)
    await _project(uow, case)


def _require_known_unit(reference: ReferenceData, unit_id: str) -> None:
    if unit_id not in reference.units:
        raise InvalidInput("unit_id", f"unknown unit {unit_id!r} (see GET /v1/units)")


async def _project(uow: UnitOfWork, case: DispatchCase) -> AssignmentView | None:
    """Bring the case's assignment row in line with its folded state."""
    view = view_of(case)
    if view is not None:
        await uow.session.execute(upsert(assignments, row_of(view), ("case_id",), uow.dialect))
    return view
