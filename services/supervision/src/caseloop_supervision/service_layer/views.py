"""The read models supervision answers queries with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import AssignmentRoute
from caseloop_events.contracts.intake import RejectionReason
from caseloop_events.contracts.supervision import ClosureReason, Rating
from caseloop_events.contracts.triage import JudgedBy
from caseloop_events.envelope import Actor, Envelope
from caseloop_supervision.domain.model import CaseRef, Feedback, FeedbackState, HolderKind, SupervisedCase


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


class CaseRefView(BaseModel):
    case_id: UUID
    case_no: str


class FeedbackView(BaseModel):
    """Where the feedback to the source system about one event stands."""

    about_event_id: UUID
    about_type: str
    url: str
    state: FeedbackState
    attempts: int
    next_attempt_at: datetime | None
    status_code: int | None
    error: str | None


class CaseView(BaseModel):
    """A case as supervision sees it: where it stands, who holds it, and how it got there."""

    case_id: UUID
    case_no: str | None
    status: CaseStatus | None
    title: str | None
    source_system: str | None
    external_id: str | None
    grid_code: str | None
    village_code: str | None
    town_code: str | None
    rejection_reason: RejectionReason | None
    rejection_note: str | None
    duplicate_of: CaseRefView | None
    similarity: float | None
    merged_into: CaseRefView | None
    category: str | None
    risk_level: int | None
    sla_tier: str | None
    campaign_ids: list[str]
    judged_by: JudgedBy | None
    rejudgments: int
    unit_id: str | None
    unit_name: str | None
    assisting_unit_ids: list[str]
    route: AssignmentRoute | None
    fallback_owner: bool
    returns: int
    transfers: int
    reworks: int
    reopen_count: int
    holder: HolderView
    result_summary: str | None
    rating: Rating | None
    closure_reason: ClosureReason | None
    closed_with_case_id: UUID | None
    feedback: list[FeedbackView]
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


def case_view(case: SupervisedCase, queued_feedback: Iterable[Feedback] = ()) -> CaseView:
    """The case's view; ``queued_feedback`` are deliveries not yet attempted (no event says so yet)."""
    holder = case.holder
    stages = case.stages
    attempted = {f.about_event_id for f in case.feedback}
    feedback = [*case.feedback, *(f for f in queued_feedback if f.about_event_id not in attempted)]
    return CaseView(
        case_id=case.case_id,
        case_no=case.case_no,
        status=case.status,
        title=case.title,
        source_system=case.source_system,
        external_id=case.external_id,
        grid_code=case.grid_code,
        village_code=case.village_code,
        town_code=case.town_code,
        rejection_reason=case.rejection_reason,
        rejection_note=case.rejection_note,
        duplicate_of=_ref(case.duplicate_of),
        similarity=case.similarity,
        merged_into=_ref(case.merged_into),
        category=case.category,
        risk_level=case.risk_level,
        sla_tier=case.sla_tier,
        campaign_ids=list(case.campaign_ids),
        judged_by=case.judged_by,
        rejudgments=case.rejudgments,
        unit_id=case.unit_id,
        unit_name=case.unit_name,
        assisting_unit_ids=list(case.assisting_unit_ids),
        route=case.route,
        fallback_owner=case.fallback_owner,
        returns=case.returns,
        transfers=case.transfers,
        reworks=case.reworks,
        reopen_count=case.reopen_count,
        holder=HolderView(kind=holder.kind, id=holder.id, name=holder.name),
        result_summary=case.result_summary,
        rating=case.rating,
        closure_reason=case.closure_reason,
        closed_with_case_id=case.closed_with_case_id,
        feedback=[
            FeedbackView(
                about_event_id=f.about_event_id,
                about_type=f.about_type,
                url=f.url,
                state=f.state,
                attempts=f.attempts,
                next_attempt_at=f.next_attempt_at,
                status_code=f.status_code,
                error=f.error,
            )
            for f in feedback
        ],
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


def _ref(ref: CaseRef | None) -> CaseRefView | None:
    return None if ref is None else CaseRefView(case_id=ref.case_id, case_no=ref.case_no)


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
