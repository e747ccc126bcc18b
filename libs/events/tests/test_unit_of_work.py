"""The unit of work keeps a locked case's log for the rest of its transaction (a consumer batch
handles many events of one case in one transaction) and never shows what was rolled back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from caseloop_events.contracts.clock import SystemClock
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, new_event
from caseloop_events.contracts.supervision import CaseVerified
from caseloop_events.runtime.consumer import is_transient
from caseloop_events.runtime.storage import define_runtime_tables, insert_row_ignoring_duplicates
from caseloop_events.runtime.unit_of_work import CaseLogs, Database

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def a_verified_event(case_id: uuid.UUID, minutes: int) -> Envelope:
    return new_event(
        CaseVerified(verified_by="supervisor-1"),
        case_id=case_id,
        actor=Actor(id="supervisor-1", role=ActorRole.SUPERVISOR),
        occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id=uuid.uuid4(),
    )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, define_runtime_tables(MetaData()), "caseloop.supervision.v1", SystemClock())
    await db.create_schema()
    yield db
    await db.dispose()


async def test_a_locked_case_shows_what_the_transaction_recorded_in_causal_order(database: Database) -> None:
    case_id = uuid.uuid4()
    first, second, third = (a_verified_event(case_id, m) for m in (1, 2, 3))
    async with database.transaction() as uow:
        await uow.record(second)
    async with database.transaction() as uow:
        assert await uow.lock_case(case_id) == [second]
        await uow.record(third)
        await uow.record(first)
        await uow.record(third)  # recorded twice: kept once
        assert await uow.case_events(case_id) == [first, second, third]
        assert await uow.lock_case(case_id) == [first, second, third], "locking again reads the kept log"
    assert await database.case_events(case_id) == [first, second, third]


async def test_locking_a_case_counts_the_locks_in_its_stream_version(database: Database) -> None:
    case_id = uuid.uuid4()
    for _ in range(3):
        async with database.transaction() as uow:
            await uow.lock_case(case_id)
            await uow.lock_case(case_id)  # the same transaction: one lock
    streams = database.tables.case_streams
    async with database.reading() as session:
        version = await session.scalar(select(streams.c.version).where(streams.c.case_id == str(case_id)))
    assert version == 3


async def test_a_rolled_back_transaction_leaves_nothing_for_the_next_one(database: Database) -> None:
    case_id = uuid.uuid4()
    kept, undone = a_verified_event(case_id, 1), a_verified_event(case_id, 2)

    async def record_then_fail() -> None:
        async with database.transaction() as uow:
            await uow.lock_case(case_id)
            await uow.record(undone)
            raise RuntimeError("the handler failed")

    async with database.transaction() as uow:
        await uow.lock_case(case_id)
        await uow.record(kept)
    with pytest.raises(RuntimeError):
        await record_then_fail()
    async with database.transaction() as uow:
        assert await uow.lock_case(case_id) == [kept]


async def test_a_row_naming_a_column_the_table_lacks_is_refused_not_dropped(database: Database) -> None:
    async with database.transaction() as uow:
        with pytest.raises(ValueError, match="no column"):
            await insert_row_ignoring_duplicates(
                uow.session, database.tables.processed_events, {"event_id": "x", "processed_at": T0, "procesed": 1}
            )


class _LostRace(Exception):
    sqlstate = "40P01"


def test_a_deadlock_or_a_serialization_failure_is_retried_not_charged_to_the_event() -> None:
    assert is_transient(DBAPIError("UPDATE …", {}, _LostRace()))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert not is_transient(DBAPIError("INSERT …", {}, Exception("check constraint violated")))
    assert not is_transient(ValueError("the handler's own bug"))


async def test_logs_kept_across_transactions_are_neither_read_again_nor_written_twice(database: Database) -> None:
    """A replay keeps the parsed logs of the cases it met (``CaseLogs``): a later transaction uses
    the kept log without reading it, recording an event the log holds is a no-op, and the least
    recently used case goes when there are more than ``max_cases``."""
    kept = CaseLogs(max_cases=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first_of_a, second_of_a = a_verified_event(a, 1), a_verified_event(a, 2)
    async with database.transaction(kept) as uow:
        await uow.record_many([first_of_a, a_verified_event(b, 1)])
        await uow.lock_case(a)
        await uow.lock_case(b)
        await uow.record(second_of_a)
    assert list(kept) == [b, a], "a, recorded to last, was used most recently"
    assert kept[a] == [first_of_a, second_of_a]

    # A row written behind the replay's back is not seen: the kept log is what the case holds.
    async with database.transaction() as uow:
        await uow.record(a_verified_event(a, 3))
    async with database.transaction(kept) as uow:
        assert await uow.lock_case(a) == [first_of_a, second_of_a], "the kept log, not a read"
        await uow.record(second_of_a)  # held by the log: no second row, no error
        await uow.lock_case(c)
    assert list(kept) == [a, c], "b, used least recently, went"
    assert len(await database.case_events(a)) == 3, "the database does hold the third event"


async def test_a_query_session_on_postgresql_runs_outside_a_transaction_and_a_write_inside_one(
    database: Database,
) -> None:
    """Queries cost one round trip each on PostgreSQL (no BEGIN and ROLLBACK around them); the same
    pooled connection, taken back for a write, is in a transaction again. (SQLite runs in the
    process, where a transaction costs no round trip: there only the rows are checked.)"""
    on_postgresql = database.engine.dialect.name == "postgresql"

    async def in_a_transaction(session: AsyncSession) -> bool | None:
        if not on_postgresql:
            return None
        connection = await session.connection()
        raw = connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
        return bool(raw._connection.is_in_transaction())  # type: ignore[union-attr]

    for _ in range(2):
        async with database.reading() as session:
            await session.execute(select(database.tables.checkpoints))
            assert await in_a_transaction(session) in (False, None)
        async with database.transaction() as uow:
            await uow.save_checkpoints("c", {("t", 0): 5, ("t", 1): 7})
            assert await in_a_transaction(uow.session) in (True, None)
    async with database.reading() as session:
        rows = await session.execute(
            select(database.tables.checkpoints.c.partition, database.tables.checkpoints.c.next_offset)
        )
        assert sorted(rows.all()) == [(0, 5), (1, 7)]
