"""Request and response models of dispatch's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

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


class UnitRead(BaseModel):
    """A responsible unit and the responsibility list it answers for."""

    unit_id: str
    name: str
    kind: Literal["department", "town_government"]
    level: Literal["district", "town"]
    town_code: str | None
    categories: list[str]
    area_towns: list[str] | Literal["all"]
