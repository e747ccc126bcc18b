"""intake's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select, update

from caseloop_events.clock import Clock
from caseloop_events.consumer import Delivery
from caseloop_events.envelope import Actor, ActorRole, Envelope, deterministic_id, new_event
from caseloop_events.errors import CaseNotFound
from caseloop_events.reference import ReferenceData
from caseloop_events.storage import insert_ignoring_duplicates, upsert
from caseloop_events.unit_of_work import Database, UnitOfWork
from caseloop_intake.adapters.tables import case_number_counter, cases
from caseloop_intake.domain.model import (
    IntakeCase,
    ReportCase,
    accept,
    case_id_for,
    case_number,
    evolve,
    fold,
    place_case,
    sequence_of,
)


@dataclass(frozen=True)
class IntakeServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    reference: ReferenceData
    clock: Clock


@dataclass(frozen=True)
class ReportOutcome:
    case: IntakeCase
    created: bool


async def report_case(services: IntakeServices, command: ReportCase, correlation_id: UUID) -> ReportOutcome:
    """Accept a case, or return the one already reported with the same source system and external id."""
    case_id = case_id_for(command.source_system, command.external_id)
    place = place_case(command.location, services.reference)
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.lock_case(case_id))
        if case.status is not None:
            return ReportOutcome(case, created=False)
        sequence = await _next_case_sequence(uow)
        accepted = accept(command, place, case_number(sequence, command.now))
        event = new_event(
            accepted,
            case_id=case_id,
            actor=Actor(id=command.source_system, role=ActorRole.SOURCE_SYSTEM),
            occurred_at=command.now,
            correlation_id=correlation_id,
            event_id=deterministic_id(case_id, "accepted"),
        )
        await uow.emit(event)
        case = evolve(case, event)
        await _project(uow, case)
    return ReportOutcome(case, created=True)


async def _next_case_sequence(uow: UnitOfWork) -> int:
    """Take the next case number; the counter row is locked until the transaction ends."""
    counter = case_number_counter
    await uow.session.execute(insert_ignoring_duplicates(counter, {"name": "case_no", "last_value": 0}, uow.dialect))
    await uow.session.execute(select(counter.c.last_value).where(counter.c.name == "case_no").with_for_update())
    sequence = await uow.session.scalar(
        update(counter)
        .where(counter.c.name == "case_no")
        .values(last_value=counter.c.last_value + 1)
        .returning(counter.c.last_value)
    )
    assert sequence is not None
    return int(sequence)


async def _project(uow: UnitOfWork, case: IntakeCase) -> None:
    """Bring the case's row in line with its folded state."""
    if case.accepted is None or case.status is None:
        return
    assert case.case_no is not None
    values = {
        "case_no": case.case_no,
        "status": case.status.value,
        "title": case.accepted.title,
        "grid_code": case.accepted.location.grid_code,
        "town_code": case.accepted.location.town_code,
        "accepted_at": case.accepted.accepted_at,
        "body": case.accepted.model_dump_json(),
    }
    await uow.session.execute(
        upsert(
            cases,
            {
                "case_id": str(case.case_id),
                "source_system": case.accepted.source_system,
                "external_id": case.accepted.external_id,
                **values,
            },
            ("case_id",),
            uow.dialect,
        )
    )
    counter = case_number_counter
    await uow.session.execute(insert_ignoring_duplicates(counter, {"name": "case_no", "last_value": 0}, uow.dialect))
    await uow.session.execute(
        update(counter)
        .where(counter.c.name == "case_no", counter.c.last_value < sequence_of(case.case_no))
        .values(last_value=sequence_of(case.case_no))
    )


async def get_case(services: IntakeServices, case_id: UUID) -> IntakeCase:
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.case_events(case_id))
    if case.status is None:
        raise CaseNotFound(case_id)
    return case


async def handle_event(uow: UnitOfWork, event: Envelope, _delivery: Delivery) -> None:
    """intake reads only its own topic: rebuilding its projection from the log."""
    await uow.lock_case(event.case_id)
    await uow.record(event)
    await _project(uow, fold(event.case_id, await uow.case_events(event.case_id)))
