"""Deadlines that bite (督办): the clocks of a case, the escalation ladder, urging and extensions. Pure.

Two clocks per case (ADR 0007):

- the *acknowledgement* clock runs from each assignment until the unit signs for the case (签收);
- the *handling* clock starts at the acknowledgement, runs only while a unit that signed for the
  case holds it (a return pauses it until the next unit signs), stops at the reported result,
  and starts over on rework and after a reopening. Only an approved extension moves it later.

Clocks are *reconciled*: after every event, :func:`reconcile_clocks` compares the folded case
with what its clocks should be and decides the clock events that close the gap, with the times
of the events that caused them (never the time the consumer got round to them). So the order in
which topics arrive, a restart, or a redelivery change nothing, and every clock change is an event
that a replay folds back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from caseloop_events.contracts.calendar import Duration
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    EventPayload,
    deterministic_id,
    event_answering,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import InvalidInput, RuleViolation
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.contracts.supervision import (
    CaseUrged,
    ClockKind,
    ClockPaused,
    ClockStopped,
    DeadlineReason,
    DeadlineSet,
    ExtensionDecided,
    SlaProfileChanged,
    SupervisionNoticeIssued,
)
from caseloop_supervision.domain.decisions import SUPERVISION
from caseloop_supervision.domain.model import CaseClock, SupervisedCase, evolve

NORMAL_PROFILE = "normal"

#: Statuses in which the case has left the loop: every clock stops.
FINISHED = frozenset({CaseStatus.CLOSED, CaseStatus.REJECTED, CaseStatus.DUPLICATE, CaseStatus.MERGED})


#: Events that are themselves clock decisions: committing them calls for no further reconciling.
CLOCK_DECISIONS = (DeadlineSet, ClockPaused, ClockStopped, SupervisionNoticeIssued)


class CaseNotOpen(RuleViolation):
    """A closed, rejected, duplicate or merged case is not supervised any more."""


class NoExtensionPending(RuleViolation):
    """An extension decision needs a request the supervisor has not decided yet."""


class NoClockToExtend(RuleViolation):
    """Only a handling clock that counts now can be extended."""


@dataclass(frozen=True)
class ClockRules:
    """What the clocks are counted with: the reference data's calendar, tiers, profiles and ladder."""

    reference: ReferenceData

    def profile_name(self, emergency: bool) -> str:
        return self.reference.sla_policy.emergency_profile.profile_id if emergency else NORMAL_PROFILE

    def tier_of(self, case: SupervisedCase) -> str | None:
        if case.sla_tier is None:
            return None
        return self.reference.sla_tier_for(case.sla_tier, case.risk_level, case.category, case.campaign_ids)

    def duration(self, kind: ClockKind, tier: str, profile: str) -> Duration:
        timing = self.reference.sla_timing(tier, emergency=profile != NORMAL_PROFILE)
        return timing.acknowledge if kind is ClockKind.ACKNOWLEDGEMENT else timing.resolve

    def due(self, kind: ClockKind, tier: str, profile: str, started_at: datetime) -> datetime:
        return self.reference.calendar.add(started_at, self.duration(kind, tier, profile))


# ------------------------------------------------------------------------------------- reconcile


def reconcile_clocks(
    case: SupervisedCase, trigger: Envelope, *, emergency: bool, rules: ClockRules, now: datetime
) -> list[Envelope]:
    """The clock events that bring the case's clocks in line with where the case stands.

    ``trigger`` is the event just folded (the cause of tier and profile changes); ``emergency``
    whether the case's town or district is in emergency mode now. Each step is folded before
    the next is looked for, so a stop and a start for a new assignment come out in order.
    """
    decided: list[Envelope] = []
    for _ in range(8):  # at most: stop and start each clock, then re-time both
        step = _next_step(case, trigger, emergency, rules, now)
        if step is None:
            return decided
        decided.append(step)
        case = evolve(case, step)
    raise AssertionError(f"clocks of case {case.case_id} do not settle: {[e.type for e in decided]}")


def after_everything(case: SupervisedCase, now: datetime) -> datetime:
    """``now``, or just after the latest event the case has folded, whichever is later.

    A clock decision comes after everything it was decided on, never tied with it: the causal
    order (time, then event id) then folds the decisions in the order they were taken, on
    replay too. The times that count (a clock's start, pause, stop) are in the payloads.
    """
    if case.last_event_at is None:
        return now
    return max(now, case.last_event_at + timedelta(microseconds=1))


def _next_step(
    case: SupervisedCase, trigger: Envelope, emergency: bool, rules: ClockRules, now: datetime
) -> Envelope | None:
    """The first clock event the case is missing, or None when its clocks are where they should be.

    Rounds follow the case's history, not only its status, so a supervision that reads the case
    late (a lagging consumer, a judgment arriving after the acknowledgement on another topic)
    still starts each clock at the time it should have started and stops it when it should have
    stopped: the on-time record is complete either way.
    """
    now = after_everything(case, now)
    status, status_event = case.status, case.status_event
    if status is None or status_event is None:
        return None
    ack, handling = case.acknowledgement_clock, case.handling_clock
    assignment, cause = case.assignment_event, case.handling_cause
    profile, tier = rules.profile_name(emergency), rules.tier_of(case)

    # The acknowledgement clock: one round per assignment, until the unit signs for the case.
    if ack is not None and ack.open and assignment is not None and ack.round_cause_id != assignment.event_id:
        return _stop(ack, assignment, reason="reassigned", at=assignment.occurred_at, now=now)
    if assignment is not None and tier is not None and (ack is None or ack.round_cause_id != assignment.event_id):
        return _start(case, ClockKind.ACKNOWLEDGEMENT, assignment, tier, profile, rules, now, restart=False)
    if ack is not None and ack.open and status is not CaseStatus.ASSIGNED:
        signed = case.stages.acknowledged_at
        if signed is not None and signed >= ack.started_at:
            return _stop(ack, status_event, reason="acknowledged", at=signed, now=now)
        return _stop(ack, status_event, reason=status.value, at=status_event.occurred_at, now=now)

    # The handling clock: one round per acknowledgement that starts handling, or per rework.
    if cause is not None and tier is not None and (handling is None or handling.round_cause_id != cause.event_id):
        if handling is not None and handling.open:
            return _stop(handling, cause, reason="restarted", at=cause.occurred_at, now=now)
        return _start(case, ClockKind.HANDLING, cause, tier, profile, rules, now, restart=handling is not None)
    if handling is not None and handling.open and status is not CaseStatus.ACKNOWLEDGED:
        reported = case.stages.result_reported_at
        if reported is not None and reported >= handling.started_at:
            return _stop(handling, status_event, reason="result_reported", at=reported, now=now)
        if status in FINISHED:
            return _stop(handling, status_event, reason=status.value, at=status_event.occurred_at, now=now)
        if handling.running:
            reason = "returned" if status is CaseStatus.RETURNED else status.value
            payload = ClockPaused(
                clock=handling.kind, reason=reason, paused_at=status_event.occurred_at, due_at=handling.due_at
            )
            return _caused(status_event, payload, f"clock:{handling.kind}:paused", now)
    if handling is not None and handling.paused_since is not None and status is CaseStatus.ACKNOWLEDGED:
        return _resume(handling, status_event, now)

    # The same clocks under another tier (a re-judgment) or profile (emergency mode).
    if tier is not None:
        for clock in case.clocks:
            if clock.open and (clock.sla_tier != tier or clock.sla_profile != profile):
                return _retime(clock, trigger, tier, profile, rules, now)
    return None


def _caused(cause: Envelope, payload: EventPayload, decision: str, now: datetime) -> Envelope:
    return event_caused_by(cause, payload, actor=SUPERVISION, occurred_at=now, decision=decision)


def _start(
    case: SupervisedCase,
    kind: ClockKind,
    cause: Envelope,
    tier: str,
    profile: str,
    rules: ClockRules,
    now: datetime,
    *,
    restart: bool,
) -> Envelope:
    started_at = cause.occurred_at
    due_at = rules.due(kind, tier, profile, started_at)
    payload = DeadlineSet(
        clock=kind,
        reason=DeadlineReason.RESTARTED if restart else DeadlineReason.STARTED,
        started_at=started_at,
        due_at=due_at,
        allowed_seconds=(due_at - started_at).total_seconds(),
        sla_tier=tier,
        sla_profile=profile,
        unit_id=case.unit_id,
    )
    return _caused(cause, payload, f"clock:{kind}:started", now)


def _stop(clock: CaseClock, cause: Envelope, *, reason: str, at: datetime, now: datetime) -> Envelope:
    # A paused clock cannot run late: it is judged by when it paused.
    judged_at = clock.paused_since or at
    payload = ClockStopped(
        clock=clock.kind, reason=reason, stopped_at=at, due_at=clock.due_at, on_time=judged_at <= clock.due_at
    )
    return _caused(cause, payload, f"clock:{clock.kind}:stopped:{clock.round_cause_id}", now)


def _resume(clock: CaseClock, acknowledgement: Envelope, now: datetime) -> Envelope:
    assert clock.paused_since is not None
    pause = max(acknowledgement.occurred_at - clock.paused_since, timedelta(0))
    payload = _deadline(clock, DeadlineReason.RESUMED, due_at=clock.due_at + pause, paused=clock.paused_total + pause)
    return _caused(acknowledgement, payload, f"clock:{clock.kind}:resumed", now)


def _retime(clock: CaseClock, trigger: Envelope, tier: str, profile: str, rules: ClockRules, now: datetime) -> Envelope:
    """The same clock, counted from its start under another tier or profile (pauses still count).

    An approved extension stands under the normal profile (it is never taken away by a switch to
    emergency mode and back); in emergency mode the emergency profile's deadline applies.
    """
    reason = DeadlineReason.PROFILE_CHANGED if clock.sla_profile != profile else DeadlineReason.REJUDGED
    base_due = rules.due(clock.kind, tier, profile, clock.started_at)
    due_at, allowed = base_due + clock.paused_total, base_due - clock.started_at
    extension = clock.extension
    if extension is not None and profile == NORMAL_PROFILE and extension.due_at > due_at:
        due_at, allowed = extension.due_at, extension.allowed
    payload = replace_deadline(
        _deadline(clock, reason, due_at=due_at, paused=clock.paused_total),
        allowed_seconds=allowed.total_seconds(),
        sla_tier=tier,
        sla_profile=profile,
    )
    return _caused(trigger, payload, f"clock:{clock.kind}:retimed:{tier}:{profile}", now)


def _deadline(clock: CaseClock, reason: DeadlineReason, *, due_at: datetime, paused: timedelta) -> DeadlineSet:
    return DeadlineSet(
        clock=clock.kind,
        reason=reason,
        started_at=clock.started_at,
        due_at=due_at,
        allowed_seconds=clock.allowed.total_seconds(),
        paused_seconds=paused.total_seconds(),
        sla_tier=clock.sla_tier,
        sla_profile=clock.sla_profile,
        unit_id=clock.unit_id,
    )


def replace_deadline(deadline: DeadlineSet, **changes: object) -> DeadlineSet:
    return deadline.model_copy(update=changes)


# ------------------------------------------------------------------------------ escalation ladder


def rung_reached_at(clock: CaseClock, at_share: float) -> datetime:
    """When the clock has used ``at_share`` of its allowed time (pauses push it later, as they do the deadline)."""
    return clock.due_at + clock.allowed * (at_share - 1)


def next_notice_at(case: SupervisedCase, rules: ClockRules) -> datetime | None:
    """When the next rung of a running clock is reached: when the notice timer must look at the case."""
    upcoming = [
        rung_reached_at(clock, rung.at_share)
        for clock in case.clocks
        if clock.running
        for rung in rules.reference.escalation_ladder.rungs
        if rung.rung not in clock.rungs_reached
    ]
    return min(upcoming, default=None)


def due_notices(case: SupervisedCase, rules: ClockRules, now: datetime) -> list[Envelope]:
    """A notice for every rung a running clock has reached and not yet issued in this phase.

    Each is addressed to the level its rung names, at the case's place; its id depends only on
    the clock's phase and the rung, so a timer that runs twice (or after a restart) issues none twice.
    """
    notices: list[Envelope] = []
    now_after = after_everything(case, now)
    for clock in case.clocks:
        if not clock.running:
            continue
        for rung in rules.reference.escalation_ladder.rungs:
            reached_at = rung_reached_at(clock, rung.at_share)
            if rung.rung in clock.rungs_reached or reached_at > now:
                continue
            payload = SupervisionNoticeIssued(
                rung=rung.rung,
                clock=clock.kind,
                due_at=clock.due_at,
                reached_at=reached_at,
                level=rung.level,
                addressed_to=_place_code(case, rung.level),
                unit_id=case.unit_id,
            )
            cause = clock.deadline_event
            notices.append(
                new_event(
                    payload,
                    case_id=case.case_id,
                    actor=SUPERVISION,
                    # One after the other, in the ladder's order.
                    occurred_at=max(now_after, cause.occurred_at) + timedelta(microseconds=len(notices)),
                    correlation_id=cause.correlation_id,
                    causation_id=cause.event_id,
                    event_id=deterministic_id(clock.phase_id, f"notice:{rung.rung}"),
                )
            )
    return notices


def _place_code(case: SupervisedCase, level: str) -> str:
    codes = {
        "grid": case.grid_code,
        "village": case.village_code,
        "town": case.town_code,
        "district": case.district_code,
    }
    return codes.get(level) or "unknown"


# -------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class UrgeCase:
    case_id: UUID
    by: str
    note: str
    now: datetime
    correlation_id: UUID
    #: The authenticated caller who sent the request.
    subject: str | None = None


def urge(case: SupervisedCase, command: UrgeCase) -> list[Envelope]:
    """A supervisor urges the unit holding the case (催办), at any time while the case is open."""
    if case.status in FINISHED or case.status is None or case.status_event is None:
        raise CaseNotOpen(f"case is {case.status}: only an open case can be urged")
    payload = CaseUrged(urged_by=command.by, note=command.note, unit_id=case.unit_id)
    actor = Actor(id=command.by, role=ActorRole.SUPERVISOR, subject=command.subject)
    return [
        event_answering(
            case.status_event, payload, actor=actor, occurred_at=command.now, correlation_id=command.correlation_id
        )
    ]


@dataclass(frozen=True)
class DecideExtension:
    case_id: UUID
    approved: bool
    by: str
    note: str
    #: The deadline granted; None grants what the unit asked for.
    due_at: datetime | None
    now: datetime
    correlation_id: UUID
    #: The authenticated caller who sent the request.
    subject: str | None = None


def decide_extension(case: SupervisedCase, command: DecideExtension) -> list[Envelope]:
    """A supervisor approves or refuses the pending extension request; approval moves the handling deadline."""
    request = case.pending_extension
    if request is None:
        raise NoExtensionPending("the case has no extension request waiting for a decision")
    clock = case.handling_clock
    actor = Actor(id=command.by, role=ActorRole.SUPERVISOR, subject=command.subject)
    if not command.approved:
        refused = ExtensionDecided(
            request_event_id=request.request_event_id, approved=False, decided_by=command.by, note=command.note
        )
        return [_answer_request(case, request.request_event_id, refused, actor, command)]
    if clock is None or not clock.running:
        # A paused clock's deadline moves with the pause; granting a date now would move it twice.
        raise NoClockToExtend("the handling clock is not counting (stopped, or paused by a return)")
    due_at = command.due_at or request.requested_due_at
    if due_at <= clock.due_at:
        raise InvalidInput(
            "due_at", f"the new deadline {due_at.isoformat()} is not after the current one ({clock.due_at.isoformat()})"
        )
    if due_at <= command.now:
        raise InvalidInput("due_at", f"the new deadline {due_at.isoformat()} has already passed")
    approved = ExtensionDecided(
        request_event_id=request.request_event_id,
        approved=True,
        decided_by=command.by,
        note=command.note,
        due_at=due_at,
    )
    decided = _answer_request(case, request.request_event_id, approved, actor, command)
    # The ladder starts over against the time the extension grants: with three more days, the
    # warning comes with a fifth of those three days left, the yellow notice a day and a half late.
    extended = replace_deadline(
        _deadline(clock, DeadlineReason.EXTENDED, due_at=due_at, paused=clock.paused_total),
        allowed_seconds=(due_at - decided.occurred_at).total_seconds(),
    )
    return [decided, _caused(decided, extended, f"clock:{clock.kind}:extended", decided.occurred_at)]


def _answer_request(
    case: SupervisedCase, request_event_id: UUID, payload: ExtensionDecided, actor: Actor, command: DecideExtension
) -> Envelope:
    return new_event(
        payload,
        case_id=case.case_id,
        actor=actor,
        occurred_at=after_everything(case, command.now),
        correlation_id=command.correlation_id,
        causation_id=request_event_id,
    )


def change_profile(
    case: SupervisedCase, switch: Envelope, *, emergency: bool, region_code: str, rules: ClockRules, now: datetime
) -> list[Envelope]:
    """The case's region switched mode: the case is held to the new profile, its clocks re-timed.

    Nothing for a case that has left the loop or is already on that profile.
    """
    profile = rules.profile_name(emergency)
    current = case.sla_profile or NORMAL_PROFILE
    if case.status in FINISHED or case.status is None or current == profile:
        return []
    changed = new_event(
        SlaProfileChanged(sla_profile=profile, region_code=region_code, switch_event_id=switch.event_id),
        case_id=case.case_id,
        actor=switch.actor,
        occurred_at=max(after_everything(case, now), switch.occurred_at),
        correlation_id=switch.correlation_id,
        causation_id=switch.event_id,
        event_id=deterministic_id(switch.event_id, f"profile:{case.case_id}"),
    )
    return [changed, *reconcile_clocks(evolve(case, changed), changed, emergency=emergency, rules=rules, now=now)]
