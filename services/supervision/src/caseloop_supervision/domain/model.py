"""A supervised case: folded from every event of every service, in causal order. Pure.

The status transitions are those of ADR 0006; dispatch folds the same events the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
    CaseTransferred,
    ExtensionRequested,
)
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.folding import StreamModel, with_changes
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CaseReport,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
)
from caseloop_events.contracts.lifecycle import CaseProgress, progress
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseUrged,
    CaseVerificationFailed,
    CaseVerified,
    ClockKind,
    ClockPaused,
    ClockStopped,
    ClosureReason,
    DeadlineReason,
    DeadlineSet,
    ExtensionDecided,
    FeedbackDelivered,
    FeedbackFailed,
    Rating,
    SlaProfileChanged,
    SupervisionNoticeIssued,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy


class HolderKind(StrEnum):
    """Who must act next on the case."""

    SERVICE = "service"
    UNIT = "unit"
    CITIZEN = "citizen"
    #: A duplicate or merged case: the case it follows holds it, and closing that one closes it.
    CASE = "case"
    NOBODY = "nobody"


@dataclass(frozen=True)
class Holder:
    kind: HolderKind
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Stages:
    """When the case reached each stage of the loop (the latest time, after rework)."""

    accepted_at: datetime | None = None
    judged_at: datetime | None = None
    assigned_at: datetime | None = None
    acknowledged_at: datetime | None = None
    result_reported_at: datetime | None = None
    verified_at: datetime | None = None
    evaluated_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class CaseRef:
    case_id: uuid.UUID
    case_no: str


class LinkKind(StrEnum):
    DUPLICATE = "duplicate"
    MERGED = "merged"


@dataclass(frozen=True)
class Link:
    """The case a duplicate or merged case follows."""

    original: CaseRef
    kind: LinkKind


class FeedbackState(StrEnum):
    """Where the feedback about one event stands with the source system."""

    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    GAVE_UP = "gave_up"


@dataclass(frozen=True)
class Feedback:
    """The feedback about one event of the case, as its attempts left it."""

    about_event_id: uuid.UUID
    about_type: str
    url: str
    state: FeedbackState
    attempts: int = 0
    next_attempt_at: datetime | None = None
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClockStop:
    at: datetime
    reason: str
    on_time: bool


@dataclass(frozen=True)
class Extended:
    due_at: datetime
    allowed: timedelta


@dataclass(frozen=True)
class CaseClock:
    """One of a case's clocks as its ``case.deadline_set`` / paused / stopped events left it.

    A *round* is one clock from its start (or restart) to its stop; a *phase* is the part of a
    round under one ladder: an extension opens a new phase, so the ladder starts over against
    the new deadline, while a pause, a profile change or a re-judgment keep the phase.
    """

    kind: ClockKind
    #: The event that started this round: an assignment, an acknowledgement or a failed verification.
    round_cause_id: uuid.UUID
    phase_id: uuid.UUID
    started_at: datetime
    due_at: datetime
    allowed: timedelta
    paused_total: timedelta
    sla_tier: str
    sla_profile: str
    unit_id: str | None
    #: The latest ``case.deadline_set``: what the notices of this clock answer.
    deadline_event: Envelope
    paused_since: datetime | None = None
    stopped: ClockStop | None = None
    #: The rungs reached in this phase.
    rungs_reached: tuple[str, ...] = ()
    #: The deadline an approved extension granted in this round (moved by later pauses) and its
    #: yardstick: a re-timing under the normal profile never takes it away.
    extension: Extended | None = None

    @property
    def running(self) -> bool:
        return self.stopped is None and self.paused_since is None

    @property
    def open(self) -> bool:
        """Running or paused: the clock still counts (or will again)."""
        return self.stopped is None


@dataclass(frozen=True)
class Notice:
    """A supervision notice issued for the case."""

    event_id: uuid.UUID
    rung: str
    clock: ClockKind
    level: str
    addressed_to: str
    unit_id: str | None
    due_at: datetime
    reached_at: datetime
    issued_at: datetime


@dataclass(frozen=True)
class Urging:
    urged_by: str
    note: str
    unit_id: str | None
    at: datetime


@dataclass(frozen=True)
class Extension:
    """A unit's extension request and, once made, the supervisor's decision."""

    request_event_id: uuid.UUID
    unit_id: str
    requested_by: str
    reason: str
    requested_due_at: datetime
    requested_at: datetime
    approved: bool | None = None
    decided_by: str | None = None
    decision_note: str | None = None
    granted_due_at: datetime | None = None
    decided_at: datetime | None = None


#: The statuses of a case that follows another one instead of going round the loop itself.
FOLLOWING = frozenset({CaseStatus.DUPLICATE, CaseStatus.MERGED})


@dataclass(frozen=True)
class SupervisedCase:
    case_id: uuid.UUID
    status: CaseStatus | None = None
    case_no: str | None = None
    title: str | None = None
    source_system: str | None = None
    external_id: str | None = None
    callback_url: str | None = None
    grid_code: str | None = None
    village_code: str | None = None
    town_code: str | None = None
    district_code: str | None = None
    rejection_reason: RejectionReason | None = None
    rejection_note: str | None = None
    duplicate_of: CaseRef | None = None
    similarity: float | None = None
    merged_into: CaseRef | None = None
    #: Whether the case ever followed another (a link or a merge, undone since or not): only then
    #: can the case list hold a link of it to remove.
    was_linked: bool = False
    #: What a merge interrupted: an unmerge puts the case back there.
    status_before_merge: CaseStatus | None = None
    category: str | None = None
    risk_level: int | None = None
    sla_tier: str | None = None
    campaign_ids: tuple[str, ...] = ()
    judged_by: JudgedBy | None = None
    judgments: int = 0
    unit_id: str | None = None
    unit_name: str | None = None
    assisting_unit_ids: tuple[str, ...] = ()
    route: AssignmentRoute | None = None
    fallback_owner: bool = False
    returns: int = 0
    transfers: int = 0
    reworks: int = 0
    reopen_count: int = 0
    result_summary: str | None = None
    rating: Rating | None = None
    #: The latest ``case.verified``: what an auto-closure for want of an evaluation is caused by.
    verification: Envelope | None = None
    closure_reason: ClosureReason | None = None
    closed_with_case_id: uuid.UUID | None = None
    feedback: tuple[Feedback, ...] = ()
    #: The latest assignment: an acknowledgement clock runs for each one.
    assignment_event: Envelope | None = None
    #: What started the current handling round: the acknowledgement after no (or a stopped)
    #: handling clock, or a failed verification (rework restarts the clock).
    handling_cause: Envelope | None = None
    #: Between the event that started handling and the result reported: a return does not end it.
    handling_round_open: bool = False
    acknowledgement_clock: CaseClock | None = None
    handling_clock: CaseClock | None = None
    sla_profile: str | None = None
    notices: tuple[Notice, ...] = ()
    urgings: tuple[Urging, ...] = ()
    extensions: tuple[Extension, ...] = ()
    stages: Stages = Stages()
    #: The event that put the case in its current status: the cause of the next command.
    status_event: Envelope | None = None
    event_count: int = 0
    last_event_at: datetime | None = None

    @property
    def known(self) -> bool:
        return self.event_count > 0

    @property
    def rejudgments(self) -> int:
        return max(self.judgments - 1, 0)

    @property
    def follows(self) -> Link | None:
        """The case this one follows while it is a duplicate or merged (kept once closed with it)."""
        if self.merged_into is not None:
            return Link(self.merged_into, LinkKind.MERGED)
        if self.duplicate_of is not None:
            return Link(self.duplicate_of, LinkKind.DUPLICATE)
        return None

    def clock(self, kind: ClockKind) -> CaseClock | None:
        return self.acknowledgement_clock if kind is ClockKind.ACKNOWLEDGEMENT else self.handling_clock

    @property
    def clocks(self) -> tuple[CaseClock, ...]:
        return tuple(c for c in (self.acknowledgement_clock, self.handling_clock) if c is not None)

    @property
    def pending_extension(self) -> Extension | None:
        """The unit's extension request the supervisor has not decided yet."""
        latest = self.extensions[-1] if self.extensions else None
        return latest if latest is not None and latest.approved is None else None

    @property
    def awaiting_evaluation_since(self) -> datetime | None:
        """When the citizen's evaluation became due: verified and not evaluated since."""
        if self.status is CaseStatus.VERIFIED and self.rating is None and self.verification is not None:
            return self.verification.occurred_at
        return None

    @property
    def holder(self) -> Holder:
        match self.status:
            case CaseStatus.ACCEPTED:
                return Holder(HolderKind.SERVICE, "triage", "judgment")
            case CaseStatus.PENDING_REVIEW:
                return Holder(HolderKind.SERVICE, "triage", "review")
            case CaseStatus.TRIAGED:
                return Holder(HolderKind.SERVICE, "dispatch", "assignment")
            case CaseStatus.RETURNED:
                return Holder(HolderKind.SERVICE, "dispatch", "re-routing")
            case CaseStatus.REOPENED:
                return Holder(HolderKind.SERVICE, "dispatch", "reassignment")
            case CaseStatus.ASSIGNED | CaseStatus.ACKNOWLEDGED:
                return Holder(HolderKind.UNIT, self.unit_id, self.unit_name)
            case CaseStatus.RESULT_REPORTED:
                return Holder(HolderKind.SERVICE, "supervision", "verification")
            case CaseStatus.VERIFIED if self.rating is None:
                return Holder(HolderKind.CITIZEN, None, "evaluation")
            case CaseStatus.VERIFIED:
                # Rated: the closure or the reopening is decided with the evaluation, so this is fleeting.
                return Holder(HolderKind.SERVICE, "supervision", "closure")
            case CaseStatus.DUPLICATE | CaseStatus.MERGED if self.follows is not None:
                original = self.follows.original
                return Holder(HolderKind.CASE, str(original.case_id), original.case_no)
            case _:
                return Holder(HolderKind.NOBODY)


def evolve(case: SupervisedCase, event: Envelope) -> SupervisedCase:
    last = event.occurred_at if case.last_event_at is None else max(case.last_event_at, event.occurred_at)
    counted = with_changes(case, event_count=case.event_count + 1, last_event_at=last)
    detailed = _with_details(counted, event)
    moved = progress(CaseProgress(case.status, case.status_before_merge), event.payload)
    if moved is None:
        return detailed
    return with_changes(
        detailed, status=moved.status, status_before_merge=moved.status_before_merge, status_event=event
    )


def _with_details(case: SupervisedCase, event: Envelope) -> SupervisedCase:
    """What supervision keeps of an event besides the status (which ``progress`` gives)."""
    at = event.occurred_at
    match event.payload:
        case CaseAccepted() as accepted:
            # After the unmerge of a duplicate the case is already accepted again: it stays so.
            return with_changes(_with_report(case, accepted), stages=with_changes(case.stages, accepted_at=at))
        case CaseRejected() as rejected:
            return with_changes(
                case,
                case_no=rejected.case_no,
                title=rejected.title,
                source_system=rejected.source_system,
                external_id=rejected.external_id,
                rejection_reason=rejected.reason_code,
                rejection_note=rejected.note,
            )
        case CaseLinkedAsDuplicate() as linked:
            return with_changes(
                _with_report(case, linked),
                duplicate_of=CaseRef(linked.original_case_id, linked.original_case_no),
                similarity=linked.similarity,
                was_linked=True,
            )
        case CasesMerged() as merged:
            return with_changes(case, merged_into=CaseRef(merged.into_case_id, merged.into_case_no), was_linked=True)
        case CaseUnmerged():
            if case.status is CaseStatus.MERGED:
                # The merge stopped the clocks: taking up again where it stood starts new rounds.
                restored = case.status_before_merge
                resumed = with_changes(case, merged_into=None)
                if restored is CaseStatus.ASSIGNED:
                    return with_changes(resumed, assignment_event=event)
                if restored is CaseStatus.ACKNOWLEDGED:
                    return with_changes(resumed, handling_cause=event, handling_round_open=True)
                return resumed
            if case.status is CaseStatus.DUPLICATE:
                return with_changes(case, duplicate_of=None, similarity=None)
            return case
        case CaseJudged() as judged:
            # A re-judgment changes what the case is, not where it stands (``progress``).
            return with_changes(
                case,
                category=judged.category,
                risk_level=judged.risk_level,
                sla_tier=judged.sla_tier.value,
                campaign_ids=judged.campaign_ids,
                judged_by=judged.judged_by,
                judgments=case.judgments + 1,
                stages=with_changes(case.stages, judged_at=at),
            )
        case CaseAssigned() as assigned:
            return with_changes(
                case,
                assignment_event=event,
                unit_id=assigned.unit_id,
                unit_name=assigned.unit_name,
                assisting_unit_ids=assigned.assisting_unit_ids,
                route=assigned.route,
                fallback_owner=assigned.fallback_owner,
                stages=with_changes(case.stages, assigned_at=at),
            )
        case CaseReturned():
            return with_changes(case, returns=case.returns + 1)
        case CaseTransferred():
            # The case.assigned that follows in the same transaction moves the case to the new unit.
            return with_changes(case, transfers=case.transfers + 1)
        case CaseAcknowledged():
            # Signing for a case starts a handling round, unless one is under way: after a return
            # the round goes on with the next unit (its clock paused, then resumed).
            starts_round = not case.handling_round_open
            return with_changes(
                case,
                handling_cause=event if starts_round else case.handling_cause,
                handling_round_open=True,
                stages=with_changes(case.stages, acknowledged_at=at),
            )
        case CaseResultReported() as reported:
            return with_changes(
                case,
                result_summary=reported.summary,
                handling_round_open=False,
                stages=with_changes(case.stages, result_reported_at=at),
            )
        case CaseVerified():
            # A reopened case is verified again and must be evaluable again: the old rating goes.
            return with_changes(case, rating=None, verification=event, stages=with_changes(case.stages, verified_at=at))
        case CaseVerificationFailed():
            # Rework: the same unit handles the case again and reports a new result, on a new clock.
            return with_changes(case, reworks=case.reworks + 1, handling_cause=event, handling_round_open=True)
        case CaseEvaluated() as evaluated:
            return with_changes(
                case, rating=evaluated.rating, status_event=event, stages=with_changes(case.stages, evaluated_at=at)
            )
        case CaseReopened() as reopened:
            return with_changes(case, reopen_count=reopened.reopen_count)
        case CaseClosed() as closed:
            return with_changes(
                case,
                closure_reason=closed.reason,
                closed_with_case_id=closed.original_case_id,
                stages=with_changes(case.stages, closed_at=at),
            )
        case DeadlineSet() | ClockPaused() | ClockStopped() | SupervisionNoticeIssued():
            return _with_clock_event(case, event)
        case CaseUrged() as urged:
            return with_changes(case, urgings=(*case.urgings, Urging(urged.urged_by, urged.note, urged.unit_id, at)))
        case ExtensionRequested() as requested:
            extension = Extension(
                request_event_id=event.event_id,
                unit_id=requested.unit_id,
                requested_by=requested.requested_by,
                reason=requested.reason,
                requested_due_at=requested.requested_due_at,
                requested_at=at,
            )
            return with_changes(case, extensions=(*case.extensions, extension))
        case ExtensionDecided() as decided:
            return with_changes(
                case,
                extensions=tuple(
                    with_changes(
                        e,
                        approved=decided.approved,
                        decided_by=decided.decided_by,
                        decision_note=decided.note,
                        granted_due_at=decided.due_at,
                        decided_at=at,
                    )
                    if e.request_event_id == decided.request_event_id
                    else e
                    for e in case.extensions
                ),
            )
        case SlaProfileChanged() as changed:
            return with_changes(case, sla_profile=changed.sla_profile)
        case FeedbackDelivered() as delivered:
            return _with_feedback(
                case,
                Feedback(
                    about_event_id=delivered.about_event_id,
                    about_type=delivered.about_type,
                    url=delivered.url,
                    state=FeedbackState.DELIVERED,
                    attempts=delivered.attempt,
                    status_code=delivered.status_code,
                ),
            )
        case FeedbackFailed() as failed:
            return _with_feedback(
                case,
                Feedback(
                    about_event_id=failed.about_event_id,
                    about_type=failed.about_type,
                    url=failed.url,
                    state=FeedbackState.GAVE_UP if failed.gave_up else FeedbackState.RETRYING,
                    attempts=failed.attempt,
                    next_attempt_at=failed.next_attempt_at,
                    error=failed.error,
                ),
            )
        case _:
            return case


def _with_report(case: SupervisedCase, report: CaseReport) -> SupervisedCase:
    return with_changes(
        case,
        case_no=report.case_no,
        title=report.title,
        source_system=report.source_system,
        external_id=report.external_id,
        callback_url=report.callback_url,
        grid_code=report.location.grid_code,
        village_code=report.location.village_code,
        town_code=report.location.town_code,
        district_code=report.location.district_code,
    )


def _with_clock_event(case: SupervisedCase, event: Envelope) -> SupervisedCase:
    """A clock's deadline, pause, stop or notice, folded into that clock."""
    payload = event.payload
    assert isinstance(payload, DeadlineSet | ClockPaused | ClockStopped | SupervisionNoticeIssued)
    clock = case.clock(payload.clock)
    at = event.occurred_at
    match payload:
        case DeadlineSet() as deadline if deadline.reason in (DeadlineReason.STARTED, DeadlineReason.RESTARTED):
            assert event.causation_id is not None
            clock = CaseClock(
                kind=deadline.clock,
                round_cause_id=event.causation_id,
                phase_id=event.event_id,
                started_at=deadline.started_at,
                due_at=deadline.due_at,
                allowed=timedelta(seconds=deadline.allowed_seconds),
                paused_total=timedelta(seconds=deadline.paused_seconds),
                sla_tier=deadline.sla_tier,
                sla_profile=deadline.sla_profile,
                unit_id=deadline.unit_id,
                deadline_event=event,
            )
        case DeadlineSet() as deadline if clock is not None:
            extension = clock.extension
            if deadline.reason is DeadlineReason.EXTENDED:
                extension = Extended(deadline.due_at, timedelta(seconds=deadline.allowed_seconds))
            elif extension is not None and deadline.reason is DeadlineReason.RESUMED:
                pause = timedelta(seconds=deadline.paused_seconds) - clock.paused_total
                extension = with_changes(extension, due_at=extension.due_at + pause)
            clock = with_changes(
                clock,
                extension=extension,
                due_at=deadline.due_at,
                allowed=timedelta(seconds=deadline.allowed_seconds),
                paused_total=timedelta(seconds=deadline.paused_seconds),
                sla_tier=deadline.sla_tier,
                sla_profile=deadline.sla_profile,
                deadline_event=event,
                paused_since=None if deadline.reason is DeadlineReason.RESUMED else clock.paused_since,
                # A new deadline granted by an extension: the ladder starts over against it.
                phase_id=event.event_id if deadline.reason is DeadlineReason.EXTENDED else clock.phase_id,
                rungs_reached=() if deadline.reason is DeadlineReason.EXTENDED else clock.rungs_reached,
            )
        case ClockPaused() as paused if clock is not None:
            clock = with_changes(clock, paused_since=paused.paused_at)
        case ClockStopped() as stopped if clock is not None:
            stop = ClockStop(at=stopped.stopped_at, reason=stopped.reason, on_time=stopped.on_time)
            clock = with_changes(clock, stopped=stop)
        case SupervisionNoticeIssued() as notice:
            if clock is not None:
                clock = with_changes(clock, rungs_reached=(*clock.rungs_reached, notice.rung))
            issued = Notice(
                event_id=event.event_id,
                rung=notice.rung,
                clock=notice.clock,
                level=notice.level,
                addressed_to=notice.addressed_to,
                unit_id=notice.unit_id,
                due_at=notice.due_at,
                reached_at=notice.reached_at,
                issued_at=at,
            )
            case = with_changes(case, notices=(*case.notices, issued))
        case _:
            return case
    if isinstance(payload, DeadlineSet):
        case = with_changes(case, sla_profile=payload.sla_profile)
    if payload.clock is ClockKind.ACKNOWLEDGEMENT:
        return with_changes(case, acknowledgement_clock=clock)
    return with_changes(case, handling_clock=clock)


def _with_feedback(case: SupervisedCase, feedback: Feedback) -> SupervisedCase:
    """The latest attempt about an event tells where its feedback stands."""
    earlier = next((f for f in case.feedback if f.about_event_id == feedback.about_event_id), None)
    if earlier is None:
        return with_changes(case, feedback=(*case.feedback, feedback))
    if earlier.attempts > feedback.attempts:
        return case
    return with_changes(case, feedback=tuple(feedback if f is earlier else f for f in case.feedback))


#: How supervision folds a case: what the runtime folds each stream with.
CASES = StreamModel(SupervisedCase, evolve)


def fold(case_id: uuid.UUID, events: Iterable[Envelope]) -> SupervisedCase:
    """The case as its events, in causal order, make it."""
    return CASES.fold(case_id, events)
