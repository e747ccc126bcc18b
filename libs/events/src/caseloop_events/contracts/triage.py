"""Judgment facts, published by triage on ``caseloop.triage.v1``."""

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.envelope import EventPayload, FrozenModel, Producer


class RuleHit(FrozenModel):
    """A judgment rule that fired, and why."""

    rule_id: str
    reason: str


class JudgedBy(StrEnum):
    RULES = "rules"
    OFFICER = "officer"


class CaseJudged(EventPayload):
    """A case was judged (or re-judged): what it is, how risky, who should handle it, how fast."""

    event_type: ClassVar[str] = "case.judged"
    producer: ClassVar[Producer] = Producer.TRIAGE

    category: str
    risk_level: int = Field(ge=1, le=4, description="1 is the most severe")
    campaign_ids: tuple[str, ...] = ()
    handling_level: HandlingLevel
    sla_tier: SlaTierName
    rules_fired: tuple[RuleHit, ...] = ()
    judged_by: JudgedBy
    confidence: float = Field(ge=0, le=1)
    supersedes_event_id: UUID | None = None
    rejudgment_reason: str | None = None


class CaseQueuedForReview(EventPayload):
    """No rule could judge the case with confidence; an officer must."""

    event_type: ClassVar[str] = "case.review_requested"
    producer: ClassVar[Producer] = Producer.TRIAGE

    reason: str
    candidate_categories: tuple[str, ...] = ()
    rules_fired: tuple[RuleHit, ...] = ()
