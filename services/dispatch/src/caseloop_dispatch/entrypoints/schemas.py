"""Request and response models of dispatch's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from caseloop_events.runtime.http import IsoDateTime, RequestBody

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


Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ExtensionCreate(RequestBody):
    """The lead unit asks for more time (延期)."""

    unit_id: UnitId = Field(description="the acting unit (GET /v1/units)", examples=["U-TRANSPORT"])
    by: PersonId = Field(description="who in the unit asks", examples=["wang.wei"])
    reason: Reason
    due_at: IsoDateTime = Field(description="the deadline asked for, with its time zone")


class ReturnCreate(RequestBody):
    """The lead unit returns a case (退单): it is not the unit's to handle."""

    unit_id: UnitId = Field(description="the returning unit, the case's lead", examples=["U-TRANSPORT"])
    by: PersonId = Field(description="who in the unit returns it", examples=["wang.wei"])
    reason: Reason = Field(description="why the case is not the unit's", examples=["不属于本单位职责"])


class TransferCreate(RequestBody):
    """The lead unit hands a case to a named unit (转派)."""

    unit_id: UnitId = Field(description="the transferring unit, the case's lead", examples=["U-TRANSPORT"])
    by: PersonId = Field(description="who in the unit transfers it", examples=["wang.wei"])
    to_unit_id: UnitId = Field(description="the unit that takes the case (GET /v1/units)", examples=["U-HOUSING"])
    reason: Reason = Field(examples=["涉及房屋结构安全，由住建部门处理"])


class JointAssignmentCreate(RequestBody):
    """A dispatcher assigns a lead unit and assisting units together (联合交办)."""

    lead_unit_id: UnitId = Field(description="the unit that leads and answers for the case", examples=["U-FIRE"])
    assisting_unit_ids: list[UnitId] = Field(
        min_length=1, max_length=10, description="units that assist the lead", examples=[["U-HOUSING"]]
    )
    by: PersonId = Field(description="the dispatcher", examples=["dispatcher-1"])
    reason: Reason = Field(examples=["高层消防隐患需消防与住建联合处置"])


class UnitRead(BaseModel):
    """A responsible unit and the responsibility list it answers for."""

    unit_id: str
    name: str
    kind: Literal["department", "town_government"]
    level: Literal["district", "town"]
    town_code: str | None
    categories: list[str]
    area_towns: list[str] | Literal["all"]
