"""Response models of triage's HTTP API (separate from the event contracts)."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, BaseModel

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.triage import JudgedBy


class RuleHitRead(BaseModel):
    rule_id: str
    reason: str


class JudgmentRead(BaseModel):
    """How triage judged a case."""

    case_id: UUID
    category: str
    category_name: str
    risk_level: int
    campaign_ids: list[str]
    handling_level: HandlingLevel
    sla_tier: SlaTierName
    rules_fired: list[RuleHitRead]
    judged_by: JudgedBy
    confidence: float
    judged_at: AwareDatetime
    event_id: UUID
