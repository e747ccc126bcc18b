"""The clocks of a case, the escalation ladder, extensions, urging and emergency mode (pure).

A ``Story`` plays a case the way supervision lives it: each event is folded, then the clock
decisions it calls for are taken and folded too; ``tick`` is the notice timer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
    ExtensionRequested,
)
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, new_event
from caseloop_events.contracts.errors import InvalidInput
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation, CasesMerged, CaseUnmerged
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
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
    Rating,
    RegionMode,
    RegionModeSwitched,
    SlaProfileChanged,
    SupervisionNoticeIssued,
    region_stream_id,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_supervision.adapters.views import case_view
from caseloop_supervision.domain.clocks import (
    CaseNotOpen,
    ClockRules,
    DecideExtension,
    NoClockToExtend,
    NoExtensionPending,
    UrgeCase,
    change_profile,
    decide_extension,
    due_notices,
    next_notice_at,
    reconcile_clocks,
    urge,
)
from caseloop_supervision.domain.model import SupervisedCase, evolve, fold

RULES = ClockRules(load_reference_data(default_reference_dir()))
#: Monday 23 November 2026, 09:00 region time.
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)


ACCEPTED = CaseAccepted(
    case_no="CL1", source_system="s", external_id="e", title="t", description="d", location=LOCATION, accepted_at=T0
)


def judged(tier: SlaTierName = SlaTierName.GENERAL, risk: int = 3, category: str = "sanitation") -> CaseJudged:
    return CaseJudged(
        category=category,
        risk_level=risk,
        handling_level=HandlingLevel.TOWN,
        sla_tier=tier,
        judged_by=JudgedBy.RULES,
        confidence=0.9,
    )


def assigned(unit_id: str = "U-1") -> CaseAssigned:
    return CaseAssigned(
        unit_id=unit_id, unit_name=unit_id, town_code="330110001", route=AssignmentRoute.RESPONSIBILITY_LIST, reason="r"
    )


def acknowledged(unit_id: str = "U-1") -> CaseAcknowledged:
    return CaseAcknowledged(unit_id=unit_id, acknowledged_by="w")


def reported(unit_id: str = "U-1") -> CaseResultReported:
    return CaseResultReported(unit_id=unit_id, reported_by="w", summary="done")


@dataclass
class Story:
    """One case, lived as supervision lives it: every event folded, then its clock decisions."""

    emergency: bool = False
    case_id: uuid.UUID = field(default_factory=uuid.uuid4)
    log: list[Envelope] = field(default_factory=list)
    case: SupervisedCase = field(init=False)

    def __post_init__(self) -> None:
        self.case = SupervisedCase(self.case_id)

    def happen(self, payload: EventPayload, at: datetime) -> Envelope:
        event = new_event(
            payload,
            case_id=self.case_id,
            actor=Actor(id="test", role=ActorRole.SYSTEM),
            occurred_at=at,
            correlation_id=uuid.uuid4(),
            causation_id=self.log[-1].event_id if self.log else None,
        )
        self.take([event], now=at)
        self.take(reconcile_clocks(self.case, event, emergency=self.emergency, rules=RULES, now=at), now=at)
        return event

    def take(self, events: list[Envelope], now: datetime) -> None:
        for event in events:
            self.log.append(event)
            self.case = evolve(self.case, event)

    def decided(self, events: list[Envelope], now: datetime) -> list[Envelope]:
        """Events a command decided, and the clock decisions that follow them (as commit_new_events does)."""
        self.take(events, now)
        self.take(reconcile_clocks(self.case, events[-1], emergency=self.emergency, rules=RULES, now=now), now)
        return events

    def tick(self, now: datetime) -> list[Envelope]:
        notices = due_notices(self.case, RULES, now)
        self.take(notices, now)
        return notices

    def clock_events(self) -> list[EventPayload]:
        return [e.payload for e in self.log if isinstance(e.payload, DeadlineSet | ClockPaused | ClockStopped)]

    def acknowledged_case(self, tier: SlaTierName = SlaTierName.GENERAL) -> None:
        self.happen(
            ACCEPTED,
            T0,
        )
        self.happen(judged(tier), T0 + timedelta(minutes=1))
        self.happen(assigned(), T0 + timedelta(minutes=2))
        self.happen(acknowledged(), T0 + timedelta(hours=1))


def test_the_acknowledgement_clock_runs_from_the_assignment_and_stops_on_time_at_the_acknowledgement() -> None:
    story = Story()
    story.happen(
        ACCEPTED,
        T0,
    )
    story.happen(judged(), T0)
    assignment = story.happen(assigned(), T0 + timedelta(minutes=2))
    ack = story.case.acknowledgement_clock
    assert ack is not None
    assert ack.running
    assert (ack.started_at, ack.due_at) == (assignment.occurred_at, assignment.occurred_at + timedelta(hours=24))
    assert ack.round_cause_id == assignment.event_id
    story.happen(acknowledged(), T0 + timedelta(hours=3))
    stopped = story.case.acknowledgement_clock
    assert stopped is not None
    assert stopped.stopped is not None
    assert (stopped.stopped.reason, stopped.stopped.on_time) == ("acknowledged", True)


def test_an_acknowledgement_after_its_deadline_stops_the_clock_late_and_the_overdue_rungs_were_issued() -> None:
    story = Story()
    story.happen(
        ACCEPTED,
        T0,
    )
    story.happen(judged(), T0)
    story.happen(assigned(), T0)
    notices = story.tick(T0 + timedelta(hours=25))
    assert [n.payload.rung for n in notices] == ["warning", "overdue"]  # type: ignore[attr-defined]
    story.happen(acknowledged(), T0 + timedelta(hours=26))
    ack = story.case.acknowledgement_clock
    assert ack is not None
    assert ack.stopped is not None
    assert ack.stopped.on_time is False


def test_the_handling_clock_starts_at_the_acknowledgement_with_the_tier_of_the_judgment() -> None:
    story = Story()
    story.acknowledged_case()
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.running
    assert handling.started_at == T0 + timedelta(hours=1)
    assert handling.due_at == T0 + timedelta(hours=1, days=7), "general: 7 days of elapsed time"
    assert (handling.sla_tier, handling.sla_profile) == ("general", "normal")


def test_a_complex_case_is_due_at_midnight_after_the_fifteenth_working_day() -> None:
    story = Story()
    story.acknowledged_case(SlaTierName.COMPLEX)
    handling = story.case.handling_clock
    assert handling is not None
    # From Monday 23 Nov: 24-27 Nov, 30 Nov-4 Dec, 7-11 Dec, then Mon 14 Dec is the 15th.
    assert handling.due_at == datetime(2026, 12, 14, 16, 0, tzinfo=UTC)


def test_a_return_pauses_the_handling_clock_and_the_next_acknowledgement_resumes_it_moved_by_the_pause() -> None:
    story = Story()
    story.acknowledged_case()
    due_before = story.case.handling_clock.due_at  # type: ignore[union-attr]
    story.happen(CaseReturned(unit_id="U-1", returned_by="w", reason="not ours"), T0 + timedelta(hours=2))
    paused = story.case.handling_clock
    assert paused is not None
    assert paused.paused_since == T0 + timedelta(hours=2)
    assert not paused.running
    story.happen(assigned("U-2"), T0 + timedelta(hours=2))
    # Six days on the handling clock would have reached its warning; paused, it reaches nothing
    # (the new unit's acknowledgement clock, which does count, is late by now).
    notices = story.tick(T0 + timedelta(days=6))
    assert notices
    assert {n.payload.clock for n in notices} == {ClockKind.ACKNOWLEDGEMENT}  # type: ignore[attr-defined]
    story.happen(acknowledged("U-2"), T0 + timedelta(days=6, hours=1))
    resumed = story.case.handling_clock
    assert resumed is not None
    assert resumed.running
    pause = timedelta(days=6, hours=1) - timedelta(hours=2)
    assert resumed.due_at == due_before + pause
    assert resumed.paused_total == pause
    assert resumed.round_cause_id == paused.round_cause_id, "the same round goes on"
    reasons = [p.reason for p in story.clock_events() if isinstance(p, DeadlineSet)]
    assert reasons.count(DeadlineReason.RESUMED) == 1


def test_the_reported_result_stops_the_handling_clock_and_its_notices() -> None:
    story = Story()
    story.acknowledged_case()
    story.happen(reported(), T0 + timedelta(days=2))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.stopped is not None
    assert (handling.stopped.reason, handling.stopped.on_time) == ("result_reported", True)
    assert story.tick(T0 + timedelta(days=60)) == []
    assert next_notice_at(story.case, RULES) is None


def test_a_result_reported_late_is_not_on_time() -> None:
    story = Story()
    story.acknowledged_case()
    story.happen(reported(), T0 + timedelta(days=9))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.stopped is not None
    assert handling.stopped.on_time is False


def test_rework_after_a_failed_verification_restarts_the_handling_clock_in_full() -> None:
    story = Story()
    story.acknowledged_case()
    first_round = story.case.handling_clock.round_cause_id  # type: ignore[union-attr]
    story.happen(reported(), T0 + timedelta(days=2))
    failed = story.happen(CaseVerificationFailed(verified_by="s", note="not done"), T0 + timedelta(days=3))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.running
    assert handling.round_cause_id == failed.event_id != first_round
    assert (handling.started_at, handling.due_at) == (failed.occurred_at, failed.occurred_at + timedelta(days=7))
    restarted = [p for p in story.clock_events() if isinstance(p, DeadlineSet)][-1]
    assert restarted.reason is DeadlineReason.RESTARTED


def test_after_a_reopening_the_next_acknowledgement_restarts_the_handling_clock() -> None:
    story = Story()
    story.acknowledged_case()
    story.happen(reported(), T0 + timedelta(days=1))
    story.happen(CaseVerified(verified_by="s"), T0 + timedelta(days=1, hours=1))
    story.happen(CaseEvaluated(rating=Rating.UNSATISFIED), T0 + timedelta(days=1, hours=2))
    story.happen(CaseReopened(reason="unsatisfied", reopen_count=1), T0 + timedelta(days=1, hours=2))
    story.happen(assigned(), T0 + timedelta(days=1, hours=2))
    assert story.case.acknowledgement_clock is not None
    assert story.case.acknowledgement_clock.running
    again = story.happen(acknowledged(), T0 + timedelta(days=1, hours=3))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.running
    assert handling.round_cause_id == again.event_id
    assert handling.due_at == again.occurred_at + timedelta(days=7)


def test_each_rung_is_reached_at_its_share_of_the_allowed_time_and_addressed_one_level_up() -> None:
    story = Story()
    story.acknowledged_case(SlaTierName.URGENT)  # 24 hours from T0 + 1h
    start = T0 + timedelta(hours=1)
    expected = [
        ("warning", start + timedelta(hours=24 * 0.8), "grid", LOCATION.grid_code),
        ("overdue", start + timedelta(hours=24), "village", LOCATION.village_code),
        ("yellow", start + timedelta(hours=36), "town", LOCATION.town_code),
        ("red", start + timedelta(hours=48), "district", LOCATION.district_code),
    ]
    for rung, reached_at, level, code in expected:
        assert next_notice_at(story.case, RULES) == reached_at
        assert story.tick(reached_at - timedelta(seconds=1)) == [], f"{rung} not before its time"
        [notice] = story.tick(reached_at)
        payload = notice.payload
        assert isinstance(payload, SupervisionNoticeIssued)
        assert (payload.rung, payload.reached_at, payload.level, payload.addressed_to) == (
            rung,
            reached_at,
            level,
            code,
        )
        assert (payload.clock, payload.unit_id) == (ClockKind.HANDLING, "U-1")
        assert story.tick(reached_at + timedelta(hours=1)) == [], f"{rung} is issued once"
    assert next_notice_at(story.case, RULES) is None
    assert [n.rung for n in story.case.notices] == ["warning", "overdue", "yellow", "red"]


def test_a_timer_that_wakes_late_issues_every_rung_passed_in_order_with_ids_that_do_not_depend_on_when() -> None:
    early, late = Story(), Story()
    for story in (early, late):
        story.case_id = uuid.UUID(int=7)
    early.acknowledged_case()
    late.log, late.case = list(early.log), early.case
    for hours in (24 * 6, 24 * 8, 24 * 12, 24 * 15):
        early.tick(T0 + timedelta(hours=hours))
    burst = late.tick(T0 + timedelta(days=20))
    assert [n.payload.rung for n in burst] == ["warning", "overdue", "yellow", "red"]  # type: ignore[attr-defined]
    assert [n.occurred_at for n in burst] == sorted(n.occurred_at for n in burst)
    assert [n.event_id for n in burst] == [n.event_id for n in early.log[-4:]]


def test_an_approved_extension_moves_the_deadline_and_the_ladder_starts_over_against_it() -> None:
    story = Story()
    story.acknowledged_case(SlaTierName.URGENT)
    story.tick(T0 + timedelta(hours=26))  # warning and overdue
    request = story.happen(
        ExtensionRequested(unit_id="U-1", requested_by="w", reason="parts", requested_due_at=T0 + timedelta(days=3)),
        T0 + timedelta(hours=26),
    )
    assert story.case.pending_extension is not None
    decision = DecideExtension(
        case_id=story.case_id,
        approved=True,
        by="sup",
        note="ok",
        due_at=None,
        now=T0 + timedelta(hours=27),
        correlation_id=uuid.uuid4(),
    )
    decided, extended = story.decided(decide_extension(story.case, decision), decision.now)
    assert isinstance(decided.payload, ExtensionDecided)
    assert decided.causation_id == request.event_id
    assert isinstance(extended.payload, DeadlineSet)
    assert extended.payload.reason is DeadlineReason.EXTENDED
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.due_at == T0 + timedelta(days=3)
    assert handling.rungs_reached == (), "a new phase: its rungs are still to come"
    assert story.case.pending_extension is None
    assert story.tick(T0 + timedelta(hours=28)) == [], "not overdue any more"
    assert [n.payload.rung for n in story.tick(T0 + timedelta(days=3))] == ["warning", "overdue"]  # type: ignore[attr-defined]


def test_a_refused_extension_leaves_the_deadline_and_a_decision_needs_a_pending_request() -> None:
    story = Story()
    story.acknowledged_case()
    now = T0 + timedelta(days=1)
    refuse = DecideExtension(
        case_id=story.case_id, approved=False, by="sup", note="no", due_at=None, now=now, correlation_id=uuid.uuid4()
    )
    with pytest.raises(NoExtensionPending):
        decide_extension(story.case, refuse)
    due = story.case.handling_clock.due_at  # type: ignore[union-attr]
    story.happen(
        ExtensionRequested(unit_id="U-1", requested_by="w", reason="r", requested_due_at=due + timedelta(days=5)), now
    )
    [refused] = story.decided(decide_extension(story.case, refuse), now)
    assert isinstance(refused.payload, ExtensionDecided)
    assert not refused.payload.approved
    assert story.case.handling_clock.due_at == due  # type: ignore[union-attr]
    assert story.case.extensions[-1].approved is False


def test_an_extension_must_move_the_deadline_later_and_needs_a_clock_that_still_counts() -> None:
    story = Story()
    story.acknowledged_case()
    due = story.case.handling_clock.due_at  # type: ignore[union-attr]
    now = T0 + timedelta(days=1)
    story.happen(ExtensionRequested(unit_id="U-1", requested_by="w", reason="r", requested_due_at=due), now)
    approve = DecideExtension(
        case_id=story.case_id, approved=True, by="sup", note="", due_at=None, now=now, correlation_id=uuid.uuid4()
    )
    with pytest.raises(InvalidInput, match=r"due_at: .* not after the current one"):
        decide_extension(story.case, approve)
    story.happen(reported(), now)
    later = DecideExtension(
        case_id=story.case_id,
        approved=True,
        by="sup",
        note="",
        due_at=due + timedelta(days=1),
        now=now,
        correlation_id=uuid.uuid4(),
    )
    with pytest.raises(NoClockToExtend):
        decide_extension(story.case, later)


def test_emergency_mode_retimes_a_running_clock_from_its_start_and_new_clocks_start_on_the_emergency_profile() -> None:
    story = Story()
    story.acknowledged_case()  # general: 7 days, emergency profile: 24 hours
    switch = new_event(
        RegionModeSwitched(
            region_code="330110001", region_level="town", mode=RegionMode.EMERGENCY, switched_by="sup", reason="flood"
        ),
        case_id=region_stream_id("330110001"),
        actor=Actor(id="sup", role=ActorRole.SUPERVISOR),
        occurred_at=T0 + timedelta(hours=5),
        correlation_id=uuid.uuid4(),
    )
    story.emergency = True
    changed = change_profile(
        story.case, switch, emergency=True, region_code="330110001", rules=RULES, now=switch.occurred_at
    )
    story.take(changed, switch.occurred_at)
    assert isinstance(changed[0].payload, SlaProfileChanged)
    assert changed[0].causation_id == switch.event_id
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.sla_profile == "emergency"
    assert handling.due_at == handling.started_at + timedelta(hours=24)
    assert (
        change_profile(story.case, switch, emergency=True, region_code="330110001", rules=RULES, now=switch.occurred_at)
        == []
    ), "already on that profile"
    story.happen(reported(), T0 + timedelta(hours=6))
    story.happen(CaseVerificationFailed(verified_by="s"), T0 + timedelta(hours=7))
    rework = story.case.handling_clock
    assert rework is not None
    assert rework.sla_profile == "emergency"
    assert rework.due_at == T0 + timedelta(hours=7 + 24)


def test_a_rejudgment_to_a_tighter_tier_retimes_the_running_clock() -> None:
    story = Story()
    story.acknowledged_case()
    story.happen(judged(SlaTierName.URGENT, risk=2, category="public_security"), T0 + timedelta(hours=2))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.sla_tier == "urgent"
    assert handling.due_at == handling.started_at + timedelta(hours=24)
    assert [p.reason for p in story.clock_events() if isinstance(p, DeadlineSet)][-1] is DeadlineReason.REJUDGED


def test_closing_a_case_stops_every_clock_still_counting() -> None:
    story = Story()
    story.happen(
        ACCEPTED,
        T0,
    )
    story.happen(judged(), T0)
    story.happen(assigned(), T0)
    story.happen(CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE), T0 + timedelta(hours=1))
    assert all(not clock.open for clock in story.case.clocks)
    assert story.tick(T0 + timedelta(days=30)) == []


def test_a_supervisor_urges_an_open_case_at_any_time_but_not_a_closed_one() -> None:
    story = Story()
    story.acknowledged_case()
    command = UrgeCase(
        case_id=story.case_id, by="sup", note="faster", now=T0 + timedelta(hours=2), correlation_id=uuid.uuid4()
    )
    [urged] = story.decided(urge(story.case, command), command.now)
    assert isinstance(urged.payload, CaseUrged)
    assert urged.payload.unit_id == "U-1"
    assert urged.actor.role is ActorRole.SUPERVISOR
    assert len(story.case.urgings) == 1
    story.happen(CaseClosed(reason=ClosureReason.EVALUATED), T0 + timedelta(hours=3))
    with pytest.raises(CaseNotOpen):
        urge(story.case, command)


def test_clock_decisions_are_settled_and_a_replay_of_the_log_folds_the_same_clocks() -> None:
    story = Story()
    story.acknowledged_case()
    story.happen(CaseReturned(unit_id="U-1", returned_by="w", reason="r"), T0 + timedelta(hours=2))
    story.happen(assigned("U-2"), T0 + timedelta(hours=2))
    story.happen(acknowledged("U-2"), T0 + timedelta(hours=4))
    story.tick(T0 + timedelta(days=7))
    story.happen(reported("U-2"), T0 + timedelta(days=8))
    assert reconcile_clocks(story.case, story.log[-1], emergency=False, rules=RULES, now=T0 + timedelta(days=9)) == []
    replayed = fold(story.case_id, causal_order(reversed(story.log)))
    assert replayed.acknowledgement_clock == story.case.acknowledgement_clock
    assert replayed.handling_clock == story.case.handling_clock
    assert replayed.notices == story.case.notices


def test_clock_events_arriving_out_of_topic_order_still_start_the_clock_when_the_judgment_comes() -> None:
    story = Story()
    story.happen(
        ACCEPTED,
        T0,
    )
    # The assignment read before the judgment it answers (another topic): no tier yet, no clock.
    judgment = new_event(
        judged(),
        case_id=story.case_id,
        actor=Actor(id="t", role=ActorRole.SYSTEM),
        occurred_at=T0 + timedelta(minutes=1),
        correlation_id=uuid.uuid4(),
        causation_id=story.log[0].event_id,
    )
    assignment = new_event(
        assigned(),
        case_id=story.case_id,
        actor=Actor(id="t", role=ActorRole.SYSTEM),
        occurred_at=T0 + timedelta(minutes=2),
        correlation_id=uuid.uuid4(),
        causation_id=judgment.event_id,
    )
    case = fold(story.case_id, causal_order([story.log[0], assignment]))
    assert reconcile_clocks(case, assignment, emergency=False, rules=RULES, now=T0 + timedelta(minutes=3)) == []
    case = fold(story.case_id, causal_order([story.log[0], assignment, judgment]))
    [started] = reconcile_clocks(case, judgment, emergency=False, rules=RULES, now=T0 + timedelta(minutes=3))
    assert isinstance(started.payload, DeadlineSet)
    assert started.payload.started_at == assignment.occurred_at
    assert started.payload.clock is ClockKind.ACKNOWLEDGEMENT


def test_an_approved_extension_gives_way_to_emergency_mode_and_comes_back_with_the_normal_profile() -> None:
    story = Story()
    story.acknowledged_case()  # general: due T0 + 1h + 7 days
    now = T0 + timedelta(days=2)
    granted = T0 + timedelta(days=20)
    story.happen(ExtensionRequested(unit_id="U-1", requested_by="w", reason="r", requested_due_at=granted), now)
    decision = DecideExtension(
        case_id=story.case_id, approved=True, by="sup", note="", due_at=None, now=now, correlation_id=uuid.uuid4()
    )
    story.decided(decide_extension(story.case, decision), now)

    def switch(mode: RegionMode, at: datetime) -> None:
        event = new_event(
            RegionModeSwitched(
                region_code="330110001", region_level="town", mode=mode, switched_by="sup", reason="flood"
            ),
            case_id=region_stream_id("330110001"),
            actor=Actor(id="sup", role=ActorRole.SUPERVISOR),
            occurred_at=at,
            correlation_id=uuid.uuid4(),
        )
        story.emergency = mode is RegionMode.EMERGENCY
        emergency = story.emergency
        story.take(change_profile(story.case, event, emergency=emergency, region_code="330110001", rules=RULES,
                                  now=at), at)  # fmt: skip

    switch(RegionMode.EMERGENCY, now + timedelta(hours=1))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.due_at == handling.started_at + timedelta(hours=24), "wartime: the emergency profile applies"
    switch(RegionMode.NORMAL, now + timedelta(hours=2))
    assert story.case.handling_clock is not None
    assert story.case.handling_clock.due_at == granted, "back in normal times, the extension stands"


def test_an_unmerged_case_starts_new_rounds_where_the_merge_stopped_its_clocks() -> None:
    story = Story()
    story.acknowledged_case()
    original = uuid.uuid4()
    merged = CasesMerged(into_case_id=original, into_case_no="CL0", merged_by="sup", reason="same")
    story.happen(merged, T0 + timedelta(hours=2))
    assert all(not clock.open for clock in story.case.clocks), "a merged case is not supervised"
    unmerge = CaseUnmerged(from_case_id=original, unmerged_by="sup", reason="not the same")
    unmerged = story.happen(unmerge, T0 + timedelta(hours=3))
    handling = story.case.handling_clock
    assert handling is not None
    assert handling.running
    assert handling.round_cause_id == unmerged.event_id
    assert handling.due_at == unmerged.occurred_at + timedelta(days=7)


def test_the_deadline_shown_and_listed_is_the_clock_that_counts_not_a_paused_one() -> None:
    story = Story()
    story.acknowledged_case()
    story.happen(CaseReturned(unit_id="U-1", returned_by="w", reason="r"), T0 + timedelta(hours=2))
    story.happen(assigned("U-2"), T0 + timedelta(hours=2))
    view = case_view(story.case, RULES.reference.escalation_ladder)
    assert view.deadline is not None
    assert (view.deadline.clock, view.deadline.counting) == (ClockKind.ACKNOWLEDGEMENT, True)


def test_an_extension_is_not_granted_while_a_return_pauses_the_clock() -> None:
    story = Story()
    story.acknowledged_case()
    due = story.case.handling_clock.due_at  # type: ignore[union-attr]
    story.happen(
        ExtensionRequested(unit_id="U-1", requested_by="w", reason="r", requested_due_at=due + timedelta(days=3)),
        T0 + timedelta(hours=2),
    )
    story.happen(CaseReturned(unit_id="U-1", returned_by="w", reason="r"), T0 + timedelta(hours=3))
    approve = DecideExtension(
        case_id=story.case_id,
        approved=True,
        by="sup",
        note="",
        due_at=None,
        now=T0 + timedelta(hours=4),
        correlation_id=uuid.uuid4(),
    )
    with pytest.raises(NoClockToExtend):
        decide_extension(story.case, approve)
