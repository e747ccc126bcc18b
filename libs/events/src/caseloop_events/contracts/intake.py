"""Screening facts, published by intake on ``caseloop.intake.v1``."""

from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from caseloop_events.contracts.envelope import EventPayload, FrozenModel, Producer


class CaseLocation(FrozenModel):
    """Where the case is: the grid as reported, resolved up the hierarchy at screening."""

    grid_code: str
    village_code: str
    town_code: str
    district_code: str
    address: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class Reporter(FrozenModel):
    name: str | None = None
    phone: str | None = None


class CaseReport(EventPayload):
    """What a source system reported, as screening placed it (the base of accepted and duplicate cases)."""

    producer: ClassVar[Producer] = Producer.INTAKE

    case_no: str
    source_system: str
    external_id: str
    title: str
    description: str
    reported_category: str | None = None
    location: CaseLocation
    reporter: Reporter | None = None
    reported_occurred_at: AwareDatetime | None = None
    attachments: tuple[str, ...] = ()
    callback_url: str | None = Field(
        default=None, description="where supervision feeds the verified result and the closure back to"
    )


class CaseAccepted(CaseReport):
    """Screening accepted a case raised by a source system: it goes on to judgment.

    Also emitted when an unmerge sets a case that was linked as a duplicate on its own way.
    """

    event_type: ClassVar[str] = "case.accepted"

    accepted_at: datetime


class RejectionReason(StrEnum):
    OUT_OF_JURISDICTION = "out_of_jurisdiction"
    NO_ACTIONABLE_CONTENT = "no_actionable_content"
    TEST_OR_SPAM = "test_or_spam"


class CaseRejected(EventPayload):
    """Screening rejected a case; the case is kept, with the reason, never dropped."""

    event_type: ClassVar[str] = "case.rejected"
    producer: ClassVar[Producer] = Producer.INTAKE

    case_no: str
    source_system: str
    external_id: str
    title: str
    description: str = ""
    address: str | None = None
    reason_code: RejectionReason
    note: str = ""


class CaseLinkedAsDuplicate(CaseReport):
    """Screening found the case to repeat an open earlier one and linked it instead of accepting it
    for judgment; the report is kept whole, so an unmerge can still send it round the loop."""

    event_type: ClassVar[str] = "case.duplicate_linked"

    original_case_id: UUID
    original_case_no: str
    similarity: float = Field(ge=0, le=1)
    reason: str


class CasesMerged(EventPayload):
    """A supervisor merged this case into another one."""

    event_type: ClassVar[str] = "case.merged"
    producer: ClassVar[Producer] = Producer.INTAKE

    into_case_id: UUID
    into_case_no: str
    merged_by: str
    reason: str


class CaseUnmerged(EventPayload):
    """A supervisor undid a merge or a duplicate link; the case goes its own way again.

    Undoing a duplicate link is followed by ``case.accepted`` (caused by this event), so the
    case is judged and assigned like any other.
    """

    event_type: ClassVar[str] = "case.unmerged"
    producer: ClassVar[Producer] = Producer.INTAKE

    from_case_id: UUID
    unmerged_by: str
    reason: str
