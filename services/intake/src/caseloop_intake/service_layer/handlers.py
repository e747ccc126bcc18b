"""intake's handlers: reports, screening rounds, merges and unmerges, and the projection of a case
into its row. Each works in the unit of work it is given."""

from __future__ import annotations

from dataclasses import dataclass

from caseloop_events.contracts.errors import InvalidInput
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.runtime.streams import Stream
from caseloop_events.runtime.unit_of_work import UnitOfWork
from caseloop_intake.adapters.cases import IntakeStore, row_of, screening_stream_of
from caseloop_intake.adapters.tables import cases
from caseloop_intake.domain.model import (
    CASES,
    IntakeCase,
    MergeCase,
    ReportCase,
    UnmergeCase,
    case_id_for,
    case_number,
    merge,
    place_case,
    screen,
    screening_event,
    unmerge,
)
from caseloop_intake.domain.screening import ScreeningRules


@dataclass(frozen=True)
class IntakeDeps:
    """What intake's handlers use besides their unit of work; built once, in app.py."""

    reference: ReferenceData
    screening: ScreeningRules
    store: IntakeStore


Work = UnitOfWork[IntakeDeps, IntakeCase]


@dataclass(frozen=True)
class ReportOutcome:
    case: IntakeCase
    created: bool


class KeyUsedBefore(Exception):
    """The request's Idempotency-Key was used before: its first answer (or its request still in
    flight) decides what this request gets, not a screening (``adapters.idempotency.begin``)."""


async def report_case(command: ReportCase, uow: Work) -> ReportOutcome:
    """Screen a report, or return the case already reported with the same source system and external id.

    Every screening in a grid writes the grid's screening stream: a report screened while another of
    the same grid commits is screened again, so the earlier cases it is compared with include every
    case screened before it, and two similar reports sent together cannot both be accepted. In one
    process the screenings of a grid take turns (``exclusive``) rather than race. What screening
    reads is one round trip (``IntakeStore.read_for_screening``), its write another."""
    deps = uow.deps
    require_known_category(deps.reference, command.category, "category")
    case_id = case_id_for(command.source_system, command.external_id)
    place = place_case(command.location, deps.reference)
    grid = (screening_stream_of(place.grid_code), place.grid_code) if place else None
    if grid is not None:
        await uow.exclusive(grid[0])
    kept = {i: k for i in (case_id, *([grid[0]] if grid else [])) if (k := uow.cached(i)) is not None}
    since = command.now - deps.screening.duplicate_window
    read = await deps.store.read_for_screening(case_id, grid, since, command.claim, kept, CASES)
    if not read.key_claimed:
        raise KeyUsedBefore(command.claim)
    uow.adopt(read.streams)
    stream = uow.loaded(case_id)
    if stream.state.known:
        return ReportOutcome(stream.state, created=False)
    if grid is not None:
        uow.depend_on(grid[0])
    assert read.number is not None, "a new case takes a number with what screening reads"
    outcome = screen(command, place, case_number(read.number, command.now), read.earlier, deps.screening)
    uow.emit(screening_event(case_id, outcome, command))
    return ReportOutcome(stream.state, created=True)


def require_known_category(reference: ReferenceData, category: str | None, field: str) -> None:
    if category is not None and category not in reference.categories:
        raise InvalidInput(field, f"unknown category {category!r} (see GET /v1/categories)")


async def merge_case(command: MergeCase, uow: Work) -> IntakeCase:
    """A supervisor merges a case into another open case it repeats (both as read, both written)."""
    await uow.load(command.case_id, command.into_case_id)
    case, into = uow.loaded(command.case_id), uow.loaded(command.into_case_id)
    uow.emit(merge(case.state, into.state, command))
    uow.depend_on(command.into_case_id)
    return case.state


async def unmerge_case(command: UnmergeCase, uow: Work) -> IntakeCase:
    """A supervisor undoes a merge or a duplicate link; an unlinked duplicate is accepted for judgment."""
    stream = await uow.stream(command.case_id)
    uow.emit(*unmerge(stream.state, command))
    return stream.state


async def project(stream: Stream[IntakeCase], uow: Work) -> None:
    """Bring the case's row in line with its folded state."""
    row = row_of(stream.state)
    if row is not None:
        uow.put(cases, row)
