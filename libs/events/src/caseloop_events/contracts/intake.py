"""Screening facts, published by intake on ``caseloop.intake.v1``."""

from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from caseloop_events.envelope import EventPayload, FrozenModel, Producer


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


class CaseAccepted(EventPayload):
    """Screening accepted a case raised by a source system."""

    event_type: ClassVar[str] = "case.accepted"
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
    reason_code: RejectionReason
    note: str = ""


class CaseLinkedAsDuplicate(EventPayload):
    """Screening found the case to repeat an earlier one and linked it instead of judging it again."""

    event_type: ClassVar[str] = "case.duplicate_linked"
    producer: ClassVar[Producer] = Producer.INTAKE

    original_case_id: UUID
    similarity: float = Field(ge=0, le=1)
    reason: str


class CasesMerged(EventPayload):
    """A supervisor merged this case into another one."""

    event_type: ClassVar[str] = "case.merged"
    producer: ClassVar[Producer] = Producer.INTAKE

    into_case_id: UUID
    merged_by: str
    reason: str


class CaseUnmerged(EventPayload):
    """A supervisor undid a merge or a duplicate link; the case goes its own way again."""

    event_type: ClassVar[str] = "case.unmerged"
    producer: ClassVar[Producer] = Producer.INTAKE

    from_case_id: UUID
    unmerged_by: str
    reason: str
