"""dispatch's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from caseloop_dispatch.adapters.tables import assignments
from caseloop_dispatch.domain.model import (
    AcknowledgeCase,
    AssignJointly,
    DispatchCase,
    DisputeLimits,
    ReportResult,
    RequestExtension,
    ReturnCase,
    TransferCase,
    acknowledge,
    assign_jointly,
    fold,
    react,
    report_result,
    request_extension,
    return_case,
    transfer_case,
)
from caseloop_dispatch.service_layer.views import AssignmentView, row_of, view_of
from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.errors import InvalidInput
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.contracts.supervision import CLOCK_AND_NOTICE_EVENTS
from caseloop_events.runtime.consumer import Delivery
from caseloop_events.runtime.storage import upsert_row
from caseloop_events.runtime.unit_of_work import Database, UnitOfWork


@dataclass(frozen=True)
class DispatchServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    reference: ReferenceData
    clock: Clock
    limits: DisputeLimits = field(default_factory=DisputeLimits)


async def _decide(
    services: DispatchServices, case_id: UUID, decide: Callable[[DispatchCase], Sequence[Envelope]]
) -> AssignmentView:
    """One command: lock the case, fold it, decide, keep the new events and the projection together."""
    async with services.database.transaction() as uow:
        history = await uow.lock_case(case_id)
        new_events = decide(fold(case_id, history))
        await uow.emit(*new_events)
        view = await _project(uow, fold(case_id, causal_order([*history, *new_events])))
    assert view is not None
    return view


async def acknowledge_case(
    services: DispatchServices, command: AcknowledgeCase, correlation_id: UUID
) -> AssignmentView:
    """The assigned unit signs for the case (签收)."""
    _require_known_unit(services.reference, command.unit_id, "unit_id")
    return await _decide(services, command.case_id, lambda case: [acknowledge(case, command, correlation_id)])


async def report_case_result(services: DispatchServices, command: ReportResult, correlation_id: UUID) -> AssignmentView:
    """The assigned unit reports the case handled (办结)."""
    _require_known_unit(services.reference, command.unit_id, "unit_id")
    return await _decide(services, command.case_id, lambda case: [report_result(case, command, correlation_id)])


async def ask_for_extension(
    services: DispatchServices, command: RequestExtension, correlation_id: UUID
) -> AssignmentView:
    """The lead unit asks for more time (延期); supervision's decision follows on its topic."""
    _require_known_unit(services.reference, command.unit_id, "unit_id")
    return await _decide(services, command.case_id, lambda case: [request_extension(case, command, correlation_id)])


async def return_the_case(services: DispatchServices, command: ReturnCase, correlation_id: UUID) -> AssignmentView:
    """The lead unit returns the case (退单); dispatch re-routes it in the same transaction."""
    _require_known_unit(services.reference, command.unit_id, "unit_id")
    return await _decide(
        services,
        command.case_id,
        lambda case: return_case(case, command, services.reference, services.limits, correlation_id),
    )


async def transfer_the_case(services: DispatchServices, command: TransferCase, correlation_id: UUID) -> AssignmentView:
    """The lead unit hands the case to a named unit (转派)."""
    _require_known_unit(services.reference, command.unit_id, "unit_id")
    _require_known_unit(services.reference, command.to_unit_id, "to_unit_id")
    return await _decide(
        services,
        command.case_id,
        lambda case: transfer_case(case, command, services.reference, services.limits, correlation_id),
    )


async def assign_units_jointly(
    services: DispatchServices, command: AssignJointly, correlation_id: UUID
) -> AssignmentView:
    """A dispatcher assigns a lead and assisting units together."""
    _require_known_unit(services.reference, command.lead_unit_id, "lead_unit_id")
    for n, unit_id in enumerate(command.assisting_unit_ids):
        _require_known_unit(services.reference, unit_id, f"assisting_unit_ids.{n}")
    if command.lead_unit_id in command.assisting_unit_ids:
        raise InvalidInput("assisting_unit_ids", "the lead unit is not also an assisting unit")
    if len(set(command.assisting_unit_ids)) != len(command.assisting_unit_ids):
        raise InvalidInput("assisting_unit_ids", "names a unit twice")
    return await _decide(
        services, command.case_id, lambda case: [assign_jointly(case, command, services.reference, correlation_id)]
    )


def keeps(event: Envelope) -> bool:
    """supervision's clocks and notices change nothing dispatch decides: it does not keep them."""
    return not isinstance(event.payload, CLOCK_AND_NOTICE_EVENTS)


async def handle_event(services: DispatchServices, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
    """Any event of a case: fold it in, take the assignment decision its state calls for, project."""
    if not keeps(event):
        return
    history = await uow.lock_case(event.case_id)
    await uow.record(event)
    events = causal_order([*history, event])
    case = fold(event.case_id, events)
    if not delivery.replaying:
        assigned = react(case, services.reference, services.limits, services.clock.now())
        if assigned is not None:
            await uow.emit(assigned)
            case = fold(event.case_id, causal_order([*events, assigned]))
    await _project(uow, case)


def _require_known_unit(reference: ReferenceData, unit_id: str, field: str) -> None:
    if unit_id not in reference.units:
        raise InvalidInput(field, f"unknown unit {unit_id!r} (see GET /v1/units)")


async def _project(uow: UnitOfWork, case: DispatchCase) -> AssignmentView | None:
    """Bring the case's assignment row in line with its folded state."""
    view = view_of(case)
    if view is not None:
        await upsert_row(uow.session, assignments, row_of(view), ("case_id",))
    return view
