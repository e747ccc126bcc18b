"""The two adapters of ``SupervisionReads`` answer alike: the same rows of region_modes, case_links,
cases and feedback_deliveries, written by the same unit-of-work changes to a database (SQLite and
PostgreSQL) and to an in-memory store, then every question the handlers and timers ask, asked of
both. The unit tests trust the in-memory answers because of this test: a filter, an ordering or a
limit changed in one adapter and not in the other fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.unit_of_work import Changes
from caseloop_events.testing.fakes import InMemoryStore
from caseloop_supervision.adapters.memory import InMemorySupervisionStore
from caseloop_supervision.adapters.store import SupervisionStore, TownCaseCounts
from caseloop_supervision.adapters.tables import case_links, cases, feedback_deliveries, region_modes, runtime_tables
from caseloop_supervision.domain.model import SupervisedCase
from caseloop_supervision.service_layer.supervising import SupervisionReads

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
DISTRICT, TOWN, OTHER_TOWN, THIRD_TOWN = "330110", "330110001", "330110002", "330110003"


def case(n: int) -> UUID:
    return UUID(int=n)


def delivery(n: int) -> str:
    return str(UUID(int=1000 + n))


def region_mode(region_code: str, mode: str) -> dict[str, Any]:
    return {
        "region_code": region_code,
        "region_level": "district" if region_code == DISTRICT else "town",
        "mode": mode,
        "switched_at": NOW - timedelta(days=1),
        "switched_by": "li.na",
        "switch_event_id": str(UUID(int=9000 + int(region_code))),
    }


def link(follower: int, original: int, *, active: bool = True) -> dict[str, Any]:
    return {
        "follower_case_id": str(case(follower)),
        "original_case_id": str(case(original)),
        "kind": "duplicate",
        "active": active,
        "updated_at": NOW,
    }


def case_row(
    n: int,
    status: str,
    town_code: str | None = TOWN,
    *,
    next_notice_at: datetime | None = None,
    awaiting_evaluation_since: datetime | None = None,
    due_at: datetime | None = None,
    notice_level: str | None = None,
) -> dict[str, Any]:
    return {
        "case_id": str(case(n)),
        "case_no": f"CL2026112300000{n:02d}",
        "status": status,
        "title": "小区门口垃圾堆积",
        "source_system": "hotline-12345",
        "town_code": town_code,
        "village_code": None,
        "grid_code": None,
        "category": "sanitation",
        "risk_level": 3,
        "unit_id": "U-SANITATION-1",
        "assisting_unit_ids": ",",
        "campaign_ids": ",",
        "returns": 0,
        "holder_kind": "unit",
        "holder_id": "U-SANITATION-1",
        "accepted_at": NOW - timedelta(days=5),
        "awaiting_evaluation_since": awaiting_evaluation_since,
        "closed_at": None,
        "due_at": due_at,
        "notice_rung": None,
        "notice_level": notice_level,
        "next_notice_at": next_notice_at,
        "sla_profile": "normal",
        "updated_at": NOW,
        "view": "{}",
    }


def delivery_row(n: int, state: str, next_attempt_at: datetime | None, attempts: int = 0) -> dict[str, Any]:
    return {
        "delivery_id": delivery(n),
        "case_id": str(case(n)),
        "url": "http://source.example/callbacks/caseloop",
        "about_event_id": str(UUID(int=2000 + n)),
        "about_type": "case.verified",
        "body": '{"status": "verified"}',
        "attempts": attempts,
        "state": state,
        "next_attempt_at": next_attempt_at,
        "last_status_code": 503 if attempts else None,
        "last_error": "HTTP 503" if attempts else None,
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(minutes=30),
    }


REGION_MODES = [
    region_mode(TOWN, "emergency"),
    region_mode(OTHER_TOWN, "normal"),  # switched back
    region_mode(THIRD_TOWN, "emergency"),
]
CASE_LINKS = [link(12, 1), link(11, 1), link(13, 1, active=False), link(14, 2)]
CASES = [
    case_row(1, "acknowledged", next_notice_at=NOW - timedelta(hours=1), due_at=NOW - timedelta(hours=1)),
    case_row(2, "assigned", next_notice_at=NOW - timedelta(hours=2), due_at=NOW + timedelta(hours=1)),
    case_row(
        3,
        "acknowledged",
        OTHER_TOWN,
        next_notice_at=NOW - timedelta(hours=1),
        due_at=NOW - timedelta(hours=30),
        notice_level="district",
    ),
    case_row(4, "acknowledged", next_notice_at=NOW + timedelta(hours=1), notice_level="town"),
    case_row(5, "verified", awaiting_evaluation_since=NOW - timedelta(hours=80)),
    case_row(6, "verified", OTHER_TOWN, awaiting_evaluation_since=NOW - timedelta(hours=100)),
    case_row(7, "verified", awaiting_evaluation_since=NOW - timedelta(hours=1)),
    case_row(
        8,
        "closed",
        awaiting_evaluation_since=NOW - timedelta(hours=90),
        due_at=NOW - timedelta(days=3),
        notice_level="district",
    ),
    case_row(9, "rejected"),
    case_row(10, "duplicate"),
    case_row(11, "merged"),
    case_row(12, "returned"),
    case_row(13, "unknown", None),
    case_row(14, "reopened", None, notice_level="village"),
    case_row(15, "accepted", next_notice_at=NOW, due_at=NOW),
]
DELIVERIES = {
    n: delivery_row(n, state, at, attempts)
    for n, state, at, attempts in [
        (1, "pending", NOW - timedelta(minutes=1), 0),
        (2, "retrying", NOW - timedelta(minutes=5), 1),
        (3, "retrying", NOW + timedelta(minutes=5), 2),
        (4, "delivered", NOW - timedelta(hours=1), 1),
        (5, "gave_up", None, 8),
        (6, "pending", NOW - timedelta(minutes=1), 0),
    ]
}

Question = Callable[[SupervisionReads], Awaitable[object]]

#: Every question of the port, each with the answer the rows above call for — so the rows exercise
#: each filter, ordering and limit, and two adapters that both answered nothing would not agree.
QUESTIONS: dict[str, tuple[Question, object]] = {
    "regions in emergency mode": (lambda r: r.regions_in_emergency_mode(), frozenset({TOWN, THIRD_TOWN})),
    "active followers, by id": (lambda r: r.followers_of(case(1)), [case(11), case(12)]),
    "followers of another case": (lambda r: r.followers_of(case(2)), [case(14)]),
    "followers of a case nobody follows": (lambda r: r.followers_of(case(3)), []),
    "due for notices, earliest first, ties by id": (
        lambda r: r.due_for_notices(NOW, 10),
        [case(2), case(1), case(3), case(15)],
    ),
    "due for notices, limited": (lambda r: r.due_for_notices(NOW, 2), [case(2), case(1)]),
    "awaiting evaluation, longest first": (
        lambda r: r.awaiting_evaluation_since(NOW - timedelta(hours=72), 10),
        [case(6), case(5)],
    ),
    "awaiting evaluation, limited": (lambda r: r.awaiting_evaluation_since(NOW - timedelta(hours=72), 1), [case(6)]),
    "open cases of a town": (
        lambda r: r.open_cases_in(TOWN),
        [case(1), case(2), case(4), case(5), case(7), case(12), case(15)],
    ),
    "open cases of another town": (lambda r: r.open_cases_in(OTHER_TOWN), [case(3), case(6)]),
    "open cases of the district": (
        lambda r: r.open_cases_in(None),
        [case(n) for n in (1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15)],
    ),
    "open cases of a town with none": (lambda r: r.open_cases_in("330110009"), []),
    "due deliveries, longest due first, ties by id": (
        lambda r: r.due_deliveries(NOW, 10),
        [DELIVERIES[2], DELIVERIES[1], DELIVERIES[6]],
    ),
    "due deliveries, limited": (lambda r: r.due_deliveries(NOW, 2), [DELIVERIES[2], DELIVERIES[1]]),
    "a delivery": (lambda r: r.delivery(delivery(3)), DELIVERIES[3]),
    "a delivery that is not there": (lambda r: r.delivery(delivery(99)), None),
    # Past its deadline strictly (case 15 is due this very moment); escalated: a notice to the town
    # or the district, not the village; a closed case counts for nothing, however late it was.
    "open, overdue and escalated cases by town, the cases of no town first": (
        lambda r: r.case_counts_by_town(NOW),
        [
            TownCaseCounts(None, open=2, overdue=0, escalated=0),
            TownCaseCounts(TOWN, open=7, overdue=1, escalated=1),
            TownCaseCounts(OTHER_TOWN, open=2, overdue=1, escalated=1),
        ],
    ),
}


def the_rows() -> Changes:
    """The rows, as a unit of work writes them (deliberately not in key order)."""
    return Changes(
        rows={
            region_modes: {(row["region_code"],): row for row in reversed(REGION_MODES)},
            case_links: {(row["follower_case_id"],): row for row in CASE_LINKS},
            cases: {(row["case_id"],): row for row in reversed(CASES)},
            feedback_deliveries: {(row["delivery_id"],): row for row in DELIVERIES.values()},
        }
    )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, runtime_tables, "test.supervision", ManualClock(NOW))
    await database.create_schema()
    try:
        yield database
    finally:
        await database.dispose()


async def test_the_sql_and_the_in_memory_adapter_answer_every_question_alike_on_the_same_rows(
    database: Database,
) -> None:
    memory: InMemoryStore[SupervisedCase] = InMemoryStore()
    for store in (database, memory):
        await store.write(the_rows(), NOW)
    sql: SupervisionReads = SupervisionStore(database)
    in_memory: SupervisionReads = InMemorySupervisionStore(memory)

    answers = {name: (await ask(sql), await ask(in_memory)) for name, (ask, _) in QUESTIONS.items()}

    assert {name: both for name, both in answers.items() if both[0] != both[1]} == {}, "the adapters disagree"
    assert {name: sql_answer for name, (sql_answer, _) in answers.items()} == {
        name: expected for name, (_, expected) in QUESTIONS.items()
    }
