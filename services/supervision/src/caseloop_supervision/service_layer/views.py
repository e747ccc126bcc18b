"""The read models supervision answers queries with."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.supervision import Rating
from caseloop_events.envelope import Actor, Envelope
from caseloop_supervision.domain.model import HolderKind, SupervisedCase


class HolderView(BaseModel):
    kind: HolderKind
    id: str | None
    name: str | None


class StagesView(BaseModel):
    accepted_at: datetime | None
    judged_at: datetime | None
    assigned_at: datetime | None
    acknowledged_at: datetime | None
    result_reported_at: datetime | None
    verified_at: datetime | None
    evaluated_at: datetime | None
    closed_at: datetime | None


class CaseView(BaseModel):
    """A case as supervision sees it: where it stands and who holds it."""

    case_id: UUID
    case_no: str | None
    status: CaseStatus | None
    title: str | None
    source_system: str | None
    grid_code: str | None
    village_code: str | None
    town_code: str | None
    category: str | None
    risk_level: int | None
    sla_tier: str | None
    campaign_ids: list[str]
    unit_id: str | None
    unit_name: str | None
    holder: HolderView
    rating: Rating | None
    stages: StagesView
    event_count: int
    last_event_at: datetime | None


class CasePage(BaseModel):
    items: list[CaseView]
    total: int
    limit: int
    offset: int


class TimelineEntry(BaseModel):
    event_id: UUID
    type: str
    schema_version: int
    occurred_at: datetime
    producer: str
    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None
    payload: dict[str, Any]


class Timeline(BaseModel):
    """Every event of a case, in causal order."""

    case_id: UUID
    case_no: str | None
    status: CaseStatus | None
    events: list[TimelineEntry]


def case_view(case: SupervisedCase) -> CaseView:
    holder = case.holder
    stages = case.stages
    return CaseView(
        case_id=case.case_id,
        case_no=case.case_no,
        status=case.status,
        title=case.title,
        source_system=case.source_system,
        grid_code=case.grid_code,
        village_code=case.village_code,
        town_code=case.town_code,
        category=case.category,
        risk_level=case.risk_level,
        sla_tier=case.sla_tier,
        campaign_ids=list(case.campaign_ids),
        unit_id=case.unit_id,
        unit_name=case.unit_name,
        holder=HolderView(kind=holder.kind, id=holder.id, name=holder.name),
        rating=case.rating,
        stages=StagesView(
            accepted_at=stages.accepted_at,
            judged_at=stages.judged_at,
            assigned_at=stages.assigned_at,
            acknowledged_at=stages.acknowledged_at,
            result_reported_at=stages.result_reported_at,
            verified_at=stages.verified_at,
            evaluated_at=stages.evaluated_at,
            closed_at=stages.closed_at,
        ),
        event_count=case.event_count,
        last_event_at=case.last_event_at,
    )


def timeline(case: SupervisedCase, events: list[Envelope]) -> Timeline:
    return Timeline(
        case_id=case.case_id,
        case_no=case.case_no,
        status=case.status,
        events=[
            TimelineEntry(
                event_id=e.event_id,
                type=e.type,
                schema_version=e.schema_version,
                occurred_at=e.occurred_at,
                producer=e.producer.value,
                actor=e.actor,
                correlation_id=e.correlation_id,
                causation_id=e.causation_id,
                payload=e.payload.model_dump(mode="json"),
            )
            for e in events
        ],
    )
