"""dispatch's handlers as the runtime runs them — a poll's events recorded, handled and projected,
a command decided and written at once — on the in-memory store of ``caseloop_events.testing.fakes``:
no database, no broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_dispatch.adapters.tables import assignments
from caseloop_dispatch.app import DISPATCH
from caseloop_dispatch.domain.model import AcknowledgeCase, DispatchCase, NotAssignedToThisUnit, ReturnCase
from caseloop_dispatch.service_layer.handlers import DispatchDeps
from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import CaseAssigned
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import ClockKind, ClockStopped
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.testing.fakes import FakeService
from caseloop_events.testing.fixtures import causal_chain

GRID = "3301100010010101"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def dispatch() -> FakeService[DispatchDeps, DispatchCase]:
    reference = load_reference_data(default_reference_dir())
    return FakeService(DISPATCH, DispatchDeps(reference=reference), ManualClock(T0 + timedelta(hours=1)))


def an_accepted_and_judged_case(category: str = "road_damage") -> tuple[uuid.UUID, list[Envelope]]:
    case_id = uuid.uuid4()
    events = causal_chain(
        case_id,
        [
            CaseAccepted(
                case_no="CL202603020000001",
                source_system="hotline-12345",
                external_id=str(case_id),
                title="路面塌陷",
                description="人行道塌了一个坑",
                location=CaseLocation(
                    grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]
                ),
                accepted_at=T0,
            ),
            CaseJudged(
                category=category,
                risk_level=3,
                handling_level=HandlingLevel.TOWN,
                sla_tier=SlaTierName.GENERAL,
                judged_by=JudgedBy.RULES,
                confidence=0.9,
            ),
        ],
        T0,
        timedelta(minutes=1),
    )
    return case_id, events


async def test_a_poll_with_a_cases_acceptance_and_judgment_assigns_it_once_and_projects_the_assignment(
    dispatch: FakeService[DispatchDeps, DispatchCase],
) -> None:
    case_id, events = an_accepted_and_judged_case()
    emitted = await dispatch.take(*events)
    [assigned] = emitted
    assert isinstance(assigned.payload, CaseAssigned)
    assert assigned.causation_id == events[1].event_id
    [row] = dispatch.store.rows(assignments)
    assert (row["case_id"], row["status"], row["unit_id"]) == (str(case_id), "assigned", assigned.payload.unit_id)
    assert dispatch.store.writes == 1, "one unit of work: the events, the assignment and the row at once"

    assert await dispatch.take(*events) == [], "the same poll again: each event is in its stream already"


async def test_supervisions_clock_events_are_not_read_and_change_nothing(
    dispatch: FakeService[DispatchDeps, DispatchCase],
) -> None:
    case_id, events = an_accepted_and_judged_case()
    await dispatch.take(*events)
    stopped = causal_chain(
        case_id,
        [
            ClockStopped(
                clock=ClockKind.ACKNOWLEDGEMENT,
                stopped_at=T0,
                due_at=T0 + timedelta(hours=1),
                reason="acknowledged",
                on_time=True,
            )
        ],
        T0 + timedelta(minutes=5),
        timedelta(minutes=1),
    )
    writes = dispatch.store.writes
    assert await dispatch.take(*stopped) == []
    assert dispatch.store.writes == writes, "no handler declared for it: nothing to write"
    assert len(dispatch.events_of(case_id)) == 3


async def test_a_command_acts_on_the_case_as_the_store_holds_it_and_projects_what_it_decided(
    dispatch: FakeService[DispatchDeps, DispatchCase],
) -> None:
    case_id, events = an_accepted_and_judged_case()
    [assigned] = await dispatch.take(*events)
    assert isinstance(assigned.payload, CaseAssigned)
    unit = assigned.payload.unit_id

    with pytest.raises(NotAssignedToThisUnit):
        await dispatch.handle(AcknowledgeCase(case_id=case_id, unit_id="U-POLICE", by="x", now=T0))
    view = await dispatch.handle(AcknowledgeCase(case_id=case_id, unit_id=unit, by="wang.wei", now=T0))
    assert view.status is CaseStatus.ACKNOWLEDGED
    returned = await dispatch.handle(
        ReturnCase(case_id=case_id, unit_id=unit, by="wang.wei", reason="不归我们管", now=T0 + timedelta(minutes=3))
    )
    assert returned.unit_id != unit, "re-routed in the same unit of work, never back to the unit that returned it"
    [row] = dispatch.store.rows(assignments)
    assert (row["unit_id"], row["returns"]) == (returned.unit_id, 1)
    assert [e.type for e in dispatch.store.published] == [
        "case.assigned",
        "case.acknowledged",
        "case.returned",
        "case.assigned",
    ]
