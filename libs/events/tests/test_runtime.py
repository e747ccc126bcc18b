"""The outbox relay and the consumer runtime against a real broker and real databases, on the probe
service (a small supervision that reads dispatch's acknowledgements)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from caseloop_events.contracts.dispatch import CaseResultReported
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, new_event
from caseloop_events.runtime.consumer import CHECKPOINT_DELAY, HANDLER_ATTEMPTS, EventConsumer, error_without_values
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.service import Service
from caseloop_events.testing.fixtures import publish, read_events, read_topic
from caseloop_events.testing.probe import ProbeDeps, Verify, a_verification, an_acknowledgement, probe_cases

Probe = Service[Any, ProbeDeps, Any]


def a_consumer(probe: Probe, kafka_settings: KafkaSettings, producer: AIOKafkaProducer) -> EventConsumer:
    return EventConsumer(
        name="probe",
        topics=probe.consumes,
        bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        sink=probe,
        deadletter=producer,
        deadletter_topic=kafka_settings.deadletter_topic,
    )


async def drain(consumer: EventConsumer, expected: int) -> None:
    done = 0
    for _ in range(100):
        done += await consumer.poll_once(timeout_ms=200)
        if done >= expected:
            return
    raise TimeoutError(f"consumed {done} of {expected}")


async def consume(consumer: EventConsumer, expected: int) -> EventConsumer:
    """Start the consumer, drain ``expected`` records, stop it; returns it for its counters."""
    await consumer.start()
    try:
        await drain(consumer, expected)
    finally:
        await consumer.stop()
    return consumer


async def acknowledged(kafka: KafkaSettings, *events: Envelope, raw: bytes | None = None) -> None:
    await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(Producer.DISPATCH), *events, raw=raw)


async def logged(probe: Probe, case_id: uuid.UUID) -> list[uuid.UUID]:
    return sorted(e.event_id for e in await probe.database.case_events(case_id))


async def test_the_relay_publishes_committed_events_once_in_order_and_keeps_them(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    case_id = uuid.uuid4()
    for n in range(3):
        await probe.handle(Verify(case_id, by=f"supervisor-{n}"))
    relay = OutboxRelay(probe.database, producer)
    assert await relay.pending() == 3
    assert await relay.publish_round() == 3, "what was committed before the relay started: read from the database"
    for n in range(3, 5):
        await probe.handle(Verify(case_id, by=f"supervisor-{n}"))
    assert await relay.publish_round() == 2, "what is committed while it runs: handed over in memory"
    assert await relay.publish_round() == 0
    assert await relay.pending() == 0

    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    on_topic = await read_events(kafka_settings.kafka_bootstrap_servers, topic, until=lambda evs: len(evs) >= 5)
    assert [e.payload.verified_by for e in on_topic] == [f"supervisor-{n}" for n in range(5)]  # type: ignore[attr-defined]
    async with probe.database.reading() as session:
        kept = await session.scalar(select(func.count()).select_from(probe.database.tables.outbox))
    assert kept == 5, "published rows stay: they are the service's event store"


async def test_a_command_that_fails_after_emitting_publishes_nothing(probe: Probe, producer: AIOKafkaProducer) -> None:
    case_id = uuid.uuid4()

    async def emit_then_fail() -> None:
        uow = probe.unit_of_work()
        await uow.load(case_id)
        uow.emit(a_verification(case_id))
        raise RuntimeError("the handler failed after emitting")

    with pytest.raises(RuntimeError):
        await emit_then_fail()
    assert await OutboxRelay(probe.database, producer).pending() == 0
    assert await probe.database.case_events(case_id) == []


async def test_a_duplicate_delivery_is_handled_once_and_a_poison_message_is_dead_lettered(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    event, later = an_acknowledgement(), an_acknowledgement()
    await acknowledged(kafka_settings, event, event, raw=b"{not json")
    await acknowledged(kafka_settings, later)
    consumer = await consume(a_consumer(probe, kafka_settings, producer), 4)
    assert sorted(probe.deps.handled) == sorted([event.event_id, later.event_id])
    assert (consumer.handled_total, consumer.duplicates_total, consumer.deadlettered_total) == (2, 1, 1)

    dead = await read_topic(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.deadletter_topic, until=lambda v: len(v) >= 1
    )
    letter = json.loads(dead[0])
    assert letter["origin"]["topic"] == kafka_settings.topic_of(Producer.DISPATCH)
    assert letter["consumer"] == "probe"
    assert "undecodable" in letter["error"]


async def test_after_a_restart_the_consumer_resumes_from_its_database_checkpoint(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    first, second = an_acknowledgement(), an_acknowledgement()
    await acknowledged(kafka_settings, first)
    await consume(a_consumer(probe, kafka_settings, producer), 1)
    await acknowledged(kafka_settings, second)
    probe.deps.handled.clear()
    await consume(a_consumer(probe, kafka_settings, producer), 1)
    assert probe.deps.handled == [second.event_id]


async def test_an_event_its_handler_always_refuses_is_dead_lettered_and_the_rest_flow_on(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    case_id = uuid.uuid4()
    refused, after = an_acknowledgement(case_id), an_acknowledgement(case_id)
    probe.deps.refused.add(refused.event_id)
    await acknowledged(kafka_settings, refused, after)
    await consume(a_consumer(probe, kafka_settings, producer), 2)
    assert probe.deps.refusals == HANDLER_ATTEMPTS, "the attempt in the poll counts as the first"
    assert await logged(probe, case_id) == [after.event_id]
    dead = await read_topic(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.deadletter_topic, until=lambda v: len(v) >= 1
    )
    assert "this event can never be handled" in json.loads(dead[0])["error"]


def test_a_poison_report_is_described_without_the_reporters_data() -> None:
    from pydantic import ValidationError

    poison = json.dumps({"event_id": "not-a-uuid", "reporter": {"name": "王五", "phone": "13900000000"}})
    with pytest.raises(ValidationError) as raised:
        Envelope.model_validate_json(poison)

    described = error_without_values(raised.value)
    assert "event_id" in described
    assert "13900000000" not in described
    assert "王五" not in described


async def test_a_poll_whose_handler_fails_on_one_event_is_undone_and_each_other_event_lands_once(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    # One case, so one partition and one poll: the failing event sits between two good ones.
    case_id = uuid.uuid4()
    before, refused, after = (an_acknowledgement(case_id) for _ in range(3))
    probe.deps.refused.add(refused.event_id)
    await acknowledged(kafka_settings, before, refused, after)
    consumer = await consume(a_consumer(probe, kafka_settings, producer), 3)
    assert (consumer.deadlettered_total, consumer.handled_total) == (1, 2)
    assert await logged(probe, case_id) == sorted([before.event_id, after.event_id])
    async with probe.database.reading() as session:
        row = (await session.execute(select(probe_cases).where(probe_cases.c.case_id == str(case_id)))).one()
    assert row.acknowledgements == 2, "the undone poll left nothing behind: each good event counted once"


async def test_many_events_of_one_poll_are_handled_once_each_with_the_checkpoint_at_the_end(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    case_ids = [uuid.uuid4() for _ in range(5)]
    events = [an_acknowledgement(case_ids[n % 5]) for n in range(60)]
    await acknowledged(kafka_settings, *events, events[0], events[1])
    before = probe.database.round_trips
    consumer = await consume(a_consumer(probe, kafka_settings, producer), 62)
    assert sorted(probe.deps.handled) == sorted(e.event_id for e in events), "the redelivered two are skipped"
    assert consumer.duplicates_total == 2
    table = probe.database.tables.checkpoints
    async with probe.database.reading() as session:
        stored = sum((await session.scalars(select(table.c.next_offset).where(table.c.consumer == "probe"))).all())
        rows = (await session.execute(select(probe_cases.c.acknowledgements))).scalars().all()
    assert stored == 62, "every partition's checkpoint is past its last record"
    assert sorted(rows) == [12] * 5
    polls = consumer.polls_written_total
    assert 1 <= polls <= 62 // 4, "a poll carries many events"
    # At start the consumer reads its checkpoints and checks them against the broker; then each poll
    # is a read and a write (on SQLite a transaction of a statement per table each).
    at_start, per_poll = 12, 12
    assert probe.database.round_trips - before <= at_start + per_poll * polls, "not a few round trips per event"


async def test_records_of_types_the_service_has_no_handler_for_are_skipped_without_touching_the_database(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    """The probe declares only acknowledgements; every other event of the topic is passed over in
    memory, and its position is written with the next unit of work (or after a second alone)."""
    case_id = uuid.uuid4()
    results = [
        new_event(
            CaseResultReported(unit_id="U-1", reported_by="w", summary="done"),
            case_id=case_id,
            actor=Actor(id="w", role=ActorRole.UNIT, unit_id="U-1"),
            occurred_at=an_acknowledgement().occurred_at,
            correlation_id=uuid.uuid4(),
        )
        for _ in range(20)
    ]
    await acknowledged(kafka_settings, *results)
    consumer = a_consumer(probe, kafka_settings, producer)
    await consumer.start()
    try:
        before = probe.database.round_trips
        await drain(consumer, 20)
        assert probe.database.round_trips == before, "nothing handled: no round trip to the database"
        assert consumer.skipped_total == 20
        assert await logged(probe, case_id) == []
        acknowledgement = an_acknowledgement(case_id)
        await acknowledged(kafka_settings, acknowledgement)
        await drain(consumer, 1)
    finally:
        await consumer.stop()
    table = probe.database.tables.checkpoints
    async with probe.database.reading() as session:
        stored = sum((await session.scalars(select(table.c.next_offset).where(table.c.consumer == "probe"))).all())
    assert stored == 21, "the skipped records' position went with the next unit of work"
    assert probe.deps.handled == [acknowledgement.event_id]


async def test_positions_past_skipped_records_alone_are_written_after_a_while(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    skipped = [a_verification() for _ in range(3)]  # the probe's own type: not read from another topic
    await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(Producer.DISPATCH), *skipped)
    consumer = a_consumer(probe, kafka_settings, producer)
    await consumer.start()
    table = probe.database.tables.checkpoints
    try:
        await drain(consumer, 3)

        async def written() -> int:
            await consumer.poll_once(timeout_ms=50)
            async with probe.database.reading() as session:
                return sum((await session.scalars(select(table.c.next_offset))).all())

        deadline = asyncio.get_running_loop().time() + 5 * CHECKPOINT_DELAY
        while await written() < 3:
            assert asyncio.get_running_loop().time() < deadline, "the positions were never written"
    finally:
        await consumer.stop()


def test_a_service_reads_the_topics_of_the_others_it_declares_handlers_for_and_replays_its_own_too(
    probe: Probe, kafka_settings: KafkaSettings
) -> None:
    assert probe.consumes == (kafka_settings.topic_of(Producer.DISPATCH),)
    assert probe.replays == (kafka_settings.topic_of(Producer.DISPATCH), kafka_settings.topic_of(Producer.SUPERVISION))


async def test_an_idle_consumer_rests_between_fetches_and_still_sees_a_new_event_at_once(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    # noida-db answers an empty fetch at once; unpaced, aiokafka asks it ~1,700 times a second.
    consumer = a_consumer(probe, kafka_settings, producer)
    await consumer.start()
    fetcher = consumer._consumer._fetcher  # type: ignore[union-attr]
    fetches = 0
    send_fetch = fetcher._proc_fetch_request

    async def counting_fetch(*args: object, **kwargs: object) -> object:
        nonlocal fetches
        fetches += 1
        return await send_fetch(*args, **kwargs)

    fetcher._proc_fetch_request = counting_fetch
    running = asyncio.create_task(consumer.run())
    try:
        await asyncio.sleep(0.5)  # caught up, resting at the longest
        fetches = 0
        await asyncio.sleep(2.0)
        idle_fetches_per_second = fetches / 2.0
        event = an_acknowledgement()
        await acknowledged(kafka_settings, event)
        published_at = asyncio.get_running_loop().time()
        while event.event_id not in probe.deps.handled:
            assert asyncio.get_running_loop().time() - published_at < 5.0, "the idle consumer missed a new event"
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await consumer.stop()
    assert idle_fetches_per_second < 100, f"{idle_fetches_per_second} fetches a second while idle"
