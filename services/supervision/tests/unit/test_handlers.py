"""supervision's handlers, commands and timers as the runtime runs them — a poll's events recorded,
the clocks they call for decided and projected into the case list; a supervisor's or a citizen's
command (verification, evaluation, urging, an extension decision, emergency mode) decided on the
case as stored and written at once with what follows from it (clocks, the feedback owed, the
closure of the cases that follow a closed one); the timers' rounds — on the in-memory store of
``caseloop_events.testing.fakes``: no database, no broker.

What the handlers read besides the streams (the regions in emergency mode, the cases that follow a
case, the open cases of a region, what the timers find due, a feedback delivery) they ask the port
``SupervisionReads``; here ``InMemorySupervisionStore`` answers it from the rows the handlers wrote,
and ``tests/integration/test_supervision_reads.py`` holds it to the SQL adapter on the same rows.

Still on a database only (the integration tests): the HTTP routes and the queries they answer in SQL
(the case list's filters, the timeline as of a time, the daily report, a region's mode), the second
for which the SQL adapter keeps the regions in emergency mode, and units of work of two processes
racing on one database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    ExtensionRequested,
)
from caseloop_events.contracts.envelope import Actor, Envelope, EventPayload, deterministic_id, new_event
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
)
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseUrged,
    CaseVerified,
    ClockKind,
    ClockStopped,
    ClosureReason,
    DeadlineReason,
    DeadlineSet,
    ExtensionDecided,
    Rating,
    RegionMode,
    SlaProfileChanged,
    SupervisionNoticeIssued,
    region_stream_id,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.testing.fakes import FakeService, InMemoryStore
from caseloop_supervision.adapters.memory import InMemorySupervisionStore
from caseloop_supervision.adapters.tables import case_links, cases, feedback_deliveries, region_modes
from caseloop_supervision.app import SUPERVISION
from caseloop_supervision.domain.clocks import CaseNotOpen, ClockRules, DecideExtension, UrgeCase, reconcile_clocks
from caseloop_supervision.domain.decisions import EvaluateHandling, VerifyResult
from caseloop_supervision.domain.model import SupervisedCase, evolve
from caseloop_supervision.service_layer import timers
from caseloop_supervision.service_layer.commands import (
    IssueDueNotices,
    SwitchRegionMode,
    UnknownRegion,
    switch_region_mode,
)
from caseloop_supervision.service_layer.supervising import SupervisionDeps

RULES = ClockRules(load_reference_data(default_reference_dir()))
#: Monday 23 November 2026, 09:00 region time: no holiday near, the clocks count plain hours.
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)
#: Another town of the same district.
ELSEWHERE = CaseLocation(
    grid_code="3301100020010101", village_code="330110002001", town_code="330110002", district_code="330110"
)
UNIT = "U-SANITATION-1"
SUPERVISOR = "li.na"
CALLBACK = "http://source.example/callbacks/caseloop"
#: When the unit of the loop's case signs for it, and when it reports its result.
ACKNOWLEDGED_AT = T0 + timedelta(hours=1)
REPORTED_AT = T0 + timedelta(hours=5)

Supervision = FakeService[SupervisionDeps, SupervisedCase]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(hours=1))


@pytest.fixture
def supervision(clock: ManualClock) -> Supervision:
    """supervision on an in-memory store, its reads answered from the rows its handlers wrote there."""
    store: InMemoryStore[SupervisedCase] = InMemoryStore()
    deps = SupervisionDeps(rules=RULES, store=InMemorySupervisionStore(store))
    return FakeService(SUPERVISION, deps, clock, store)


def reported(
    case_no: str = "CL202611230000001", location: CaseLocation = LOCATION, callback_url: str | None = None
) -> CaseAccepted:
    return CaseAccepted(
        case_no=case_no,
        source_system="hotline-12345",
        external_id=f"HL-{case_no}",
        title="小区门口垃圾堆积",
        description="垃圾三天没人清运",
        location=location,
        callback_url=callback_url,
        accepted_at=T0,
    )


def judged(tier: SlaTierName = SlaTierName.URGENT) -> CaseJudged:
    return CaseJudged(
        category="sanitation",
        risk_level=3,
        handling_level=HandlingLevel.TOWN,
        sla_tier=tier,
        judged_by=JudgedBy.RULES,
        confidence=0.8,
    )


def assigned(town_code: str = LOCATION.town_code) -> CaseAssigned:
    return CaseAssigned(
        unit_id=UNIT,
        unit_name="环卫所",
        town_code=town_code,
        route=AssignmentRoute.RESPONSIBILITY_LIST,
        reason="职责清单",
    )


def the_loop(report: CaseAccepted | None = None) -> list[tuple[EventPayload, datetime]]:
    """What the other services say of a case, and when: accepted at T0, judged urgent (2 hours to
    acknowledge, 24 to handle), assigned, acknowledged at T0 + 1 h, its result reported at T0 + 5 h."""
    report = report or reported()
    return [
        (report, T0),
        (judged(), T0 + timedelta(minutes=1)),
        (assigned(report.location.town_code), T0 + timedelta(minutes=2)),
        (CaseAcknowledged(unit_id=UNIT, acknowledged_by="wang.wei"), ACKNOWLEDGED_AT),
        (CaseResultReported(unit_id=UNIT, reported_by="wang.wei", summary="垃圾已清运"), REPORTED_AT),
    ]


def happened(case_id: uuid.UUID, payload: EventPayload, at: datetime, cause: Envelope | None = None) -> Envelope:
    return new_event(
        payload,
        case_id=case_id,
        actor=Actor.system(payload.producer),
        occurred_at=at,
        correlation_id=cause.correlation_id if cause else uuid.uuid4(),
        causation_id=cause.event_id if cause else None,
    )


def as_supervision_lived_it(case_id: uuid.UUID, *facts: tuple[EventPayload, datetime]) -> list[Envelope]:
    """A case's log as supervision wrote it: the other services' facts, each followed by the clock
    decisions supervision took when it read it (the history a test starts from)."""
    log: list[Envelope] = []
    case = SupervisedCase(case_id)
    for payload, at in facts:
        event = happened(case_id, payload, at, log[-1] if log else None)
        case = evolve(case, event)
        decided = reconcile_clocks(case, event, emergency=False, rules=RULES, now=at)
        for decision in decided:
            case = evolve(case, decision)
        log += [event, *decided]
    return log


def an_acknowledged_urgent_case(report: CaseAccepted | None = None) -> tuple[uuid.UUID, list[Envelope]]:
    """Accepted, judged urgent (24 hours to handle), assigned and acknowledged at T0 + 1 h."""
    case_id = uuid.uuid4()
    return case_id, as_supervision_lived_it(case_id, *the_loop(report)[:4])


def a_case_with_its_result_reported(report: CaseAccepted | None = None) -> tuple[uuid.UUID, list[Envelope]]:
    """The loop's case up to its unit's reported result, at T0 + 5 h: it waits for verification."""
    case_id = uuid.uuid4()
    return case_id, as_supervision_lived_it(case_id, *the_loop(report))


def switching(region_code: str, mode: RegionMode, at: datetime = T0) -> SwitchRegionMode:
    return SwitchRegionMode(
        region_code=region_code, mode=mode, by=SUPERVISOR, reason="防汛应急响应", now=at, correlation_id=uuid.uuid4()
    )


def verification(case_id: uuid.UUID, clock: ManualClock, *, passed: bool) -> VerifyResult:
    note = "现场核查已清运" if passed else "现场仍有垃圾"
    return VerifyResult(
        case_id=case_id, passed=passed, by=SUPERVISOR, note=note, now=clock.now(), correlation_id=uuid.uuid4()
    )


def evaluation(case_id: uuid.UUID, clock: ManualClock, rating: Rating) -> EvaluateHandling:
    return EvaluateHandling(case_id=case_id, rating=rating, comment="", now=clock.now(), correlation_id=uuid.uuid4())


async def emitted_by(supervision: Supervision, command: object) -> list[Envelope]:
    """What handling the command emitted (the events its unit of work wrote to the outbox)."""
    before = len(supervision.store.published)
    await supervision.handle(command)
    return supervision.store.published[before:]


def the(event_type: str, log: list[Envelope]) -> Envelope:
    [event] = [e for e in log if e.type == event_type]
    return event


def row_of(supervision: Supervision, case_id: uuid.UUID) -> dict[str, object]:
    row = supervision.store.row(cases, str(case_id))
    assert row is not None, f"case {case_id} is not in the case list"
    return row


async def test_an_assignment_read_before_the_acceptance_starts_the_acknowledgement_clock_at_its_own_time(
    supervision: Supervision,
) -> None:
    case_id = uuid.uuid4()
    judgment = happened(case_id, judged(), T0 + timedelta(minutes=1))
    assignment = happened(case_id, assigned(), T0 + timedelta(minutes=2), judgment)

    [deadline] = await supervision.take(judgment, assignment)

    assert isinstance(deadline.payload, DeadlineSet)
    assert (deadline.payload.clock, deadline.payload.reason) == (ClockKind.ACKNOWLEDGEMENT, DeadlineReason.STARTED)
    assert deadline.causation_id == assignment.event_id
    started = assignment.occurred_at
    assert (deadline.payload.started_at, deadline.payload.due_at) == (started, started + timedelta(hours=2)), (
        "counted from the assignment, not from when supervision read it"
    )
    assert supervision.store.writes == 1
    [row] = supervision.store.rows(cases)
    assert (row["status"], row["unit_id"], row["holder_kind"], row["holder_id"]) == ("assigned", UNIT, "unit", UNIT)
    assert row["due_at"] == started + timedelta(hours=2), "an urgent case is acknowledged within 2 hours"
    assert row["next_notice_at"] == started + timedelta(minutes=96), "the warning, at 80 % of the allowed time"

    assert await supervision.take(judgment, assignment) == [], "the same poll again: the clock runs already"
    assert supervision.store.writes == 1


async def test_a_case_screening_rejected_is_listed_as_rejected_held_by_nobody_and_never_clocked(
    supervision: Supervision,
) -> None:
    rejected = happened(
        uuid.uuid4(),
        CaseRejected(
            case_no="CL202611230000002",
            source_system="hotline-12345",
            external_id="HL-R",
            title="测试",
            reason_code=RejectionReason.TEST_OR_SPAM,
        ),
        T0,
    )

    assert await supervision.take(rejected) == []

    [row] = supervision.store.rows(cases)
    assert (row["case_id"], row["case_no"], row["status"]) == (str(rejected.case_id), "CL202611230000002", "rejected")
    assert (row["holder_kind"], row["due_at"], row["next_notice_at"]) == ("nobody", None, None)


async def test_the_notice_round_issues_each_rung_a_running_clock_has_reached_once_and_moves_the_case_up_the_ladder(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, log = an_acknowledged_urgent_case()
    await supervision.replay(*log)
    handling_started = T0 + timedelta(hours=1)
    row = supervision.store.row(cases, str(case_id))
    assert row is not None
    assert (row["status"], row["due_at"], row["notice_rung"]) == (
        "acknowledged",
        handling_started + timedelta(hours=24),
        None,
    )
    assert row["next_notice_at"] == handling_started + timedelta(hours=24 * 0.8)
    writes = supervision.store.writes

    clock.advance(timedelta(hours=24, minutes=30))  # past the warning and the deadline
    issued = await supervision.handle(IssueDueNotices(case_id))

    assert issued == 2
    warning, overdue = supervision.store.published
    assert [n.payload.rung for n in (warning, overdue) if isinstance(n.payload, SupervisionNoticeIssued)] == [
        "warning",
        "overdue",
    ]
    assert isinstance(overdue.payload, SupervisionNoticeIssued)
    assert (overdue.payload.level, overdue.payload.addressed_to) == ("village", LOCATION.village_code)
    row = supervision.store.row(cases, str(case_id))
    assert row is not None
    assert (row["notice_rung"], row["notice_level"]) == ("overdue", "village")
    assert row["next_notice_at"] == handling_started + timedelta(hours=36), "next: the yellow notice, to the town"
    assert supervision.store.writes == writes + 1

    assert await supervision.handle(IssueDueNotices(case_id)) == 0, "another round (or replica): each rung once"
    assert (supervision.store.writes, len(supervision.store.published)) == (writes + 1, 2)


async def test_a_town_switched_into_emergency_mode_and_back_projects_its_mode_and_a_switch_to_its_mode_is_nothing(
    supervision: Supervision,
) -> None:
    town = LOCATION.town_code

    into = await supervision.handle(switching(town, RegionMode.EMERGENCY))

    assert into.switch is not None
    assert into.switch.case_id == region_stream_id(town)
    assert (into.view.region_level, into.view.mode) == ("town", RegionMode.EMERGENCY)
    [mode] = supervision.store.rows(region_modes)
    assert (mode["region_code"], mode["mode"], mode["switched_by"]) == (town, "emergency", SUPERVISOR)
    assert mode["switch_event_id"] == str(into.switch.event_id)

    again = await supervision.handle(switching(town, RegionMode.EMERGENCY, T0 + timedelta(hours=1)))

    assert again.switch is None
    assert (again.view.mode, again.view.switched_at) == (RegionMode.EMERGENCY, T0), "still the first switch"
    assert supervision.store.writes == 1

    back = await supervision.handle(switching(town, RegionMode.NORMAL, T0 + timedelta(hours=2)))

    assert back.switch is not None
    [mode] = supervision.store.rows(region_modes)
    assert (mode["mode"], mode["switch_event_id"]) == ("normal", str(back.switch.event_id))
    assert [e.type for e in supervision.store.published] == ["region.mode_switched", "region.mode_switched"]


async def test_a_region_that_is_neither_the_district_nor_one_of_its_towns_is_not_switched(
    supervision: Supervision,
) -> None:
    with pytest.raises(UnknownRegion):
        await supervision.handle(switching(LOCATION.village_code, RegionMode.EMERGENCY))

    assert (supervision.store.writes, supervision.store.rows(region_modes)) == (0, [])


# --- the loop: clocks, verification, evaluation -------------------------------------------------


def clock_change(event: Envelope) -> tuple[str, ClockKind, str]:
    match event.payload:
        case DeadlineSet() as deadline:
            return ("deadline_set", deadline.clock, deadline.reason.value)
        case ClockStopped() as stopped:
            return ("clock_stopped", stopped.clock, stopped.reason)
    raise AssertionError(f"{event.type} is not a clock change")


async def test_a_case_going_round_the_loop_starts_and_stops_each_clock_and_its_row_follows_where_it_stands(
    supervision: Supervision,
) -> None:
    case_id = uuid.uuid4()
    cause: Envelope | None = None
    seen = []
    for payload, at in the_loop():
        event = happened(case_id, payload, at, cause)
        decided = await supervision.take(event)
        row = row_of(supervision, case_id)
        seen.append((event.type, [clock_change(d) for d in decided], row["status"], row["holder_kind"], row["due_at"]))
        cause = event

    acknowledgement, handling = ClockKind.ACKNOWLEDGEMENT, ClockKind.HANDLING
    assert seen == [
        ("case.accepted", [], "accepted", "service", None),
        ("case.judged", [], "triaged", "service", None),
        (
            "case.assigned",
            [("deadline_set", acknowledgement, "started")],
            "assigned",
            "unit",
            T0 + timedelta(minutes=2, hours=2),
        ),
        (
            "case.acknowledged",
            [("clock_stopped", acknowledgement, "acknowledged"), ("deadline_set", handling, "started")],
            "acknowledged",
            "unit",
            ACKNOWLEDGED_AT + timedelta(hours=24),
        ),
        ("case.result_reported", [("clock_stopped", handling, "result_reported")], "result_reported", "service", None),
    ]
    assert supervision.store.writes == 5, "one write per poll"


async def test_a_passed_verification_waits_for_the_citizen_and_a_satisfied_evaluation_closes_the_case(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, log = a_case_with_its_result_reported()
    await supervision.replay(*log)
    clock.advance(REPORTED_AT + timedelta(hours=1) - clock.now())

    [verified] = await emitted_by(supervision, verification(case_id, clock, passed=True))

    assert isinstance(verified.payload, CaseVerified)
    assert verified.causation_id == the("case.result_reported", log).event_id
    row = row_of(supervision, case_id)
    assert (row["status"], row["holder_kind"], row["awaiting_evaluation_since"]) == ("verified", "citizen", clock.now())

    clock.advance(timedelta(hours=2))
    evaluated, closed = await emitted_by(supervision, evaluation(case_id, clock, Rating.SATISFIED))

    assert isinstance(evaluated.payload, CaseEvaluated)
    assert evaluated.payload.rating is Rating.SATISFIED
    assert closed.payload == CaseClosed(reason=ClosureReason.EVALUATED)
    assert closed.causation_id == evaluated.event_id
    row = row_of(supervision, case_id)
    assert (row["status"], row["holder_kind"], row["closed_at"]) == ("closed", "nobody", clock.now())
    assert row["awaiting_evaluation_since"] is None, "the auto-closure timer has nothing left to close"


async def test_an_unsatisfied_evaluation_reopens_the_case_for_dispatch_to_assign_again(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, log = a_case_with_its_result_reported()
    await supervision.replay(*log)
    clock.advance(REPORTED_AT + timedelta(hours=1) - clock.now())
    await supervision.handle(verification(case_id, clock, passed=True))

    evaluated, reopened = await emitted_by(supervision, evaluation(case_id, clock, Rating.UNSATISFIED))

    assert isinstance(evaluated.payload, CaseEvaluated)
    assert reopened.payload == CaseReopened(reason="unsatisfied evaluation", reopen_count=1)
    assert reopened.causation_id == evaluated.event_id
    row = row_of(supervision, case_id)
    assert (row["status"], row["holder_kind"], row["holder_id"]) == ("reopened", "service", "dispatch")
    assert (row["closed_at"], row["awaiting_evaluation_since"]) == (None, None)


async def test_a_failed_verification_sends_the_case_back_to_its_unit_with_a_new_handling_clock(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, log = a_case_with_its_result_reported()
    await supervision.replay(*log)
    clock.advance(REPORTED_AT + timedelta(hours=1) - clock.now())
    failed_at = clock.now()

    failed, restarted = await emitted_by(supervision, verification(case_id, clock, passed=False))

    assert failed.type == "case.verification_failed"
    assert isinstance(restarted.payload, DeadlineSet)
    assert (restarted.payload.clock, restarted.payload.reason) == (ClockKind.HANDLING, DeadlineReason.RESTARTED)
    assert (restarted.payload.started_at, restarted.payload.due_at) == (failed_at, failed_at + timedelta(hours=24))
    row = row_of(supervision, case_id)
    assert (row["status"], row["holder_kind"], row["holder_id"]) == ("acknowledged", "unit", UNIT)
    assert row["due_at"] == failed_at + timedelta(hours=24), "rework is timed afresh"


# --- closure of the cases that follow a case ----------------------------------------------------


def linked_to(original_id: uuid.UUID, original_no: str, case_no: str) -> CaseLinkedAsDuplicate:
    report = reported(case_no)
    return CaseLinkedAsDuplicate(
        **report.model_dump(exclude={"accepted_at"}),
        original_case_id=original_id,
        original_case_no=original_no,
        similarity=0.9,
        reason="同一处垃圾堆",
    )


async def test_closing_a_case_closes_its_duplicates_and_the_cases_merged_into_it_but_not_one_unmerged(
    supervision: Supervision, clock: ManualClock
) -> None:
    original_id, log = a_case_with_its_result_reported()
    original_no = reported().case_no
    await supervision.replay(*log)
    duplicate, merged, unmerged, second_hand = (uuid.uuid4() for _ in range(4))
    merge = CasesMerged(into_case_id=original_id, into_case_no=original_no, merged_by=SUPERVISOR, reason="同一事项")
    at = REPORTED_AT + timedelta(minutes=10)
    linking = [
        happened(duplicate, linked_to(original_id, original_no, "CL-D"), at),
        merged_accepted := happened(merged, reported("CL-M"), at),
        happened(merged, merge, at + timedelta(minutes=1), merged_accepted),
        unmerged_linked := happened(unmerged, linked_to(original_id, original_no, "CL-U"), at),
        happened(
            unmerged,
            CaseUnmerged(from_case_id=original_id, unmerged_by=SUPERVISOR, reason="不是同一事项"),
            at + timedelta(minutes=1),
            unmerged_linked,
        ),
        # A duplicate of the duplicate: it closes when the case it follows does.
        happened(second_hand, linked_to(duplicate, "CL-D", "CL-S"), at + timedelta(minutes=2)),
    ]
    await supervision.take(*linking)
    links = {(row["follower_case_id"], row["original_case_id"]) for row in supervision.store.rows(case_links)}
    assert links == {
        (str(duplicate), str(original_id)),
        (str(merged), str(original_id)),
        (str(second_hand), str(duplicate)),
    }

    clock.advance(timedelta(hours=6))
    await supervision.handle(verification(original_id, clock, passed=True))
    closing = await emitted_by(supervision, evaluation(original_id, clock, Rating.SATISFIED))

    closures = {e.case_id: e for e in closing if isinstance(e.payload, CaseClosed)}
    assert set(closures) == {original_id, duplicate, merged, second_hand}, "in the same unit of work"
    for follower, followed in ((duplicate, original_id), (merged, original_id), (second_hand, duplicate)):
        closed = closures[follower]
        assert closed.payload == CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE, original_case_id=followed)
        assert closed.event_id == deterministic_id(closures[followed].event_id, f"closed-with-original:{follower}")
        assert row_of(supervision, follower)["status"] == "closed"
    assert row_of(supervision, unmerged)["status"] == "accepted", "unmerged, it goes its own way"


# --- urging and extensions ----------------------------------------------------------------------


def urging(case_id: uuid.UUID, clock: ManualClock) -> UrgeCase:
    return UrgeCase(case_id=case_id, by=SUPERVISOR, note="请加快处理", now=clock.now(), correlation_id=uuid.uuid4())


async def test_urging_an_open_case_urges_the_unit_holding_it(supervision: Supervision, clock: ManualClock) -> None:
    case_id, log = an_acknowledged_urgent_case()
    await supervision.replay(*log)

    [urged] = await emitted_by(supervision, urging(case_id, clock))

    assert urged.payload == CaseUrged(urged_by=SUPERVISOR, note="请加快处理", unit_id=UNIT)
    assert urged.causation_id == the("case.acknowledged", log).event_id, "it answers where the case stands"


async def test_a_closed_case_is_not_urged(supervision: Supervision, clock: ManualClock) -> None:
    case_id, log = a_case_with_its_result_reported()
    await supervision.replay(*log)
    clock.advance(timedelta(hours=6))
    await supervision.handle(verification(case_id, clock, passed=True))
    await supervision.handle(evaluation(case_id, clock, Rating.SATISFIED))
    writes, published = supervision.store.writes, len(supervision.store.published)

    with pytest.raises(CaseNotOpen):
        await supervision.handle(urging(case_id, clock))

    assert (supervision.store.writes, len(supervision.store.published)) == (writes, published)


def extension(case_id: uuid.UUID, clock: ManualClock, *, approved: bool) -> DecideExtension:
    return DecideExtension(
        case_id=case_id,
        approved=approved,
        by=SUPERVISOR,
        note="同意延期" if approved else "不予延期",
        due_at=None,
        now=clock.now(),
        correlation_id=uuid.uuid4(),
    )


async def an_extension_asked_for(supervision: Supervision, clock: ManualClock) -> tuple[uuid.UUID, Envelope]:
    """An acknowledged urgent case (due at T0 + 25 h) whose unit asks, at T0 + 2 h, for two days."""
    case_id, log = an_acknowledged_urgent_case()
    await supervision.replay(*log)
    asked = ExtensionRequested(
        unit_id=UNIT,
        requested_by="wang.wei",
        reason="需协调清运车辆",
        requested_due_at=ACKNOWLEDGED_AT + timedelta(days=2),
    )
    request = happened(case_id, asked, T0 + timedelta(hours=2), the("case.acknowledged", log))
    assert await supervision.take(request) == [], "asking moves no clock"
    clock.advance(T0 + timedelta(hours=3) - clock.now())
    return case_id, request


async def test_an_approved_extension_moves_the_handling_deadline_to_the_date_asked_for(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, request = await an_extension_asked_for(supervision, clock)
    asked_for = ACKNOWLEDGED_AT + timedelta(days=2)

    decided, extended = await emitted_by(supervision, extension(case_id, clock, approved=True))

    assert isinstance(decided.payload, ExtensionDecided)
    assert (decided.payload.approved, decided.payload.due_at, decided.causation_id) == (
        True,
        asked_for,
        request.event_id,
    )
    assert isinstance(extended.payload, DeadlineSet)
    assert (extended.payload.reason, extended.payload.due_at) == (DeadlineReason.EXTENDED, asked_for)
    row = row_of(supervision, case_id)
    assert row["due_at"] == asked_for
    granted = asked_for - decided.occurred_at
    assert row["next_notice_at"] == decided.occurred_at + granted * 0.8, "the ladder starts over on the time granted"


async def test_a_refused_extension_leaves_the_handling_deadline_where_it_was(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, request = await an_extension_asked_for(supervision, clock)

    [decided] = await emitted_by(supervision, extension(case_id, clock, approved=False))

    assert isinstance(decided.payload, ExtensionDecided)
    assert (decided.payload.approved, decided.causation_id) == (False, request.event_id)
    assert row_of(supervision, case_id)["due_at"] == ACKNOWLEDGED_AT + timedelta(hours=24)


# --- emergency mode -----------------------------------------------------------------------------


async def test_the_open_cases_of_a_town_switched_into_emergency_mode_are_held_to_the_emergency_profile(
    supervision: Supervision, clock: ManualClock
) -> None:
    open_here, open_log = an_acknowledged_urgent_case()
    elsewhere, elsewhere_log = an_acknowledged_urgent_case(reported("CL202611230000002", ELSEWHERE))
    closed_here, closed_log = a_case_with_its_result_reported(reported("CL202611230000003"))
    result = the("case.result_reported", closed_log)
    verified = happened(closed_here, CaseVerified(verified_by=SUPERVISOR), REPORTED_AT, result)
    closed = happened(closed_here, CaseClosed(reason=ClosureReason.EVALUATED), REPORTED_AT, verified)
    await supervision.replay(*open_log, *elsewhere_log, *closed_log, verified, closed)
    clock.advance(timedelta(hours=1))  # T0 + 2 h

    switched = await switch_region_mode(
        supervision.handle, supervision.deps.store, switching(LOCATION.town_code, RegionMode.EMERGENCY, clock.now())
    )

    assert (switched.mode, switched.cases_affected) == (RegionMode.EMERGENCY, 1)
    changed, retimed = supervision.events_of(open_here)[-2:]
    assert isinstance(changed.payload, SlaProfileChanged)
    assert (changed.payload.sla_profile, changed.payload.region_code) == ("emergency", LOCATION.town_code)
    assert isinstance(retimed.payload, DeadlineSet)
    assert (retimed.payload.reason, retimed.payload.sla_profile) == (DeadlineReason.PROFILE_CHANGED, "emergency")
    assert retimed.payload.due_at == ACKNOWLEDGED_AT + timedelta(hours=4), "urgent in emergency mode: 4 hours"
    row = row_of(supervision, open_here)
    assert (row["sla_profile"], row["due_at"]) == ("emergency", ACKNOWLEDGED_AT + timedelta(hours=4))
    assert supervision.events_of(elsewhere) == elsewhere_log, "another town's case is left alone"
    assert supervision.events_of(closed_here)[-1] == closed, "a closed case has left the loop"


async def test_a_case_assigned_in_a_town_in_emergency_mode_is_timed_on_the_emergency_profile(
    supervision: Supervision,
) -> None:
    await supervision.handle(switching(LOCATION.town_code, RegionMode.EMERGENCY))
    case_id = uuid.uuid4()
    accepted = happened(case_id, reported(), T0)
    judgment = happened(case_id, judged(), T0 + timedelta(minutes=1), accepted)
    assignment = happened(case_id, assigned(), T0 + timedelta(minutes=2), judgment)

    [deadline] = await supervision.take(accepted, judgment, assignment)

    assert isinstance(deadline.payload, DeadlineSet)
    assert (deadline.payload.clock, deadline.payload.sla_profile) == (ClockKind.ACKNOWLEDGEMENT, "emergency")
    assert deadline.payload.due_at == assignment.occurred_at + timedelta(minutes=30), "not the normal 2 hours"
    assert row_of(supervision, case_id)["sla_profile"] == "emergency"


# --- the timers ---------------------------------------------------------------------------------


async def test_the_notice_round_finds_the_cases_whose_next_rung_is_due_and_no_other(
    supervision: Supervision, clock: ManualClock
) -> None:
    early, early_log = an_acknowledged_urgent_case()
    late = uuid.uuid4()
    # The same loop ten hours later: its unit signed for it at T0 + 11 h.
    late_log = as_supervision_lived_it(
        late, *((fact, at + timedelta(hours=10)) for fact, at in the_loop(reported("CL202611230000002"))[:4])
    )
    await supervision.replay(*early_log, *late_log)
    clock.advance(ACKNOWLEDGED_AT + timedelta(hours=20) - clock.now())  # past the early case's warning only

    assert await timers.issue_due_notices(supervision.handle, supervision.deps, clock) == 1

    [warning] = supervision.store.published
    assert isinstance(warning.payload, SupervisionNoticeIssued)
    assert (warning.case_id, warning.payload.rung) == (early, "warning")
    assert row_of(supervision, late)["notice_rung"] is None
    assert await timers.issue_due_notices(supervision.handle, supervision.deps, clock) == 0, "each rung once"


async def test_a_verified_case_nobody_evaluated_is_closed_by_the_round_after_the_window_and_only_once(
    supervision: Supervision, clock: ManualClock
) -> None:
    case_id, log = a_case_with_its_result_reported()
    await supervision.replay(*log)
    clock.advance(timedelta(hours=6))
    [verified] = await emitted_by(supervision, verification(case_id, clock, passed=True))
    window = supervision.deps.evaluation_window

    async def closing_round() -> int:
        return await timers.close_cases_not_evaluated_in_time(supervision.handle, supervision.deps, clock)

    clock.advance(window - timedelta(seconds=1))
    assert await closing_round() == 0
    clock.advance(timedelta(seconds=1))
    assert await closing_round() == 1
    assert await closing_round() == 0, "a second round finds nothing to do"

    [closed] = [e for e in supervision.store.published if isinstance(e.payload, CaseClosed)]
    assert closed.payload == CaseClosed(reason=ClosureReason.NO_EVALUATION_IN_TIME)
    assert closed.causation_id == verified.event_id
    assert row_of(supervision, case_id)["status"] == "closed"


async def test_feedback_a_source_system_refused_once_is_delivered_after_the_back_off_and_recorded_once_per_attempt(
    supervision: Supervision, clock: ManualClock
) -> None:
    received: list[httpx.Request] = []

    def source_system(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(503 if len(received) == 1 else 204)

    case_id, log = a_case_with_its_result_reported(reported(callback_url=CALLBACK))
    await supervision.replay(*log)
    clock.advance(timedelta(hours=6))
    [verified] = await emitted_by(supervision, verification(case_id, clock, passed=True))
    [queued] = supervision.store.rows(feedback_deliveries)
    assert (queued["about_event_id"], queued["state"], queued["attempts"]) == (str(verified.event_id), "pending", 0)

    async with httpx.AsyncClient(transport=httpx.MockTransport(source_system)) as http:

        async def feedback_round() -> int:
            return await timers.deliver_due_feedback(supervision.handle, supervision.deps, clock, http)

        assert await feedback_round() == 1
        [retrying] = supervision.store.rows(feedback_deliveries)
        assert (retrying["state"], retrying["attempts"], retrying["last_status_code"]) == ("retrying", 1, 503)
        assert retrying["next_attempt_at"] == clock.now() + supervision.deps.feedback_policy.backoff_base
        assert await feedback_round() == 0, "not due before the back-off"
        clock.advance(supervision.deps.feedback_policy.backoff_base)
        assert await feedback_round() == 1
        assert await feedback_round() == 0, "delivered: never sent again"

    [delivered] = supervision.store.rows(feedback_deliveries)
    assert (delivered["state"], delivered["attempts"], delivered["next_attempt_at"]) == ("delivered", 2, None)
    assert [e.type for e in supervision.store.published[1:]] == ["case.feedback_failed", "case.feedback_delivered"]
    assert {r.headers["Idempotency-Key"] for r in received} == {queued["delivery_id"]}
