"""Request and response models of triage's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.triage import JudgedBy
from caseloop_events.runtime.http import RequestBody

PersonId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class JudgmentCreate(RequestBody):
    """An officer's judgment of a case awaiting review, or a re-judgment (which needs a reason).

    Fields left out are filled by the rules, judging the report as of the officer's category."""

    by: PersonId = Field(description="the triage officer", examples=["zhao.lei"])
    category: Code = Field(description="a category code", examples=["water_supply"])
    risk_level: int | None = Field(default=None, ge=1, le=4, description="1 is the most severe")
    sla_tier: SlaTierName | None = None
    handling_level: HandlingLevel | None = None
    campaign_ids: list[Code] | None = Field(
        default=None, max_length=20, description="the campaigns that track the case; left out, the rules tag them"
    )
    reason: str | None = Field(default=None, min_length=1, max_length=2000, description="required to re-judge")


class RuleHitRead(BaseModel):
    rule_id: str
    reason: str


class JudgmentRead(BaseModel):
    """How triage judged a case (the latest judgment)."""

    case_id: UUID
    category: str
    category_name: str
    risk_level: int
    campaign_ids: list[str]
    handling_level: HandlingLevel
    sla_tier: SlaTierName
    rules_fired: list[RuleHitRead]
    judged_by: JudgedBy
    judged_by_id: str = Field(description="the officer, or triage itself for the rules")
    confidence: float
    judged_at: AwareDatetime
    event_id: UUID
    supersedes_event_id: UUID | None = Field(description="for a re-judgment: the judgment it replaces")
    rejudgment_reason: str | None
