"""The read models supervision answers queries with (a case's timeline is ``caseloop_events.contracts.timeline``'s,
shared with the operators' command line)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import AssignmentRoute
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.intake import RejectionReason
from caseloop_events.contracts.reference import EscalationLadder
from caseloop_events.contracts.supervision import CaseClosed, CaseVerified, ClockKind, ClosureReason, Rating
from caseloop_events.contracts.triage import JudgedBy
from caseloop_supervision.domain.model import (
    CaseClock,
    CaseRef,
    Feedback,
    FeedbackState,
    HolderKind,
    Notice,
    SupervisedCase,
)


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


class ClockView(BaseModel):
    """One of the case's clocks: to acknowledge, or to handle."""

    clock: ClockKind
    sla_tier: str
    sla_profile: str
    unit_id: str | None
    started_at: datetime
    due_at: datetime
    allowed_seconds: float
    paused_seconds: float = Field(description="time paused so far, the current pause included when read")
    paused_since: datetime | None
    counting: bool = Field(description="running now: not paused, not stopped")
    stopped_at: datetime | None
    stop_reason: str | None
    on_time: bool | None = Field(description="once stopped: whether it stopped by its deadline")
    rungs_reached: list[str] = Field(description="the escalation rungs reached since the deadline was last set")
    time_left_seconds: float | None = Field(default=None, description="when read: time until the deadline")
    overdue_seconds: float | None = Field(default=None, description="when read: how long past the deadline")


class NoticeView(BaseModel):
    event_id: UUID
    rung: str
    clock: ClockKind
    level: str
    addressed_to: str
    unit_id: str | None
    due_at: datetime
    reached_at: datetime
    issued_at: datetime


class UrgingView(BaseModel):
    urged_by: str
    note: str
    unit_id: str | None
    at: datetime


class ExtensionView(BaseModel):
    request_event_id: UUID
    unit_id: str
    requested_by: str
    reason: str
    requested_due_at: datetime
    requested_at: datetime
    state: str = Field(description="pending, approved or refused")
    decided_by: str | None
    decision_note: str | None
    granted_due_at: datetime | None
    decided_at: datetime | None


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
    sla_profile: str | None
    deadline: ClockView | None = Field(
        description="the clock that counts now (or is paused): the handling clock, else the acknowledgement clock"
    )
    clocks: list[ClockView]
    notice: NoticeView | None = Field(description="the highest escalation rung a clock still counting has reached")
    notices: list[NoticeView]
    urgings: list[UrgingView]
    extensions: list[ExtensionView]
    stages: StagesView
    event_count: int
    last_event_at: datetime | None

    def at(self, now: datetime) -> CaseView:
        """The view with the time left (or overdue) and the pause so far as they stand at ``now``."""
        return self.model_copy(
            update={
                "deadline": None if self.deadline is None else _clock_at(self.deadline, now),
                "clocks": [_clock_at(c, now) for c in self.clocks],
            }
        )


def _clock_at(clock: ClockView, now: datetime) -> ClockView:
    if clock.stopped_at is not None:
        return clock
    if clock.paused_since is not None:
        paused = clock.paused_seconds + max((now - clock.paused_since).total_seconds(), 0)
        # A paused clock's deadline moves with the pause: what is left stays what was left.
        left = (clock.due_at - clock.paused_since).total_seconds()
        return clock.model_copy(update={"paused_seconds": paused, "time_left_seconds": max(left, 0)})
    left = (clock.due_at - now).total_seconds()
    return clock.model_copy(
        update={"time_left_seconds": max(left, 0), "overdue_seconds": max(-left, 0) if left < 0 else None}
    )


class CasePage(BaseModel):
    items: list[CaseView]
    total: int
    limit: int
    offset: int


def queued_feedback(case: SupervisedCase, events: Iterable[Envelope]) -> list[Feedback]:
    """The feedback owed and not yet attempted: each verification and closure of a case whose source
    system gave a callback URL, while no attempt about it is recorded (each attempt is an event)."""
    if case.callback_url is None:
        return []
    attempted = {f.about_event_id for f in case.feedback}
    return [
        Feedback(about_event_id=e.event_id, about_type=e.type, url=case.callback_url, state=FeedbackState.PENDING)
        for e in events
        if isinstance(e.payload, CaseVerified | CaseClosed) and e.event_id not in attempted
    ]


def case_view(case: SupervisedCase, ladder: EscalationLadder, queued_feedback: Iterable[Feedback] = ()) -> CaseView:
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
        sla_profile=case.sla_profile,
        deadline=_clock_view(_current_clock(case)),
        clocks=[_clock_view(c) for c in case.clocks],
        notice=_notice_view(_highest_notice(case, ladder)),
        notices=[_notice_view(n) for n in case.notices],
        urgings=[UrgingView(urged_by=u.urged_by, note=u.note, unit_id=u.unit_id, at=u.at) for u in case.urgings],
        extensions=[
            ExtensionView(
                request_event_id=e.request_event_id,
                unit_id=e.unit_id,
                requested_by=e.requested_by,
                reason=e.reason,
                requested_due_at=e.requested_due_at,
                requested_at=e.requested_at,
                state="pending" if e.approved is None else "approved" if e.approved else "refused",
                decided_by=e.decided_by,
                decision_note=e.decision_note,
                granted_due_at=e.granted_due_at,
                decided_at=e.decided_at,
            )
            for e in case.extensions
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


def _current_clock(case: SupervisedCase) -> CaseClock | None:
    """The clock that matters now: one that counts (the handling clock first), else a paused one."""
    clocks = [c for c in (case.handling_clock, case.acknowledgement_clock) if c is not None]
    return next((c for c in clocks if c.running), next((c for c in clocks if c.open), None))


def _highest_notice(case: SupervisedCase, ladder: EscalationLadder) -> Notice | None:
    order = [rung.rung for rung in ladder.rungs]
    reached = [
        (order.index(rung) if rung in order else -1, clock.kind, rung)
        for clock in case.clocks
        if clock.open
        for rung in clock.rungs_reached
    ]
    if not reached:
        return None
    _, kind, rung = max(reached, key=lambda item: item[0])
    return next(n for n in reversed(case.notices) if n.rung == rung and n.clock is kind)


def _clock_view(clock: CaseClock | None) -> ClockView | None:
    if clock is None:
        return None
    return ClockView(
        clock=clock.kind,
        sla_tier=clock.sla_tier,
        sla_profile=clock.sla_profile,
        unit_id=clock.unit_id,
        started_at=clock.started_at,
        due_at=clock.due_at,
        allowed_seconds=clock.allowed.total_seconds(),
        paused_seconds=clock.paused_total.total_seconds(),
        paused_since=clock.paused_since,
        counting=clock.running,
        stopped_at=clock.stopped.at if clock.stopped else None,
        stop_reason=clock.stopped.reason if clock.stopped else None,
        on_time=clock.stopped.on_time if clock.stopped else None,
        rungs_reached=list(clock.rungs_reached),
    )


def _notice_view(notice: Notice | None) -> NoticeView | None:
    if notice is None:
        return None
    return NoticeView(
        event_id=notice.event_id,
        rung=notice.rung,
        clock=notice.clock,
        level=notice.level,
        addressed_to=notice.addressed_to,
        unit_id=notice.unit_id,
        due_at=notice.due_at,
        reached_at=notice.reached_at,
        issued_at=notice.issued_at,
    )


def _ref(ref: CaseRef | None) -> CaseRefView | None:
    return None if ref is None else CaseRefView(case_id=ref.case_id, case_no=ref.case_no)
