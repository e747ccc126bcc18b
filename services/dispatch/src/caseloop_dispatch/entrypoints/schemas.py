"""Request and response models of dispatch's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import AssignmentRoute
from caseloop_events.http import RequestBody

UnitId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PersonId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Evidence = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class AcknowledgementCreate(RequestBody):
    """The assigned unit signs for a case (签收)."""

    unit_id: UnitId = Field(description="the acting unit (GET /v1/units)", examples=["U-TRANSPORT"])
    by: PersonId = Field(description="who in the unit signs", examples=["wang.wei"])


class ResultCreate(RequestBody):
    """The assigned unit reports the case handled (办结)."""

    unit_id: UnitId = Field(description="the acting unit (GET /v1/units)", examples=["U-TRANSPORT"])
    by: PersonId = Field(description="who in the unit reports", examples=["wang.wei"])
    summary: str = Field(min_length=1, max_length=5000)
    evidence: list[Evidence] = Field(default_factory=list, max_length=20, description="notes or URLs of photos, files")


class AssignmentRead(BaseModel):
    """Where an assigned case stands with its unit."""

    model_config = ConfigDict(from_attributes=True)

    case_id: UUID
    case_no: str | None
    title: str | None
    unit_id: str
    unit_name: str
    route: AssignmentRoute
    reason: str
    status: CaseStatus
    category: str | None
    town_code: str
    grid_code: str | None
    assigned_at: AwareDatetime
    acknowledged_at: AwareDatetime | None
    result_reported_at: AwareDatetime | None
    updated_at: AwareDatetime


class AssignmentPage(BaseModel):
    items: list[AssignmentRead]
    total: int
    limit: int
    offset: int


class UnitRead(BaseModel):
    """A responsible unit and the responsibility list it answers for."""

    unit_id: str
    name: str
    kind: Literal["department", "town_government"]
    level: Literal["district", "town"]
    town_code: str | None
    categories: list[str]
    area_towns: list[str] | Literal["all"]
