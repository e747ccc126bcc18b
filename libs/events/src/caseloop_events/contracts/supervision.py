"""Supervision and feedback facts, published by supervision on ``caseloop.supervision.v1``."""

from enum import StrEnum
from typing import ClassVar
from uuid import UUID, uuid5

from pydantic import AwareDatetime, Field

from caseloop_events.contracts.envelope import EventPayload, Producer


class CaseVerified(EventPayload):
    """A supervisor checked the reported result on the ground and found it done (核查)."""

    event_type: ClassVar[str] = "case.verified"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    verified_by: str
    note: str = ""


class CaseVerificationFailed(EventPayload):
    """Verification found the result not done; the case goes back to the unit for rework."""

    event_type: ClassVar[str] = "case.verification_failed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    verified_by: str
    note: str = ""


class Rating(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    UNSATISFIED = "unsatisfied"


class CaseEvaluated(EventPayload):
    """The citizen evaluated the handling (回访评价)."""

    event_type: ClassVar[str] = "case.evaluated"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    rating: Rating
    comment: str = ""


class ClosureReason(StrEnum):
    EVALUATED = "evaluated"
    NO_EVALUATION_IN_TIME = "no_evaluation_in_time"
    WITH_ORIGINAL_CASE = "with_original_case"


class CaseClosed(EventPayload):
    """The case is closed (结案)."""

    event_type: ClassVar[str] = "case.closed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    reason: ClosureReason
    original_case_id: UUID | None = Field(
        default=None, description="for a duplicate or merged case: the case whose closure closed it"
    )


class CaseReopened(EventPayload):
    """An unsatisfied evaluation sent the case back to be handled again (重办)."""

    event_type: ClassVar[str] = "case.reopened"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    reason: str
    reopen_count: int


class FeedbackDelivered(EventPayload):
    """The source system's callback took a feedback message (反馈) about one event of the case."""

    event_type: ClassVar[str] = "case.feedback_delivered"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    about_event_id: UUID
    about_type: str
    url: str
    attempt: int = Field(ge=1)
    status_code: int


class FeedbackFailed(EventPayload):
    """A feedback delivery failed; it is retried at ``next_attempt_at`` unless supervision gave up."""

    event_type: ClassVar[str] = "case.feedback_failed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    about_event_id: UUID
    about_type: str
    url: str
    attempt: int = Field(ge=1)
    error: str
    next_attempt_at: AwareDatetime | None = None
    gave_up: bool = False


# ------------------------------------------------------------------------------- clocks and notices


class ClockKind(StrEnum):
    """The two clocks of a case: to sign for it (签收), then to handle it (办结)."""

    ACKNOWLEDGEMENT = "acknowledgement"
    HANDLING = "handling"


class DeadlineReason(StrEnum):
    """Why a clock's deadline was set."""

    STARTED = "started"
    #: Rework after a failed verification, or handling again after a reopening: a full new clock.
    RESTARTED = "restarted"
    #: The case came back from a return: the deadline moves by the time it was paused.
    RESUMED = "resumed"
    EXTENDED = "extended"
    #: The region switched into or out of emergency mode: the same clock under another profile.
    PROFILE_CHANGED = "profile_changed"
    #: A re-judgment changed the SLA tier: the same clock under another tier.
    REJUDGED = "rejudged"


class DeadlineSet(EventPayload):
    """A case's clock got a deadline: every start, restart, resumption and extension is one of these."""

    event_type: ClassVar[str] = "case.deadline_set"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    clock: ClockKind
    reason: DeadlineReason
    started_at: AwareDatetime = Field(description="when this clock started counting")
    due_at: AwareDatetime
    allowed_seconds: float = Field(
        ge=0,
        description="the escalation ladder's yardstick: the time the tier allows (pauses excluded), "
        "or for an extension the time it grants",
    )
    paused_seconds: float = Field(default=0, ge=0, description="how long the clock has been paused so far")
    sla_tier: str
    sla_profile: str = Field(description="'normal', or the emergency profile of a region in emergency mode")
    unit_id: str | None = None


class ClockPaused(EventPayload):
    """A clock stopped counting for a while: the case was returned (退单) and waits for its next unit."""

    event_type: ClassVar[str] = "case.clock_paused"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    clock: ClockKind
    reason: str
    paused_at: AwareDatetime = Field(description="when the case left the unit's hands (the return)")
    due_at: AwareDatetime = Field(description="the deadline when it paused; resuming moves it by the pause")


class ClockStopped(EventPayload):
    """A clock reached the stage it was about (or the case left the loop): its notices stop."""

    event_type: ClassVar[str] = "case.clock_stopped"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    clock: ClockKind
    reason: str
    stopped_at: AwareDatetime = Field(description="when the stage was reached (the acknowledgement, the result…)")
    due_at: AwareDatetime
    on_time: bool


class SupervisionNoticeIssued(EventPayload):
    """A rung of the escalation ladder was reached: warning 预警, overdue 超期, yellow/red notice 黄牌/红牌."""

    event_type: ClassVar[str] = "case.supervision_notice_issued"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    rung: str
    clock: ClockKind
    due_at: AwareDatetime
    reached_at: AwareDatetime = Field(description="when the clock reached the rung (the notice may go out later)")
    level: str = Field(description="grid, village, town or district: who the notice is addressed to")
    addressed_to: str = Field(description="the code of the grid, village, town or district addressed")
    unit_id: str | None = Field(default=None, description="the unit holding the case")


class CaseUrged(EventPayload):
    """A supervisor urged the unit holding the case (催办)."""

    event_type: ClassVar[str] = "case.urged"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    urged_by: str
    note: str
    unit_id: str | None = None


class ExtensionDecided(EventPayload):
    """A supervisor approved or refused a unit's extension request (延期审批)."""

    event_type: ClassVar[str] = "case.extension_decided"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    request_event_id: UUID
    approved: bool
    decided_by: str
    note: str = ""
    due_at: AwareDatetime | None = Field(default=None, description="the new deadline, when approved")


class SlaProfileChanged(EventPayload):
    """The case's region switched into or out of emergency mode: the case is held to another profile."""

    event_type: ClassVar[str] = "case.sla_profile_changed"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    sla_profile: str
    region_code: str
    switch_event_id: UUID


class RegionMode(StrEnum):
    NORMAL = "normal"
    EMERGENCY = "emergency"


class RegionModeSwitched(EventPayload):
    """A town or the district switched into emergency mode (平战转换, 战时) or back.

    Not about one case: its ``case_id`` is the region's stream id (:func:`region_stream_id`), so
    the switches of one region stay in order on one partition.
    """

    event_type: ClassVar[str] = "region.mode_switched"
    producer: ClassVar[Producer] = Producer.SUPERVISION

    region_code: str
    region_level: str = Field(description="town or district")
    mode: RegionMode
    switched_by: str
    reason: str


def region_stream_id(region_code: str) -> UUID:
    """The stream (message key) of a region's own events."""
    return uuid5(REGION_NAMESPACE, region_code)


REGION_NAMESPACE = UUID("6c1f1f5e-4b7a-5d0c-9a51-3e0b8c2f7d19")

#: supervision's events about clocks, notices and regions: the other services need none of them.
CLOCK_AND_NOTICE_EVENTS: tuple[type[EventPayload], ...] = (
    DeadlineSet,
    ClockPaused,
    ClockStopped,
    SupervisionNoticeIssued,
    CaseUrged,
    SlaProfileChanged,
    RegionModeSwitched,
)
