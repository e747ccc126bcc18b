"""Request and response models of intake's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from pydantic import AnyHttpUrl, AwareDatetime, BaseModel, Field, StringConstraints, UrlConstraints, model_validator

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.intake import CaseLocation, RejectionReason, Reporter
from caseloop_events.runtime.http import IsoDate, IsoDateTime, RequestBody


class LocationIn(RequestBody):
    grid_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{16}$")] | None = Field(
        default=None, description="the grid's 16-digit code (GET /v1/grids)", examples=["3301100010010101"]
    )
    address: str | None = Field(default=None, min_length=1, max_length=500)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _grid_or_address(self) -> LocationIn:
        if self.grid_code is None and self.address is None:
            raise ValueError("give location.grid_code, location.address, or both")
        return self


class ReporterIn(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 -]{2,19}$")] | None = None


PersonId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
CallbackUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]


class CaseCreate(RequestBody):
    """A case reported by another government system."""

    source_system: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{1,63}$")] = Field(
        examples=["hotline-12345"]
    )
    external_id: str = Field(min_length=1, max_length=128, examples=["HL-2026-000123"])
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=5000)
    category: str | None = Field(default=None, max_length=64, description="a category code (GET /v1/categories)")
    location: LocationIn
    reporter: ReporterIn | None = None
    occurred_at: IsoDateTime | None = None
    attachments: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)
    callback_url: CallbackUrl | None = Field(
        default=None, description="where the verified result and the closure are fed back (http or https)"
    )


class RejectionRead(BaseModel):
    """Why screening rejected the case."""

    reason_code: RejectionReason
    note: str


class DuplicateLinkRead(BaseModel):
    """The open case this report repeats, and how alike they are."""

    case_id: UUID
    case_no: str
    similarity: float
    reason: str


class MergeRead(BaseModel):
    """The case a supervisor merged this one into."""

    case_id: UUID
    case_no: str
    merged_by: str
    reason: str
    merged_at: AwareDatetime


class CaseCreated(BaseModel):
    """How screening answered a report."""

    case_id: UUID
    case_no: str
    status: CaseStatus
    rejection: RejectionRead | None = None
    duplicate_of: DuplicateLinkRead | None = None


class CaseRead(BaseModel):
    """What intake holds about a case, whichever way screening went."""

    case_id: UUID
    case_no: str
    status: CaseStatus
    source_system: str
    external_id: str
    title: str
    description: str
    reported_category: str | None
    location: CaseLocation | None = Field(description="where screening placed the case; none for a rejected one")
    address: str | None
    reporter: Reporter | None
    reported_occurred_at: AwareDatetime | None
    attachments: list[str]
    callback_url: str | None
    screened_at: AwareDatetime
    accepted_at: AwareDatetime | None = Field(description="when the case was accepted for judgment, if it was")
    rejection: RejectionRead | None
    duplicate_of: DuplicateLinkRead | None
    merged_into: MergeRead | None
    closed_at: AwareDatetime | None


class MergeCreate(RequestBody):
    """A supervisor merges this case into another one it repeats."""

    into_case_id: UUID = Field(description="the accepted, open case this one follows")
    by: PersonId = Field(description="the supervisor", examples=["li.na"])
    reason: Reason = Field(examples=["同一事项，已由原案件办理"])


class UnmergeCreate(RequestBody):
    """A supervisor undoes a merge or a duplicate link."""

    by: PersonId = Field(description="the supervisor", examples=["li.na"])
    reason: Reason = Field(examples=["不是同一事项"])


class HazardIn(RequestBody):
    """A hazard found on a screening round, in the round's grid."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=5000)
    category: str | None = Field(default=None, max_length=64, description="a category code (GET /v1/categories)")
    address: str | None = Field(default=None, min_length=1, max_length=500)
    occurred_at: IsoDateTime | None = None
    attachments: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)


class ScreeningCreate(RequestBody):
    """A grid worker's daily screening round (日排查): the hazards found in one grid."""

    grid_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{16}$")] = Field(
        description="the grid screened (GET /v1/grids)", examples=["3301100010010101"]
    )
    worker_id: PersonId = Field(description="the grid worker", examples=["gw-0101"])
    screened_on: IsoDate
    round_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")] | None = Field(
        default=None,
        description="names the round; without it the grid, worker and date do, so give one for a second round a day",
    )
    hazards: list[HazardIn] = Field(min_length=1, max_length=100)


class ScreeningRead(BaseModel):
    """A screening round and the case each of its hazards became, in the order found."""

    round_id: str
    grid_code: str
    worker_id: str
    screened_on: date
    cases: list[CaseCreated]


class GridRead(BaseModel):
    grid_code: str
    grid_name: str
    group_code: str
    group_name: str
    village_code: str
    village_name: str
    town_code: str
    town_name: str
    district_code: str
    district_name: str


class GridPage(BaseModel):
    items: list[GridRead]
    total: int
    limit: int
    offset: int


class CategoryRead(BaseModel):
    code: str
    name: str
