"""supervision's handlers and background jobs on a real database (SQLite and PostgreSQL), driven
by hand: the composed service, not started — events handed to it as a consumer's poll would hand
them, commands as a request would send them, a ManualClock, and callbacks answered by an
httpx.MockTransport. No broker: what is proven here is the logic of the units of work."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
)
from caseloop_events.contracts.envelope import Envelope, EventPayload, deterministic_id
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.supervision import (
    CLOCK_AND_NOTICE_EVENTS,
    CaseClosed,
    ClockKind,
    ClosureReason,
    FeedbackFailed,
    Rating,
    RegionMode,
    region_stream_id,
)
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.consumer import Incoming
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import Service
from caseloop_events.runtime.streams import StreamCache
from caseloop_events.testing.fixtures import causal_chain
from caseloop_supervision.adapters import queries
from caseloop_supervision.adapters.tables import feedback_deliveries
from caseloop_supervision.adapters.views import CasePage, CaseView
from caseloop_supervision.app import SUPERVISION, Supervision
from caseloop_supervision.config import SupervisionSettings
from caseloop_supervision.domain.decisions import EvaluateHandling, VerifyResult
from caseloop_supervision.domain.feedback import FeedbackPolicy
from caseloop_supervision.domain.model import FeedbackState
from caseloop_supervision.service_layer import commands, timers

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)
POLICY = FeedbackPolicy(backoff_base=timedelta(seconds=5), backoff_cap=timedelta(minutes=5), max_attempts=8)
CALLBACK = "http://source.example/callbacks/caseloop"
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(hours=1))


@pytest.fixture
async def services(database_url: str, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Supervision]:
    """supervision composed on the database, never started: no broker, no relay, no consumer, no timer."""
    settings = SupervisionSettings(
        database_url=database_url,
        CASELOOP_DATA_DIR=tmp_path,
        evaluation_window=WINDOW,
        feedback_backoff=POLICY.backoff_base.total_seconds(),
        feedback_backoff_cap=POLICY.backoff_cap.total_seconds(),
        feedback_max_attempts=POLICY.max_attempts,
    )
    service = Service(SUPERVISION, settings, KafkaSettings(caseloop_topic_namespace="test"), clock)
    await service.database.create_schema()
    try:
        yield service
    finally:
        await service.database.dispose()


def report(case_no: str, callback_url: str | None) -> dict[str, object]:
    return {
        "case_no": case_no,
        "source_system": "hotline-12345",
        "external_id": f"ext-{case_no}",
        "title": "垃圾堆积",
        "description": "小区门口垃圾堆积",
        "location": LOCATION,
        "callback_url": callback_url,
    }


def accepted(case_no: str, callback_url: str | None = None) -> CaseAccepted:
    return CaseAccepted(**report(case_no, callback_url), accepted_at=T0)


def judged(*campaign_ids: str) -> CaseJudged:
    return CaseJudged(
        category="sanitation",
        risk_level=3,
        campaign_ids=campaign_ids,
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        judged_by=JudgedBy.RULES,
        confidence=0.8,
    )


def assigned(unit_id: str, assisting: tuple[str, ...] = ()) -> CaseAssigned:
    return CaseAssigned(
        unit_id=unit_id,
        unit_name=f"unit {unit_id}",
        town_code="330110001",
        route=AssignmentRoute.RESPONSIBILITY_LIST,
        reason="r",
        assisting_unit_ids=assisting,
    )


def a_handled_case(callback_url: str | None = None) -> list[Envelope]:
    """A case up to its unit's reported result."""
    case_id = uuid.uuid4()
    return causal_chain(
        case_id,
        [
            accepted(f"CL{case_id.int % 10**9:09d}", callback_url),
            judged(),
            assigned("U-1"),
            CaseAcknowledged(unit_id="U-1", acknowledged_by="h"),
            CaseResultReported(unit_id="U-1", reported_by="h", summary="垃圾已清运"),
        ],
        T0,
        timedelta(minutes=1),
    )


def events_of(case_id: uuid.UUID, *payloads: EventPayload) -> list[Envelope]:
    return causal_chain(case_id, payloads, T0, timedelta(minutes=1))


async def consume(services: Supervision, *events: Envelope, replaying: bool = False) -> None:
    """What the consumer does with a poll of these records (those of types supervision reads), or,
    ``replaying``, what a replay does with a batch of them."""
    wanted = [
        Incoming("test", 0, offset, event, event.model_dump_json())
        for offset, event in enumerate(events)
        if services.wants(event.type)
    ]
    if replaying:
        await services.rebuild(wanted, [], StreamCache(100))
    else:
        await services.take(wanted, [])


async def verify(services: Supervision, case_id: uuid.UUID) -> None:
    command = VerifyResult(
        case_id=case_id, passed=True, by="sup-1", note="", now=services.clock.now(), correlation_id=uuid.uuid4()
    )
    await services.handle(command)


async def evaluate(services: Supervision, case_id: uuid.UUID, rating: Rating) -> None:
    command = EvaluateHandling(
        case_id=case_id, rating=rating, comment="", now=services.clock.now(), correlation_id=uuid.uuid4()
    )
    await services.handle(command)


async def case_of(services: Supervision, case_id: uuid.UUID) -> CaseView:
    return await queries.case_now(services.database, case_id, services.clock.now())


async def cases_listed(services: Supervision, **filters: object) -> CasePage:
    return await queries.list_cases(services.database, services.clock.now(), **filters)  # type: ignore[arg-type]


async def closing_round(services: Supervision) -> int:
    return await timers.close_cases_not_evaluated_in_time(services.handle, services.deps, services.clock)


async def notice_round(services: Supervision) -> int:
    return await timers.issue_due_notices(services.handle, services.deps, services.clock)


async def feedback_round(services: Supervision, http: httpx.AsyncClient) -> int:
    return await timers.deliver_due_feedback(services.handle, services.deps, services.clock, http)


async def emitted(services: Supervision, event_type: str | None = None) -> list[Envelope]:
    """What supervision put in its outbox (to be published), oldest first; without a type, all but
    the clock and notice events (the clock tests look at those)."""
    outbox = services.database.tables.outbox
    async with services.database.reading() as session:
        rows = await session.scalars(select(outbox.c.envelope).order_by(outbox.c.position))
        events = [Envelope.model_validate_json(row) for row in rows]
    if event_type is None:
        return [e for e in events if not isinstance(e.payload, CLOCK_AND_NOTICE_EVENTS)]
    return [e for e in events if e.type == event_type]


async def test_a_verified_case_closes_when_the_evaluation_window_has_passed_and_only_once(
    services: Supervision, clock: ManualClock
) -> None:
    events = a_handled_case()
    case_id = events[0].case_id
    await consume(services, *events)
    await verify(services, case_id)
    verified = (await emitted(services, "case.verified"))[-1]

    clock.advance(WINDOW - timedelta(seconds=1))
    assert await closing_round(services) == 0
    clock.advance(timedelta(seconds=1))
    assert await closing_round(services) == 1
    assert await closing_round(services) == 0, "a second round finds nothing to do"

    [closed] = await emitted(services, "case.closed")
    assert closed.payload == CaseClosed(reason=ClosureReason.NO_EVALUATION_IN_TIME)
    assert closed.causation_id == verified.event_id
    assert closed.event_id == deterministic_id(verified.event_id, "closed-no-evaluation-in-time")
    view = await case_of(services, case_id)
    assert (view.status, view.closure_reason) == (CaseStatus.CLOSED, ClosureReason.NO_EVALUATION_IN_TIME)


async def test_an_evaluated_case_is_left_to_its_evaluation_by_the_timer(
    services: Supervision, clock: ManualClock
) -> None:
    events = a_handled_case()
    case_id = events[0].case_id
    await consume(services, *events)
    await verify(services, case_id)
    await evaluate(services, case_id, Rating.UNSATISFIED)
    clock.advance(2 * WINDOW)
    assert await closing_round(services) == 0
    view = await case_of(services, case_id)
    assert (view.status, view.reopen_count) == (CaseStatus.REOPENED, 1)
    assert [e.type for e in await emitted(services)] == ["case.verified", "case.evaluated", "case.reopened"]


async def test_feedback_that_failed_once_is_retried_after_the_back_off_with_the_same_idempotency_key(
    services: Supervision, clock: ManualClock
) -> None:
    received: list[httpx.Request] = []

    def source_system(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(503 if len(received) == 1 else 204)

    events = a_handled_case(CALLBACK)
    case_id = events[0].case_id
    await consume(services, *events)
    await verify(services, case_id)
    verified = (await emitted(services, "case.verified"))[-1]
    [pending] = (await case_of(services, case_id)).feedback
    assert (pending.state, pending.about_event_id, pending.attempts) == (FeedbackState.PENDING, verified.event_id, 0)

    async with httpx.AsyncClient(transport=httpx.MockTransport(source_system)) as http:
        assert await feedback_round(services, http) == 1
        [retrying] = (await case_of(services, case_id)).feedback
        assert (retrying.state, retrying.attempts, retrying.error) == (FeedbackState.RETRYING, 1, "HTTP 503")
        assert retrying.next_attempt_at == clock.now() + timedelta(seconds=5)
        assert await feedback_round(services, http) == 0, "not due before the back-off"
        clock.advance(timedelta(seconds=5))
        assert await feedback_round(services, http) == 1
        assert await feedback_round(services, http) == 0, "delivered: never sent again"

    [delivered] = (await case_of(services, case_id)).feedback
    assert (delivered.state, delivered.attempts, delivered.status_code) == (FeedbackState.DELIVERED, 2, 204)
    delivery_id = str(deterministic_id(verified.event_id, "feedback"))
    assert [r.headers["Idempotency-Key"] for r in received] == [delivery_id, delivery_id]
    assert {r.headers["X-Caseloop-Event-Type"] for r in received} == {"case.verified"}
    assert [str(r.url) for r in received] == [CALLBACK, CALLBACK]
    body = json.loads(received[1].content)
    assert body["case_id"] == str(case_id)
    assert (body["external_id"], body["source_system"]) == (f"ext-{events[0].payload.case_no}", "hotline-12345")  # type: ignore[attr-defined]
    assert (body["type"], body["status"], body["result_summary"]) == ("case.verified", "verified", "垃圾已清运")
    failed, done = await emitted(services, "case.feedback_failed"), await emitted(services, "case.feedback_delivered")
    assert [e.event_id for e in failed] == [deterministic_id(verified.event_id, "feedback-attempt:1")]
    assert [e.event_id for e in done] == [deterministic_id(verified.event_id, "feedback-attempt:2")]


async def test_feedback_gives_up_after_the_last_attempt(services: Supervision, clock: ManualClock) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    services.deps = dataclasses.replace(services.deps, feedback_policy=dataclasses.replace(POLICY, max_attempts=2))
    events = a_handled_case(CALLBACK)
    case_id = events[0].case_id
    await consume(services, *events)
    await verify(services, case_id)
    async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as http:
        assert await feedback_round(services, http) == 1
        clock.advance(timedelta(seconds=5))
        assert await feedback_round(services, http) == 1
        clock.advance(timedelta(days=1))
        assert await feedback_round(services, http) == 0

    [gave_up] = (await case_of(services, case_id)).feedback
    assert (gave_up.state, gave_up.attempts, gave_up.next_attempt_at) == (FeedbackState.GAVE_UP, 2, None)
    assert gave_up.error is not None
    assert gave_up.error.startswith("ConnectError")
    last = (await emitted(services, "case.feedback_failed"))[-1]
    assert isinstance(last.payload, FeedbackFailed)
    assert last.payload.gave_up


async def test_events_read_from_the_log_send_no_feedback(services: Supervision) -> None:
    """Reading supervision's own verification and closure back from the log (a replay, a restore
    from the topic) queues nothing: only emitting them does, so the source system is not told twice."""
    events = a_handled_case(CALLBACK)
    case_id = events[0].case_id
    await consume(services, *events)
    await verify(services, case_id)
    await evaluate(services, case_id, Rating.SATISFIED)
    own = await emitted(services)

    # The same verification, evaluation and closure, as another case's log would hold them.
    other = a_handled_case(CALLBACK)
    renamed = {e.event_id: uuid.uuid4() for e in own} | {events[-1].event_id: other[-1].event_id}
    copies = [
        e.model_copy(
            update={
                "case_id": other[0].case_id,
                "event_id": renamed[e.event_id],
                "causation_id": renamed.get(e.causation_id) if e.causation_id else None,
            }
        )
        for e in own
    ]
    await consume(services, *other, *copies)
    assert (await case_of(services, other[0].case_id)).status is CaseStatus.CLOSED
    async with services.database.reading() as session:
        queued = await session.scalar(
            select(func.count())
            .select_from(feedback_deliveries)
            .where(feedback_deliveries.c.case_id == str(other[0].case_id))
        )
    assert queued == 0


async def test_closing_a_case_closes_the_duplicates_and_merged_cases_that_follow_it(
    services: Supervision,
) -> None:
    original = a_handled_case()
    original_id, original_no = original[0].case_id, original[0].payload.case_no  # type: ignore[attr-defined]
    duplicate, merged, unmerged, second_hand = (uuid.uuid4() for _ in range(4))

    def linked(to: uuid.UUID, to_no: str, case_no: str, callback_url: str | None = None) -> CaseLinkedAsDuplicate:
        return CaseLinkedAsDuplicate(
            **report(case_no, callback_url),
            original_case_id=to,
            original_case_no=to_no,
            similarity=0.9,
            reason="same heap",
        )

    merge = CasesMerged(into_case_id=original_id, into_case_no=original_no, merged_by="sup", reason="same")
    await consume(
        services,
        *original,
        *events_of(duplicate, linked(original_id, original_no, "CL-D", CALLBACK)),
        *events_of(merged, accepted("CL-M"), merge),
        *events_of(
            unmerged,
            linked(original_id, original_no, "CL-U"),
            CaseUnmerged(from_case_id=original_id, unmerged_by="sup", reason="different"),
            accepted("CL-U"),
        ),
        # A duplicate of the duplicate: it closes when the case it follows does.
        *events_of(second_hand, linked(duplicate, "CL-D", "CL-S")),
    )
    await verify(services, original_id)
    await evaluate(services, original_id, Rating.SATISFIED)

    closures = {e.case_id: e for e in await emitted(services, "case.closed")}
    assert set(closures) == {original_id, duplicate, merged, second_hand}
    for follower, followed in ((duplicate, original_id), (merged, original_id), (second_hand, duplicate)):
        closed = closures[follower]
        assert closed.payload == CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE, original_case_id=followed)
        assert closed.causation_id == closures[followed].event_id
        assert closed.event_id == deterministic_id(closures[followed].event_id, f"closed-with-original:{follower}")
        view = await case_of(services, follower)
        assert (view.status, view.closed_with_case_id) == (CaseStatus.CLOSED, followed)
    assert (await case_of(services, unmerged)).status is CaseStatus.ACCEPTED
    [feedback] = (await case_of(services, duplicate)).feedback
    assert (feedback.about_event_id, feedback.state) == (closures[duplicate].event_id, FeedbackState.PENDING)


async def test_a_link_read_after_its_original_closed_closes_the_follower_then_but_not_in_a_replay(
    services: Supervision, clock: ManualClock
) -> None:
    original = a_handled_case()
    original_id, original_no = original[0].case_id, original[0].payload.case_no  # type: ignore[attr-defined]
    await consume(services, *original)
    await verify(services, original_id)
    await evaluate(services, original_id, Rating.SATISFIED)
    [original_closure] = await emitted(services, "case.closed")
    clock.advance(timedelta(minutes=5))

    def merged_into_original(case_no: str) -> list[Envelope]:
        merge = CasesMerged(into_case_id=original_id, into_case_no=original_no, merged_by="sup", reason="same")
        return events_of(uuid.uuid4(), accepted(case_no), merge)

    late, replayed = merged_into_original("CL-LATE"), merged_into_original("CL-REPLAYED")
    await consume(services, *late)
    await consume(services, *replayed, replaying=True)

    closed_late = [e for e in await emitted(services, "case.closed") if e.case_id == late[0].case_id]
    assert [e.causation_id for e in closed_late] == [original_closure.event_id]
    assert closed_late[0].occurred_at >= late[-1].occurred_at
    assert (await case_of(services, late[0].case_id)).status is CaseStatus.CLOSED
    assert (await case_of(services, replayed[0].case_id)).status is CaseStatus.MERGED


async def test_the_case_list_filters_by_campaign_by_repeated_returns_and_by_any_unit_on_the_case(
    services: Supervision,
) -> None:
    bounced, straight = uuid.uuid4(), uuid.uuid4()
    returned = CaseReturned(unit_id="U-1", returned_by="h", reason="not ours")
    await consume(
        services,
        *events_of(
            bounced,
            accepted("CL-B"),
            judged("C-1", "C_2"),
            assigned("U-1"),
            returned,
            assigned("U-2"),
            returned,
            assigned("T-1", assisting=("U-9", "U-10")),
        ),
        *events_of(straight, accepted("CL-S"), judged("C-12"), assigned("U-1")),
    )

    async def listed(**filters: object) -> set[uuid.UUID]:
        page = await cases_listed(services, **filters)
        assert page.total == len(page.items)
        return {item.case_id for item in page.items}

    assert await listed(campaign_id="C-1") == {bounced}
    assert await listed(campaign_id="C_2") == {bounced}
    assert await listed(campaign_id="C-12") == {straight}
    assert await listed(campaign_id="C%") == set(), "LIKE wildcards in a filter are plain characters"
    assert await listed(returned_more_than_once=True) == {bounced}
    assert await listed(returned_more_than_once=False) == {straight}
    assert await listed(unit_id="U-1") == {straight}, "a unit that returned the case no longer has it"
    assert await listed(unit_id="T-1") == {bounced}
    assert await listed(unit_id="U-9") == {bounced}
    assert await listed(unit_id="U-1", status="assigned") == {straight}
    view = await case_of(services, bounced)
    assert (view.returns, view.unit_id, view.assisting_unit_ids) == (2, "T-1", ["U-9", "U-10"])
    assert view.holder.id == "T-1"


async def test_the_notice_timer_issues_each_rung_once_and_a_mode_switch_retimes_open_cases_in_one_transaction(
    services: Supervision, clock: ManualClock
) -> None:
    case_id = uuid.uuid4()
    acknowledged = a_handled_case()[:4]
    events = events_of(case_id, *(e.payload for e in acknowledged))
    await consume(services, *events)
    view = await case_of(services, case_id)
    assert view.deadline is not None
    assert view.deadline.clock is ClockKind.HANDLING
    started, due = view.deadline.started_at, view.deadline.due_at
    assert due - started == timedelta(days=7)

    clock.advance(due - clock.now() + timedelta(minutes=1))  # past the warning and the deadline
    assert await notice_round(services) == 2
    assert await notice_round(services) == 0, "each rung once"
    page = await cases_listed(services, overdue=True, notice="overdue", level="village")
    assert [c.case_id for c in page.items] == [case_id]

    switch = commands.SwitchRegionMode(
        region_code="330110001",
        mode=RegionMode.EMERGENCY,
        by="commander-1",
        reason="flood",
        now=clock.now(),
        correlation_id=uuid.uuid4(),
    )
    switched = await commands.switch_region_mode(services.handle, services.deps.store, switch)
    assert (switched.mode, switched.cases_affected) == (RegionMode.EMERGENCY, 1)
    again = await commands.switch_region_mode(services.handle, services.deps.store, switch)
    assert again.cases_affected == 0, "already in that mode"
    view = await case_of(services, case_id)
    assert view.sla_profile == "emergency"
    assert view.deadline is not None
    assert view.deadline.due_at == started + timedelta(hours=24)
    assert [n.rung for n in view.notices] == ["warning", "overdue"], "rungs of the phase are not issued again"
    assert await notice_round(services) == 2, "yellow and red: 36 and 48 hours are long past"
    assert (await queries.region_mode(services.database, "330110001"))[0] is RegionMode.EMERGENCY
    switched_events = await emitted(services, "region.mode_switched")
    assert len(switched_events) == 1
    assert switched_events[0].case_id == region_stream_id("330110001")


async def test_a_mode_switch_times_the_next_event_of_a_case_of_the_region_at_once(
    services: Supervision, clock: ManualClock
) -> None:
    """The regions in emergency mode are kept for a second; a switch this process makes forgets them,
    so the acknowledgement right after it starts the handling clock on the emergency profile (24
    hours), not the general one (7 days)."""
    case_id = uuid.uuid4()
    up_to_ack = events_of(case_id, *(e.payload for e in a_handled_case()[:4]))
    await consume(services, *up_to_ack[:3])
    await services.deps.store.regions_in_emergency_mode()  # read, and kept
    switch = commands.SwitchRegionMode(
        region_code="330110001",
        mode=RegionMode.EMERGENCY,
        by="c",
        reason="flood",
        now=clock.now(),
        correlation_id=uuid.uuid4(),
    )
    await commands.switch_region_mode(services.handle, services.deps.store, switch)
    await consume(services, up_to_ack[3])
    view = await case_of(services, case_id)
    assert view.deadline is not None
    assert view.deadline.clock is ClockKind.HANDLING
    assert view.deadline.due_at - view.deadline.started_at == timedelta(hours=24)
