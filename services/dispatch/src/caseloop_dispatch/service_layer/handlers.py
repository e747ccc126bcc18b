"""dispatch's handlers: the commands units and dispatchers send, the events it reacts to, and the
projection of a case into its assignment row. Each works in the unit of work it is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from caseloop_dispatch.adapters.assignments import AssignmentView, row_of, view_of
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
    react,
    report_result,
    request_extension,
    return_case,
    transfer_case,
)
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.errors import InvalidInput
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.runtime.streams import Stream
from caseloop_events.runtime.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class DispatchDeps:
    """What dispatch's handlers use besides their unit of work; built once, in app.py."""

    reference: ReferenceData
    limits: DisputeLimits = field(default_factory=DisputeLimits)


Work = UnitOfWork[DispatchDeps, DispatchCase]


# --- commands ---------------------------------------------------------------------------------


async def acknowledge_case(command: AcknowledgeCase, uow: Work) -> AssignmentView:
    """The assigned unit signs for the case (签收)."""
    _require_known_unit(uow.deps.reference, command.unit_id, "unit_id")
    return await _decide(uow, command.case_id, lambda case: [acknowledge(case, command)])


async def report_case_result(command: ReportResult, uow: Work) -> AssignmentView:
    """The assigned unit reports the case handled (办结)."""
    _require_known_unit(uow.deps.reference, command.unit_id, "unit_id")
    return await _decide(uow, command.case_id, lambda case: [report_result(case, command)])


async def ask_for_extension(command: RequestExtension, uow: Work) -> AssignmentView:
    """The lead unit asks for more time (延期); supervision's decision follows on its topic."""
    _require_known_unit(uow.deps.reference, command.unit_id, "unit_id")
    return await _decide(uow, command.case_id, lambda case: [request_extension(case, command)])


async def return_the_case(command: ReturnCase, uow: Work) -> AssignmentView:
    """The lead unit returns the case (退单); dispatch re-routes it in the same unit of work."""
    _require_known_unit(uow.deps.reference, command.unit_id, "unit_id")
    deps = uow.deps
    return await _decide(uow, command.case_id, lambda case: return_case(case, command, deps.reference, deps.limits))


async def transfer_the_case(command: TransferCase, uow: Work) -> AssignmentView:
    """The lead unit hands the case to a named unit (转派)."""
    _require_known_unit(uow.deps.reference, command.unit_id, "unit_id")
    _require_known_unit(uow.deps.reference, command.to_unit_id, "to_unit_id")
    deps = uow.deps
    return await _decide(uow, command.case_id, lambda case: transfer_case(case, command, deps.reference, deps.limits))


async def assign_units_jointly(command: AssignJointly, uow: Work) -> AssignmentView:
    """A dispatcher assigns a lead and assisting units together."""
    reference = uow.deps.reference
    _require_known_unit(reference, command.lead_unit_id, "lead_unit_id")
    for n, unit_id in enumerate(command.assisting_unit_ids):
        _require_known_unit(reference, unit_id, f"assisting_unit_ids.{n}")
    if command.lead_unit_id in command.assisting_unit_ids:
        raise InvalidInput("assisting_unit_ids", "the lead unit is not also an assisting unit")
    if len(set(command.assisting_unit_ids)) != len(command.assisting_unit_ids):
        raise InvalidInput("assisting_unit_ids", "names a unit twice")
    return await _decide(uow, command.case_id, lambda case: [assign_jointly(case, command, reference)])


async def _decide(uow: Work, case_id: UUID, decide: Callable[[DispatchCase], Sequence[Envelope]]) -> AssignmentView:
    """Fold the case, decide, keep the new events; the view of the case as they leave it."""
    stream = await uow.stream(case_id)
    uow.emit(*decide(stream.state))
    view = view_of(stream.state)
    assert view is not None, "a command dispatch takes acts on an assigned case"
    return view


def _require_known_unit(reference: ReferenceData, unit_id: str, field: str) -> None:
    if unit_id not in reference.units:
        raise InvalidInput(field, f"unknown unit {unit_id!r} (see GET /v1/units)")


# --- events -----------------------------------------------------------------------------------


async def assign_when_the_case_calls_for_it(event: Envelope, uow: Work) -> None:
    """A case's event changed it: the assignment its state calls for, if any (a first assignment
    once it is judged, a new one when it is reopened, re-judged or reworked too often)."""
    stream = await uow.stream(event.case_id)
    assigned = react(stream.state, uow.deps.reference, uow.deps.limits, uow.now())
    if assigned is not None:
        uow.emit(assigned)


# --- projection -------------------------------------------------------------------------------


async def project(stream: Stream[DispatchCase], uow: Work) -> None:
    """Bring the case's assignment row in line with its folded state (none before it is assigned)."""
    view = view_of(stream.state)
    if view is not None:
        uow.put(assignments, row_of(view))
