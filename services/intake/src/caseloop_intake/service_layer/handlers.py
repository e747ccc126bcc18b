"""intake's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, update

from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Envelope, Producer
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened
from caseloop_events.runtime.consumer import Delivery
from caseloop_events.runtime.storage import dialect_insert, insert_row_ignoring_duplicates, upsert_row
from caseloop_events.runtime.unit_of_work import Database, UnitOfWork
from caseloop_intake.adapters.tables import case_number_counter, cases
from caseloop_intake.domain.model import (
    EarlierCase,
    IntakeCase,
    MergeCase,
    ReportCase,
    ScreenRound,
    UnmergeCase,
    case_id_for,
    case_number,
    evolve,
    fold,
    merge,
    place_case,
    screen,
    screening_event,
    sequence_of,
    unmerge,
)
from caseloop_intake.domain.screening import ScreeningRules

#: What intake keeps of supervision's topic: whether a case is open. Nothing else is recorded.
SUPERVISION_EVENTS_KEPT = (CaseClosed, CaseReopened)


def keeps(event: Envelope) -> bool:
    """Of supervision's events, only closures and reopenings matter here."""
    return event.producer is not Producer.SUPERVISION or isinstance(event.payload, SUPERVISION_EVENTS_KEPT)


@dataclass(frozen=True)
class IntakeServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    reference: ReferenceData
    clock: Clock
    screening: ScreeningRules


@dataclass(frozen=True)
class ReportOutcome:
    case: IntakeCase
    created: bool


async def report_case(services: IntakeServices, command: ReportCase, correlation_id: UUID) -> ReportOutcome:
    """Screen a report, or return the case already reported with the same source system and external id."""
    _require_known_category(services.reference, command.category, "category")
    case_id = case_id_for(command.source_system, command.external_id)
    place = place_case(command.location, services.reference)
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.lock_case(case_id))
        if case.known:
            return ReportOutcome(case, created=False)
        # Taking the number locks the counter row until commit, so screenings run one at a time:
        # the earlier cases read below include every case screened before, and two similar
        # reports sent together cannot both be accepted.
        sequence = await _next_case_sequence(uow)
        since = command.now - services.screening.duplicate_window
        earlier = await _open_cases_in_grid(uow, place.grid_code, since) if place else []
        outcome = screen(command, place, case_number(sequence, command.now), earlier, services.screening)
        event = screening_event(case_id, outcome, command, correlation_id)
        await uow.emit(event)
        case = evolve(case, event)
        await _project(uow, case, number_from_counter=True)
    return ReportOutcome(case, created=True)


async def screen_round(services: IntakeServices, command: ScreenRound, correlation_id: UUID) -> list[ReportOutcome]:
    """Screen each hazard of a grid worker's round as a report of its own, in the order found.

    Every hazard is checked before any is screened, so bad input creates no case; each hazard
    then has its own transaction, and posting the round again answers with the same cases.
    """
    if services.reference.place_of(command.grid_code) is None:
        raise InvalidInput("grid_code", f"unknown grid code {command.grid_code!r} (see GET /v1/grids)")
    for index, hazard in enumerate(command.hazards):
        _require_known_category(services.reference, hazard.category, f"hazards.{index}.category")
    return [await report_case(services, report, correlation_id) for report in command.reports()]


def _require_known_category(reference: ReferenceData, category: str | None, field: str) -> None:
    if category is not None and category not in reference.categories:
        raise InvalidInput(field, f"unknown category {category!r} (see GET /v1/categories)")


async def merge_case(services: IntakeServices, command: MergeCase, correlation_id: UUID) -> IntakeCase:
    """A supervisor merges a case into another open case it repeats."""
    async with services.database.transaction() as uow:
        # Both cases are locked, always in the same order, so two merges never deadlock and
        # neither case changes status while the merge is decided.
        histories = {
            case_id: await uow.lock_case(case_id) for case_id in sorted({command.case_id, command.into_case_id})
        }
        case = fold(command.case_id, histories[command.case_id])
        into = fold(command.into_case_id, histories[command.into_case_id])
        event = merge(case, into, command, correlation_id)
        await uow.emit(event)
        case = evolve(case, event)
        await _project(uow, case)
    return case


async def unmerge_case(services: IntakeServices, command: UnmergeCase, correlation_id: UUID) -> IntakeCase:
    """A supervisor undoes a merge or a duplicate link; an unlinked duplicate is accepted for judgment."""
    async with services.database.transaction() as uow:
        case = fold(command.case_id, await uow.lock_case(command.case_id))
        for event in unmerge(case, command, correlation_id):
            await uow.emit(event)
            case = evolve(case, event)
        await _project(uow, case)
    return case


async def get_case(services: IntakeServices, case_id: UUID) -> IntakeCase:
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.case_events(case_id))
    if not case.known:
        raise CaseNotFound(case_id)
    return case


async def handle_event(uow: UnitOfWork, event: Envelope, _delivery: Delivery) -> None:
    """Its own topic rebuilds the case list on replay; supervision's tells which cases are closed."""
    if not keeps(event):
        return
    await uow.lock_case(event.case_id)
    await uow.record(event)
    await _project(uow, fold(event.case_id, await uow.case_events(event.case_id)))


async def _next_case_sequence(uow: UnitOfWork) -> int:
    """Take the next case number; the counter row is locked until the transaction ends. One
    statement: creating the counter at 1, or adding one to it, takes the row's lock either way."""
    sequence = await uow.session.scalar(_take_next_number(uow.dialect), {"name": "case_no", "last_value": 1})
    assert sequence is not None
    return int(sequence)


@functools.cache
def _take_next_number(dialect_name: str) -> Any:
    counter = case_number_counter
    return (
        dialect_insert(dialect_name, counter)
        .on_conflict_do_update(index_elements=[counter.c.name], set_={"last_value": counter.c.last_value + 1})
        .returning(counter.c.last_value)
    )


async def _open_cases_in_grid(uow: UnitOfWork, grid_code: str, since: datetime) -> list[EarlierCase]:
    """The grid's accepted, open cases accepted since the duplicate window began: what a report may repeat."""
    rows = await uow.session.execute(
        select(cases).where(
            cases.c.grid_code == grid_code,
            cases.c.status == CaseStatus.ACCEPTED.value,
            cases.c.closed_at.is_(None),
            cases.c.accepted_at >= since,
        )
    )
    return [
        EarlierCase(
            case_id=UUID(row.case_id),
            case_no=row.case_no,
            status=CaseStatus(row.status),
            grid_code=row.grid_code,
            reported_category=row.reported_category,
            title=row.title,
            description=row.description,
            accepted_at=row.accepted_at,
            closed_at=row.closed_at,
        )
        for row in rows
    ]


async def _project(uow: UnitOfWork, case: IntakeCase, *, number_from_counter: bool = False) -> None:
    """Bring the case's row in line with its folded state, and the case-number counter up to its
    number (a replay meets numbers the counter never gave) unless the number was just taken from it."""
    row = _row_of(case)
    if row is None:
        return
    await upsert_row(uow.session, cases, row, ("case_id",))
    if number_from_counter:
        return
    counter = case_number_counter
    sequence = sequence_of(row["case_no"])
    await insert_row_ignoring_duplicates(uow.session, counter, {"name": "case_no", "last_value": 0})
    await uow.session.execute(
        update(counter).where(counter.c.name == "case_no", counter.c.last_value < sequence).values(last_value=sequence)
    )


def _row_of(case: IntakeCase) -> dict[str, Any] | None:
    """The case's row; None while intake knows of the case only that it closed (replay order)."""
    if case.status is None or case.case_no is None or case.screened_at is None:
        return None
    # A rejected case keeps what its rejection carries; every other keeps the report, placed.
    report = case.report
    told = report if report is not None else case.rejected
    assert told is not None
    return {
        "case_id": str(case.case_id),
        "case_no": case.case_no,
        "source_system": told.source_system,
        "external_id": told.external_id,
        "status": case.status.value,
        "title": told.title,
        "description": told.description,
        "reported_category": report.reported_category if report else None,
        "grid_code": report.location.grid_code if report else None,
        "town_code": report.location.town_code if report else None,
        "screened_at": case.screened_at,
        "accepted_at": case.accepted.accepted_at if case.accepted else None,
        "closed_at": case.closed_at,
        "reason_code": case.rejected.reason_code.value if case.rejected else None,
        "follows_case_id": str(case.follows) if case.follows else None,
        "body": told.model_dump_json(),
    }
