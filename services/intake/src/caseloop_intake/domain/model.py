"""Screening: what intake decides about a reported case. Pure: no I/O, time is given."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from caseloop_events.clock import REGION_TIMEZONE
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation, CaseRejected, Reporter
from caseloop_events.envelope import CASELOOP_NAMESPACE, Envelope
from caseloop_events.errors import InvalidInput
from caseloop_events.reference import GridPlace, ReferenceData


@dataclass(frozen=True)
class LocationGiven:
    grid_code: str | None
    address: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class ReportCase:
    """A source system reports a case."""

    source_system: str
    external_id: str
    title: str
    description: str
    category: str | None
    location: LocationGiven
    reporter: Reporter | None
    occurred_at: datetime | None
    attachments: tuple[str, ...]
    now: datetime


@dataclass(frozen=True)
class IntakeCase:
    """What intake knows of a case: folded from its screening events."""

    case_id: uuid.UUID
    case_no: str | None = None
    status: CaseStatus | None = None
    accepted: CaseAccepted | None = None


def case_id_for(source_system: str, external_id: str) -> uuid.UUID:
    """The same source system and external id always name the same case."""
    return uuid.uuid5(CASELOOP_NAMESPACE, f"case\x1f{source_system}\x1f{external_id}")


def case_number(sequence: int, accepted_at: datetime) -> str:
    """A human-readable, unique number: region date of acceptance and a global sequence."""
    return f"CL{accepted_at.astimezone(REGION_TIMEZONE):%Y%m%d}{sequence:07d}"


def sequence_of(case_no: str) -> int:
    """The global sequence a case number carries (its last seven digits)."""
    return int(case_no[-7:])


def evolve(case: IntakeCase, event: Envelope) -> IntakeCase:
    match event.payload:
        case CaseAccepted() as accepted:
            return replace(case, case_no=accepted.case_no, status=CaseStatus.ACCEPTED, accepted=accepted)
        case CaseRejected() as rejected:
            return replace(case, case_no=rejected.case_no, status=CaseStatus.REJECTED)
        case _:
            return case


def fold(case_id: uuid.UUID, events: Iterable[Envelope]) -> IntakeCase:
    case = IntakeCase(case_id)
    for event in events:
        case = evolve(case, event)
    return case


def place_case(location: LocationGiven, reference: ReferenceData) -> GridPlace:
    """Find the grid of a case: its grid code, or else the most precise place its address names."""
    if location.grid_code is not None:
        place = reference.place_of(location.grid_code)
        if place is None:
            raise InvalidInput("location.grid_code", f"unknown grid code {location.grid_code!r} (see GET /v1/grids)")
        return place
    address = location.address or ""
    for level in ("grid_name", "group_name", "village_name"):
        matches = sorted(
            (p for p in reference.grids.values() if getattr(p, level) in address),
            key=lambda p: (-len(getattr(p, level)), p.grid_code),
        )
        if matches:
            return matches[0]
    raise InvalidInput(
        "location.address", "names no grid, group, village or community of the region; give location.grid_code"
    )


def accept(command: ReportCase, place: GridPlace, case_no: str) -> CaseAccepted:
    """Screening accepts a case that is placed in a grid of the region."""
    return CaseAccepted(
        case_no=case_no,
        source_system=command.source_system,
        external_id=command.external_id,
        title=command.title,
        description=command.description,
        reported_category=command.category,
        location=CaseLocation(
            grid_code=place.grid_code,
            village_code=place.village_code,
            town_code=place.town_code,
            district_code=place.district_code,
            address=command.location.address,
            lat=command.location.lat,
            lon=command.location.lon,
        ),
        reporter=command.reporter,
        reported_occurred_at=command.occurred_at,
        attachments=command.attachments,
        accepted_at=command.now,
    )
