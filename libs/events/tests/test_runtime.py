"""The outbox relay and the consumer runtime against a real broker and real databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import MetaData, func, select

from caseloop_events.contracts.clock import SystemClock
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, new_event
from caseloop_events.contracts.supervision import CaseVerified
from caseloop_events.runtime.consumer import HANDLER_ATTEMPTS, Delivery, EventConsumer
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.storage import define_runtime_tables
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.runtime.unit_of_work import Database, UnitOfWork
from caseloop_events.testing.fixtures import publish, read_events, read_topic


def a_verified_event(case_id: uuid.UUID | None = None) -> Envelope:
    return new_event(
        CaseVerified(verified_by="supervisor-1"),
        case_id=case_id or uuid.uuid4(),
        actor=Actor(id="supervisor-1", role=ActorRole.SUPERVISOR),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
    )


@pytest.fixture
async def database(database_url: str, kafka_settings: KafkaSettings) -> AsyncIterator[Database]:
    db = Database(
        database_url, define_runtime_tables(MetaData()), kafka_settings.topic_of(Producer.SUPERVISION), SystemClock()
    )
    await db.create_schema()
    await ensure_topics(kafka_settings.kafka_bootstrap_servers, 3, 1, kafka_settings.all_topics)
    yield db
    await db.dispose()


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = kafka_settings.producer("test")
    await producer.start()
    yield producer
    await producer.stop()


async def test_the_relay_publishes_committed_events_once_in_order_and_keeps_them(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    case_id = uuid.uuid4()
    events = [a_verified_event(case_id) for _ in range(5)]
    async with database.transaction() as uow:
        await uow.emit(*events)
    relay = OutboxRelay(database, producer)
    assert await relay.pending() == 5
    assert await relay.publish_pending() == 5
    assert await relay.publish_pending() == 0
    assert await relay.pending() == 0

    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    on_topic = await read_events(kafka_settings.kafka_bootstrap_servers, topic, until=lambda evs: len(evs) >= 5)
    assert [e.event_id for e in on_topic] == [e.event_id for e in events]
    async with database.reading() as session:
        kept = await session.scalar(select(func.count()).select_from(database.tables.outbox))
    assert kept == 5, "published rows stay: they are the service's event store"


async def test_a_rolled_back_transaction_publishes_nothing(database: Database, producer: AIOKafkaProducer) -> None:
    async def emit_then_fail() -> None:
        async with database.transaction() as uow:
            await uow.emit(a_verified_event())
            raise RuntimeError("the handler failed after emitting")

    with pytest.raises(RuntimeError):
        await emit_then_fail()
    assert await OutboxRelay(database, producer).pending() == 0


class RecordingHandler:
    def __init__(self) -> None:
        self.seen: list[uuid.UUID] = []

    async def __call__(self, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
        await uow.record(event)
        self.seen.append(event.event_id)


def a_consumer(
    database: Database, kafka_settings: KafkaSettings, handler: RecordingHandler, producer: AIOKafkaProducer
) -> EventConsumer:
    return EventConsumer(
        name="probe",
        topics=(kafka_settings.topic_of(Producer.SUPERVISION),),
        bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        database=database,
        handle=handler,
        deadletter=producer,
        deadletter_topic=kafka_settings.deadletter_topic,
    )


async def consume(consumer: EventConsumer, expected: int) -> EventConsumer:
    """Start the consumer, drain ``expected`` records, stop it; returns it for its counters."""
    await consumer.start()
    try:
        await drain(consumer, expected)
    finally:
        await consumer.stop()
    return consumer


async def drain(consumer: EventConsumer, expected: int) -> None:
    done = 0
    for _ in range(100):
        done += await consumer.poll_once(timeout_ms=200)
        if done >= expected:
            return
    raise TimeoutError(f"consumed {done} of {expected}")


async def test_a_duplicate_delivery_is_handled_once_and_a_poison_message_is_dead_lettered(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    event, later = a_verified_event(), a_verified_event()
    await publish(kafka_settings.kafka_bootstrap_servers, topic, event, event, raw=b"{not json")
    await publish(kafka_settings.kafka_bootstrap_servers, topic, later)
    handler = RecordingHandler()
    consumer = await consume(a_consumer(database, kafka_settings, handler, producer), 4)
    assert sorted(handler.seen) == sorted([event.event_id, later.event_id])
    assert consumer.deadlettered_total == 1

    dead = await read_topic(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.deadletter_topic, until=lambda v: len(v) >= 1
    )
    letter = json.loads(dead[0])
    assert letter["origin"]["topic"] == topic
    assert letter["consumer"] == "probe"
    assert "undecodable" in letter["error"]


async def test_after_a_restart_the_consumer_resumes_from_its_database_checkpoint(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    first, second = a_verified_event(), a_verified_event()
    await publish(kafka_settings.kafka_bootstrap_servers, topic, first)
    handler = RecordingHandler()
    consumer = a_consumer(database, kafka_settings, handler, producer)
    await consumer.start()
    await drain(consumer, 1)
    await consumer.stop()

    await publish(kafka_settings.kafka_bootstrap_servers, topic, second)
    restarted_handler = RecordingHandler()
    await consume(a_consumer(database, kafka_settings, restarted_handler, producer), 1)
    assert restarted_handler.seen == [second.event_id]


class FailingHandler(RecordingHandler):
    """Refuses one event every time, as a handler bug or a constraint violation would."""

    def __init__(self, refused: uuid.UUID) -> None:
        super().__init__()
        self.refused = refused
        self.attempts = 0

    async def __call__(self, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
        if event.event_id == self.refused:
            self.attempts += 1
            raise ValueError("this event can never be handled")
        await super().__call__(uow, event, delivery)


async def test_an_event_its_handler_always_refuses_is_dead_lettered_and_the_rest_flow_on(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    case_id = uuid.uuid4()
    refused, after = a_verified_event(case_id), a_verified_event(case_id)
    await publish(kafka_settings.kafka_bootstrap_servers, topic, refused, after)
    handler = FailingHandler(refused.event_id)
    await consume(a_consumer(database, kafka_settings, handler, producer), 2)
    assert handler.attempts == HANDLER_ATTEMPTS
    assert handler.seen == [after.event_id]
    dead = await read_topic(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.deadletter_topic, until=lambda v: len(v) >= 1
    )
    assert "this event can never be handled" in json.loads(dead[0])["error"]


def test_a_poison_report_is_described_without_the_reporters_data() -> None:
    from pydantic import ValidationError

    from caseloop_events.runtime.consumer import error_without_values

    poison = json.dumps({"event_id": "not-a-uuid", "reporter": {"name": "王五", "phone": "13900000000"}})
    with pytest.raises(ValidationError) as raised:
        Envelope.model_validate_json(poison)

    described = error_without_values(raised.value)
    assert "event_id" in described
    assert "13900000000" not in described
    assert "王五" not in described


async def logged_event_ids(database: Database, case_id: uuid.UUID) -> list[uuid.UUID]:
    log = database.tables.case_events
    async with database.reading() as session:
        found = await session.scalars(select(log.c.event_id).where(log.c.case_id == str(case_id)))
        return sorted(uuid.UUID(i) for i in found)


async def test_a_batch_whose_handler_fails_on_one_event_is_undone_and_each_other_event_lands_once(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    # One case, so one partition and one poll: the failing event sits between two good ones.
    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    case_id = uuid.uuid4()
    before, refused, after = (a_verified_event(case_id) for _ in range(3))
    await publish(kafka_settings.kafka_bootstrap_servers, topic, before, refused, after)
    handler = FailingHandler(refused.event_id)
    consumer = await consume(a_consumer(database, kafka_settings, handler, producer), 3)
    assert handler.attempts == HANDLER_ATTEMPTS, "the attempt in the batch counts as the first"
    assert consumer.deadlettered_total == 1
    assert consumer.handled_total == 2
    assert await logged_event_ids(database, case_id) == sorted([before.event_id, after.event_id])
    async with database.transaction() as uow:
        assert await uow.processed_among([before.event_id, refused.event_id, after.event_id]) == {
            before.event_id,
            after.event_id,
        }


async def test_many_events_of_one_poll_are_handled_once_each_with_the_checkpoint_at_the_end(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic_of(Producer.SUPERVISION)
    case_ids = [uuid.uuid4() for _ in range(5)]
    events = [a_verified_event(case_ids[n % 5]) for n in range(60)]
    await publish(kafka_settings.kafka_bootstrap_servers, topic, *events, events[0], events[1])
    handler = RecordingHandler()
    consumer = await consume(a_consumer(database, kafka_settings, handler, producer), 62)
    assert sorted(handler.seen) == sorted(e.event_id for e in events), "the redelivered two are skipped"
    assert consumer.duplicates_total == 2
    table = database.tables.checkpoints
    async with database.reading() as session:
        stored = sum((await session.scalars(select(table.c.next_offset).where(table.c.consumer == "probe"))).all())
    assert stored == 62, "every partition's checkpoint is past its last record"


async def test_an_idle_consumer_rests_between_fetches_and_still_sees_a_new_event_at_once(
    database: Database, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    # noida-db answers an empty fetch at once; unpaced, aiokafka asks it ~1,700 times a second.
    handler = RecordingHandler()
    consumer = a_consumer(database, kafka_settings, handler, producer)
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
        event = a_verified_event()
        await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(Producer.SUPERVISION), event)
        published_at = asyncio.get_running_loop().time()
        while event.event_id not in handler.seen:
            assert asyncio.get_running_loop().time() - published_at < 5.0, "the idle consumer missed a new event"
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await consumer.stop()
    assert idle_fetches_per_second < 100, f"{idle_fetches_per_second} fetches a second while idle"
