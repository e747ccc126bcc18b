"""The unit of work on real databases: streams read at once, everything written at once, and never
over a write it did not see (ADR 0014)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, new_event
from caseloop_events.contracts.supervision import CaseVerified
from caseloop_events.runtime.consumer import is_transient
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.service import Service
from caseloop_events.runtime.unit_of_work import Checkpoint, KeyedLocks, VersionConflict
from caseloop_events.testing.probe import (
    Close,
    NotVerified,
    ProbeCase,
    ProbeDeps,
    Verify,
    an_acknowledgement,
    probe_cases,
)

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
Probe = Service[Any, ProbeDeps, Any]


def a_verification_at(case_id: uuid.UUID, minutes: int) -> Envelope:
    return new_event(
        CaseVerified(verified_by=f"supervisor-{minutes}"),
        case_id=case_id,
        actor=Actor(id="supervisor-1", role=ActorRole.SUPERVISOR),
        occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id=uuid.uuid4(),
    )


async def test_a_unit_of_work_shows_what_it_recorded_in_causal_order_and_writes_it_once(probe: Probe) -> None:
    case_id = uuid.uuid4()
    first, second, third = (a_verification_at(case_id, m) for m in (1, 2, 3))
    uow = probe.unit_of_work()
    await uow.load(case_id)
    uow.emit(second)
    await probe.commit(uow)

    uow = probe.unit_of_work()
    stream = await uow.stream(case_id)
    assert list(stream.events) == [second]
    assert uow.record(third)
    assert uow.record(first)
    assert not uow.record(third), "an event the stream holds is not recorded twice"
    assert list(stream.events) == [first, second, third]
    assert stream.state == ("case.verified",) * 3
    await probe.commit(uow)
    assert await probe.database.case_events(case_id) == [first, second, third]


async def test_a_write_over_a_stream_someone_else_wrote_since_it_was_read_writes_nothing(probe: Probe) -> None:
    case_id = uuid.uuid4()
    await probe.handle(Verify(case_id, "first"))
    late, early = probe.unit_of_work(), probe.unit_of_work()
    await late.load(case_id)
    await early.load(case_id)
    early.emit(a_verification_at(case_id, 5))
    await probe.commit(early)

    late.emit(a_verification_at(case_id, 6))
    with pytest.raises(VersionConflict):
        await probe.commit(late)
    assert len(await probe.database.case_events(case_id)) == 2, "the late write left nothing"
    assert is_transient(VersionConflict("streams changed")), "done again, not dead-lettered"
    async with probe.database.reading() as session:
        row = (await session.execute(select(probe_cases).where(probe_cases.c.case_id == str(case_id)))).one()
    assert row.verifications == 2


async def test_a_command_that_lost_a_race_is_decided_again_on_fresh_state(probe: Probe) -> None:
    case_id = uuid.uuid4()
    counts = await asyncio.gather(*(probe.handle(Verify(case_id, f"s-{n}")) for n in range(5)))
    assert sorted(counts) == [1, 2, 3, 4, 5], "each decided on the case as the one before left it"
    assert len(await probe.database.case_events(case_id)) == 5


async def test_a_stream_a_decision_depends_on_must_not_change_meanwhile_but_one_only_read_may(probe: Probe) -> None:
    original, follower, bystander = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for case_id in (original, bystander):
        await probe.handle(Verify(case_id, "first"))

    uow = probe.unit_of_work()
    await uow.load(original, follower, bystander)
    uow.depend_on(original)
    uow.emit(a_verification_at(follower, 1))
    await probe.handle(Verify(bystander, "meanwhile"))
    await probe.commit(uow)  # the bystander changed: only read, it does not matter

    uow = probe.unit_of_work()
    await uow.load(original, follower)
    uow.depend_on(original)
    uow.emit(a_verification_at(follower, 2))
    await probe.handle(Verify(original, "meanwhile"))
    with pytest.raises(VersionConflict):
        await probe.commit(uow)


async def test_a_kept_stream_is_not_read_again_and_a_decision_on_a_stale_one_is_taken_again(probe: Probe) -> None:
    case_id = uuid.uuid4()
    await probe.handle(Verify(case_id, "first"))
    kept = probe.cache.get(case_id)
    assert kept is not None
    assert kept.version == 1

    uow = probe.unit_of_work()
    stream = await uow.stream(case_id)
    assert stream.events[0] is kept.events[0], "the kept events, not read and parsed again"

    other = Service(probe.definition, probe.settings, probe.kafka, probe.clock)  # another process
    try:
        await other.handle(Verify(case_id, "elsewhere"))
    finally:
        await other.database.dispose()
    stale = probe.unit_of_work()
    await stale.load(case_id)
    assert len(stale.loaded(case_id).events) == 1, "what this process keeps, taken as it is"
    fresh = probe.unit_of_work()
    await fresh.load(case_id, verify=True)
    assert len(fresh.loaded(case_id).events) == 2, "asked, the database tells of the other write"

    assert await probe.handle(Verify(case_id, "here")) == 3, "decided on the stale stream, refused, decided again"
    log = await probe.database.case_events(case_id)
    assert [e.payload.verified_by for e in log] == ["first", "elsewhere", "here"]  # type: ignore[attr-defined]


async def an_acknowledged_case_verified_by_another_process(probe: Probe) -> uuid.UUID:
    """A case this process keeps acknowledged only, though another process has verified it since."""
    case_id = uuid.uuid4()
    uow = probe.unit_of_work()
    await uow.load(case_id)
    uow.emit(an_acknowledgement(case_id))
    await probe.commit(uow)
    other = Service(probe.definition, probe.settings, probe.kafka, probe.clock)
    try:
        await other.handle(Verify(case_id, "elsewhere"))
    finally:
        await other.database.dispose()
    kept = probe.cache.get(case_id)
    assert kept is not None
    assert CaseVerified.event_type not in kept.state, "this process keeps the case as it was before"
    return case_id


async def test_a_command_refused_on_a_kept_stream_is_decided_again_on_the_stream_as_stored(probe: Probe) -> None:
    never_verified = uuid.uuid4()
    with pytest.raises(NotVerified):
        await probe.handle(Close(never_verified, "too-early"))

    case_id = await an_acknowledged_case_verified_by_another_process(probe)
    assert await probe.handle(Close(case_id, "here")) == 3, "refused on what it kept, then closed on what is stored"
    log = await probe.database.case_events(case_id)
    assert [e.type for e in log] == ["case.acknowledged", "case.verified", "case.verified"]


def must_be_verified(case: ProbeCase) -> None:
    if CaseVerified.event_type not in case:
        raise NotVerified("no verification")


async def test_a_check_refused_on_a_kept_stream_is_made_again_on_the_stream_as_stored(probe: Probe) -> None:
    case_id = await an_acknowledged_case_verified_by_another_process(probe)
    await probe.check(case_id, must_be_verified)

    acknowledged_only = uuid.uuid4()
    uow = probe.unit_of_work()
    await uow.load(acknowledged_only)
    uow.emit(an_acknowledgement(acknowledged_only))
    await probe.commit(uow)
    with pytest.raises(NotVerified):
        await probe.check(acknowledged_only, must_be_verified)


async def test_a_stream_read_before_a_write_is_not_kept_over_what_the_write_left(probe: Probe) -> None:
    case_id = uuid.uuid4()
    await probe.handle(Verify(case_id, "first"))
    reader = probe.unit_of_work()
    await reader.load(case_id, verify=True)  # a query: read at version 1
    await probe.handle(Verify(case_id, "second"))  # written meanwhile: version 2, kept
    await probe.commit(reader)  # nothing to write: what it read would be kept

    kept = probe.cache.get(case_id)
    assert kept is not None
    assert (kept.version, len(kept.events)) == (2, 2), "the later version stays kept"


@pytest.mark.postgres
async def test_on_postgresql_reading_streams_and_writing_a_unit_of_work_are_a_round_trip_each(
    probe_on_postgresql: Probe,
) -> None:
    probe = probe_on_postgresql
    cases = [uuid.uuid4() for _ in range(20)]
    uow = probe.unit_of_work()
    before = probe.database.round_trips
    await uow.load(*cases)
    assert probe.database.round_trips - before == 1
    for n, case_id in enumerate(cases):
        uow.emit(a_verification_at(case_id, n))
    uow.put_checkpoint(Checkpoint("probe", "t", 0, 20, None))
    before = probe.database.round_trips
    await probe.commit(uow)
    assert probe.database.round_trips - before == 1, "events, outbox, projections, checkpoint: one statement"
    async with probe.database.reading() as session:
        assert len((await session.execute(select(probe_cases))).all()) == 20


async def test_the_last_row_put_for_a_key_wins_and_a_removed_row_goes(probe: Probe) -> None:
    case_id = uuid.uuid4()
    await probe.handle(Verify(case_id, "first"))
    uow = probe.unit_of_work()
    uow.put(probe_cases, {"case_id": str(case_id), "acknowledgements": 7, "verifications": 7})
    uow.put(probe_cases, {"case_id": str(case_id), "acknowledgements": 8, "verifications": 9})
    await uow.commit()
    async with probe.database.reading() as session:
        row = (await session.execute(select(probe_cases))).one()
    assert (row.acknowledgements, row.verifications) == (8, 9)
    uow = probe.unit_of_work()
    uow.remove(probe_cases, case_id=str(case_id))
    await uow.commit()
    async with probe.database.reading() as session:
        assert (await session.execute(select(probe_cases))).all() == []


async def test_a_row_naming_a_column_the_table_lacks_is_refused_not_dropped(probe: Probe) -> None:
    uow = probe.unit_of_work()
    with pytest.raises(ValueError, match="has no column"):
        uow.put(probe_cases, {"case_id": "x", "acknowledgements": 1, "verifications": 1, "verificatons": 1})


class _LostRace(Exception):
    """What asyncpg raises for a deadlock (PostgreSQL's SQLSTATE 40P01)."""

    sqlstate = "40P01"


def test_a_deadlock_or_a_serialization_failure_is_retried_not_charged_to_the_event() -> None:
    assert is_transient(DBAPIError("UPDATE …", {}, _LostRace()))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert not is_transient(DBAPIError("INSERT …", {}, Exception("check constraint violated")))
    assert not is_transient(ValueError("the handler's own bug"))


async def test_units_of_work_that_ask_for_one_key_exclusively_take_turns() -> None:
    locks, inside, most = KeyedLocks(), 0, 0

    async def one() -> None:
        nonlocal inside, most
        await locks.acquire("grid-1")
        try:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1
        finally:
            locks.release("grid-1")

    await asyncio.gather(*(one() for _ in range(5)))
    assert most == 1
    assert locks._locks == {}, "a key nobody holds or waits for is forgotten"


async def test_a_query_session_on_postgresql_runs_outside_a_transaction_and_a_write_inside_one(
    probe: Probe,
) -> None:
    """Queries cost one round trip each on PostgreSQL (no BEGIN and ROLLBACK around them); the same
    pooled connection, taken back for a write, is in a transaction again. (SQLite runs in the
    process, where a transaction costs no round trip: there only the rows are checked.)"""
    database: Database = probe.database
    on_postgresql = database.is_postgresql

    async def in_a_transaction(session: AsyncSession) -> bool | None:
        if not on_postgresql:
            return None
        connection = await session.connection()
        raw = connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
        return bool(raw._connection.is_in_transaction())  # type: ignore[union-attr]

    for n in range(2):
        async with database.reading() as session:
            await session.execute(select(database.tables.checkpoints))
            assert await in_a_transaction(session) in (False, None)
        async with database.transaction() as session:
            await session.execute(text("SELECT 1"))
            assert await in_a_transaction(session) in (True, None)
        await probe.save_checkpoints([Checkpoint("c", "t", n, 5 + n)])
    async with database.reading() as session:
        rows = await session.execute(
            select(database.tables.checkpoints.c.partition, database.tables.checkpoints.c.next_offset)
        )
        assert sorted(rows.all()) == [(0, 5), (1, 6)]
