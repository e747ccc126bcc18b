"""A case's timeline: each event with its cause, the status they lead to, and each stage's duration."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, new_event
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseReopened,
    CaseUrged,
    CaseVerificationFailed,
    CaseVerified,
    ClosureReason,
    Rating,
)
from caseloop_events.contracts.timeline import Stage, StageDuration, build_timeline, human_duration, render_text
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.testing.fixtures import causal_chain

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
STEP = timedelta(minutes=12, seconds=5)
CASE = uuid.uuid4()


def chain(*payloads: EventPayload) -> list[Envelope]:
    """Events of one case, each caused by the one before, 12m 05s apart."""
    return causal_chain(CASE, payloads, T0, STEP)


def accepted(reported_occurred_at: datetime | None = None) -> CaseAccepted:
    return CaseAccepted(
        case_no="CL202611270000001",
        source_system="hotline-12345",
        external_id="e1",
        title="垃圾",
        description="垃圾堆积",
        location=CaseLocation(
            grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
        ),
        reported_occurred_at=reported_occurred_at,
        accepted_at=T0,
    )


JUDGED = CaseJudged(
    category="sanitation",
    risk_level=3,
    handling_level=HandlingLevel.TOWN,
    sla_tier=SlaTierName.GENERAL,
    judged_by=JudgedBy.RULES,
    confidence=0.8,
)
ASSIGNED = CaseAssigned(
    unit_id="U-1", unit_name="城管", town_code="330110001", route=AssignmentRoute.RESPONSIBILITY_LIST, reason="by list"
)
ACKNOWLEDGED = CaseAcknowledged(unit_id="U-1", acknowledged_by="h")
RESULT = CaseResultReported(unit_id="U-1", reported_by="h", summary="done")
VERIFIED = CaseVerified(verified_by="s")
HANDLED = (accepted(), JUDGED, ASSIGNED, ACKNOWLEDGED, RESULT)
CLOSED_LOOP = (*HANDLED, VERIFIED, CaseEvaluated(rating=Rating.SATISFIED), CaseClosed(reason=ClosureReason.EVALUATED))


def stages_of(events: list[Envelope]) -> dict[Stage, StageDuration]:
    return {s.stage: s for s in build_timeline(CASE, events).stages}


def test_each_event_names_the_type_of_its_cause_and_sits_one_level_deeper() -> None:
    events = chain(*CLOSED_LOOP)
    timeline = build_timeline(CASE, events)
    assert (timeline.case_id, timeline.case_no, timeline.status) == (CASE, "CL202611270000001", CaseStatus.CLOSED)
    assert [e.event_id for e in timeline.events] == [e.event_id for e in events]
    first, *rest = timeline.events
    assert (first.cause_type, first.depth, first.since_cause_seconds, first.causation_id) == (None, 0, None, None)
    for depth, (cause, entry) in enumerate(zip(timeline.events, rest, strict=False), start=1):
        assert entry.causation_id == cause.event_id
        assert (entry.cause_type, entry.depth, entry.since_cause_seconds) == (cause.type, depth, 725.0)
    closed = timeline.events[-1]
    assert (closed.type, closed.producer, closed.actor) == ("case.closed", "supervision", events[-1].actor)
    assert closed.payload == {"reason": "evaluated", "original_case_id": None}


def test_each_stage_runs_from_its_start_to_its_end_and_the_screening_from_the_reported_time() -> None:
    reported = T0 - timedelta(days=2, hours=3, minutes=4)
    events = chain(accepted(reported), *CLOSED_LOOP[1:])
    stages = stages_of(events)
    assert list(stages) == list(Stage)
    screening = stages[Stage.SCREENING]
    assert (screening.started_at, screening.ended_at, screening.seconds) == (reported, T0, 183_840.0)
    for stage, n in [
        (Stage.JUDGMENT, 0),
        (Stage.ASSIGNMENT, 1),
        (Stage.ACKNOWLEDGEMENT, 2),
        (Stage.HANDLING, 3),
        (Stage.VERIFICATION, 4),
        (Stage.EVALUATION, 5),
    ]:
        assert (stages[stage].started_at, stages[stage].ended_at) == (events[n].occurred_at, events[n + 1].occurred_at)
        assert stages[stage].seconds == 725.0
    total = stages[Stage.TOTAL]
    assert (total.started_at, total.ended_at, total.seconds) == (T0, events[-1].occurred_at, 7 * 725.0)


def test_a_stage_not_over_is_open_and_a_stage_not_begun_is_left_out() -> None:
    events = chain(accepted(), JUDGED, ASSIGNED)
    stages = stages_of(events)
    assert list(stages) == [Stage.SCREENING, Stage.JUDGMENT, Stage.ASSIGNMENT, Stage.ACKNOWLEDGEMENT, Stage.TOTAL]
    assert stages[Stage.SCREENING].seconds == 0  # no reported time: screening is the acceptance itself
    acknowledgement = stages[Stage.ACKNOWLEDGEMENT]
    assert (acknowledgement.started_at, acknowledgement.ended_at, acknowledgement.seconds) == (
        events[2].occurred_at,
        None,
        None,
    )
    assert (stages[Stage.TOTAL].ended_at, stages[Stage.TOTAL].seconds) == (None, None)


def test_a_reworked_case_shows_its_latest_handling_and_verification_round() -> None:
    failed = CaseVerificationFailed(verified_by="s", note="still dirty")
    events = chain(*HANDLED, failed, RESULT, VERIFIED)
    stages = stages_of(events)
    handling, verification = stages[Stage.HANDLING], stages[Stage.VERIFICATION]
    # The failed verification sent the case back to the unit: the round it started is the latest.
    assert (handling.started_at, handling.ended_at) == (events[5].occurred_at, events[6].occurred_at)
    assert (verification.started_at, verification.ended_at) == (events[6].occurred_at, events[7].occurred_at)
    assert build_timeline(CASE, events).status is CaseStatus.VERIFIED


def test_a_reworked_case_not_yet_reported_again_is_back_in_handling_after_a_finished_verification() -> None:
    events = chain(*HANDLED, CaseVerificationFailed(verified_by="s"))
    stages = stages_of(events)
    assert (stages[Stage.HANDLING].started_at, stages[Stage.HANDLING].ended_at) == (events[5].occurred_at, None)
    verification = stages[Stage.VERIFICATION]
    assert (verification.started_at, verification.ended_at) == (events[4].occurred_at, events[5].occurred_at)


def test_a_reopened_case_waits_for_its_next_assignment_from_the_reopening() -> None:
    unsatisfied = CaseEvaluated(rating=Rating.UNSATISFIED)
    events = chain(*HANDLED, VERIFIED, unsatisfied, CaseReopened(reason="灯还是不亮", reopen_count=1))
    timeline = build_timeline(CASE, events)
    assert timeline.status is CaseStatus.REOPENED
    assignment = {s.stage: s for s in timeline.stages}[Stage.ASSIGNMENT]
    assert (assignment.started_at, assignment.ended_at, assignment.seconds) == (events[-1].occurred_at, None, None)


def test_an_event_caused_outside_the_case_starts_a_chain_of_its_own() -> None:
    original_closure = uuid.uuid4()  # the original case's closure: not among this case's events
    own = chain(accepted())
    closed = new_event(
        CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE, original_case_id=uuid.uuid4()),
        case_id=CASE,
        actor=Actor.system(CaseClosed.producer),
        occurred_at=T0 + timedelta(hours=1),
        correlation_id=uuid.uuid4(),
        causation_id=original_closure,
    )
    another_case = causal_chain(uuid.uuid4(), [accepted()], T0, STEP)
    timeline = build_timeline(CASE, [*own, closed, *another_case])
    assert [e.event_id for e in timeline.events] == [own[0].event_id, closed.event_id]
    entry = timeline.events[1]
    assert (entry.causation_id, entry.cause_type, entry.depth, entry.since_cause_seconds) == (
        original_closure,
        None,
        0,
        None,
    )


def test_any_arrival_order_gives_the_same_timeline() -> None:
    events = chain(*HANDLED, CaseVerificationFailed(verified_by="s"), RESULT, *CLOSED_LOOP[5:])
    expected = build_timeline(CASE, events)
    shuffled = list(events)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert build_timeline(CASE, shuffled) == expected
    assert build_timeline(CASE, [*reversed(events), *events]) == expected  # duplicates too


def test_a_case_without_events_has_an_empty_timeline() -> None:
    timeline = build_timeline(CASE, [])
    assert (timeline.case_no, timeline.status, timeline.events, timeline.stages) == (None, None, [], [])
    assert render_text(timeline) == f"case -  id {CASE}  status -\nstages\n  none\n"


def test_the_text_shows_one_line_per_event_indented_by_its_cause_then_the_stages() -> None:
    events = chain(accepted(), JUDGED, ASSIGNED)
    a, j, s = (str(e.event_id)[:8] for e in events)
    assert render_text(build_timeline(CASE, events)).splitlines() == [
        f"case CL202611270000001  id {CASE}  status assigned",
        f"2026-11-27T01:00:00Z  case.accepted  intake  test/system  {a}",
        f"2026-11-27T01:12:05Z    case.judged  triage  test/system  {j} <- {a}  category=sanitation  sla_tier=general",
        f'2026-11-27T01:24:10Z      case.assigned  dispatch  test/system  {s} <- {j}  unit_id=U-1  reason="by list"',
        "stages",
        "  screening        0s",
        "  judgment         12m 05s",
        "  assignment       12m 05s",
        "  acknowledgement  open since 2026-11-27T01:24:10Z",
        "  total            open since 2026-11-27T01:00:00Z",
    ]


def test_the_text_keeps_a_long_chain_and_a_long_field_on_one_readable_line() -> None:
    note = "请尽快\n处理 " * 30
    urgings = [CaseUrged(urged_by="s", note="n", unit_id=f"U-{n}") for n in range(11)]
    events = causal_chain(CASE, [*urgings[:-1], CaseClosed(reason=ClosureReason.EVALUATED)], T0, STEP)
    events.append(
        new_event(
            CaseReopened(reason=note, reopen_count=1),
            case_id=CASE,
            actor=Actor(id="citizen", role=ActorRole.CITIZEN),
            occurred_at=T0 + timedelta(days=3),
            correlation_id=uuid.uuid4(),
            causation_id=events[-1].event_id,
        )
    )
    lines = render_text(build_timeline(CASE, events)).splitlines()
    deepest, reopened = lines[11], lines[12]
    assert deepest.startswith("2026-11-27T03:00:50Z" + "  " + "  " * 8 + "case.closed  supervision")
    assert reopened.startswith("2026-11-30T01:00:00Z" + "  " + "  " * 8 + "case.reopened  supervision  citizen/citizen")
    reason = reopened.split("reason=", 1)[1]
    assert reason == '"' + ("请尽快 处理 " * 30)[:59] + '…"'  # one line, cut at 60 characters, quoted


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (7.9, "7s"),
        (725, "12m 05s"),
        (3 * 3600 + 4 * 60 + 5, "3h 04m 05s"),
        (2 * 86400 + 3 * 3600 + 4 * 60 + 59, "2d 03h 04m"),
        (-90, "-1m 30s"),
    ],
)
def test_a_duration_reads_in_its_two_or_three_largest_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
