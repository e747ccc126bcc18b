"""supervision's handlers as the runtime runs them — a poll's events recorded, the clocks they call
for decided and projected into the case list, the notice timer's command and a region's mode switch
decided and written at once — on the in-memory store of ``caseloop_events.testing.fakes``: no
database, no broker.

Most of supervision is not here: whenever it decides on a case placed in a town (any case intake
accepted), it asks ``SupervisionStore`` which regions are in emergency mode, and a closure asks it
for the cases that follow the closed one — SQL on its projections, which the in-memory store cannot
answer. Verification, evaluation, closure, urging, extension decisions and feedback are tested on
SQLite and PostgreSQL in the integration tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned
from caseloop_events.contracts.envelope import Actor, Envelope, EventPayload, new_event
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation, CaseRejected, RejectionReason
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import (
    ClockKind,
    DeadlineReason,
    DeadlineSet,
    RegionMode,
    SupervisionNoticeIssued,
    region_stream_id,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.testing.fakes import FakeService, out_of_reach
from caseloop_supervision.adapters.store import SupervisionStore
from caseloop_supervision.adapters.tables import cases, region_modes
from caseloop_supervision.app import SUPERVISION
from caseloop_supervision.domain.clocks import ClockRules, reconcile_clocks
from caseloop_supervision.domain.model import SupervisedCase, evolve
from caseloop_supervision.service_layer.commands import IssueDueNotices, SwitchRegionMode, UnknownRegion
from caseloop_supervision.service_layer.supervising import SupervisionDeps

RULES = ClockRules(load_reference_data(default_reference_dir()))
#: Monday 23 November 2026, 09:00 region time: no holiday near, the clocks count plain hours.
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)
UNIT = "U-SANITATION-1"
SUPERVISOR = "li.na"

Supervision = FakeService[SupervisionDeps, SupervisedCase]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(hours=1))


@pytest.fixture
def supervision(clock: ManualClock) -> Supervision:
    return FakeService(SUPERVISION, SupervisionDeps(rules=RULES, store=out_of_reach(SupervisionStore)), clock)


def judged(tier: SlaTierName = SlaTierName.URGENT) -> CaseJudged:
    return CaseJudged(
        category="sanitation",
        risk_level=3,
        handling_level=HandlingLevel.TOWN,
        sla_tier=tier,
        judged_by=JudgedBy.RULES,
        confidence=0.8,
    )


def assigned() -> CaseAssigned:
    return CaseAssigned(
        unit_id=UNIT,
        unit_name="环卫所",
        town_code=LOCATION.town_code,
        route=AssignmentRoute.RESPONSIBILITY_LIST,
        reason="职责清单",
    )


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


def an_acknowledged_urgent_case() -> tuple[uuid.UUID, list[Envelope]]:
    """Accepted, judged urgent (24 hours to handle), assigned and acknowledged at T0 + 1 h."""
    case_id = uuid.uuid4()
    accepted = CaseAccepted(
        case_no="CL202611230000001",
        source_system="hotline-12345",
        external_id="HL-1",
        title="小区门口垃圾堆积",
        description="垃圾三天没人清运",
        location=LOCATION,
        accepted_at=T0,
    )
    return case_id, as_supervision_lived_it(
        case_id,
        (accepted, T0),
        (judged(), T0 + timedelta(minutes=1)),
        (assigned(), T0 + timedelta(minutes=2)),
        (CaseAcknowledged(unit_id=UNIT, acknowledged_by="wang.wei"), T0 + timedelta(hours=1)),
    )


def switching(region_code: str, mode: RegionMode, at: datetime = T0) -> SwitchRegionMode:
    return SwitchRegionMode(
        region_code=region_code, mode=mode, by=SUPERVISOR, reason="防汛应急响应", now=at, correlation_id=uuid.uuid4()
    )


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
