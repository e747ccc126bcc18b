"""Request and response models of intake's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import AnyHttpUrl, AwareDatetime, BaseModel, Field, StringConstraints, model_validator

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.intake import CaseLocation, Reporter
from caseloop_events.http import RequestBody


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
    occurred_at: AwareDatetime | None = None
    attachments: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)


class CaseCreated(BaseModel):
    case_id: UUID
    case_no: str
    status: CaseStatus


class CaseRead(BaseModel):
    """What intake holds about a case."""

    case_id: UUID
    case_no: str
    status: CaseStatus
    source_system: str
    external_id: str
    title: str
    description: str
    reported_category: str | None
    location: CaseLocation
    reporter: Reporter | None
    reported_occurred_at: AwareDatetime | None
    attachments: list[str]
    accepted_at: AwareDatetime


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
