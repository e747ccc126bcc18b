"""After a broker lost acknowledged records (noida-db killed before it saved them). The relay: its
idempotent producer fails for good on the partition and is replaced, and the lost records are
published again, in their order, before anything newer — at the offsets they had. A consumer whose
checkpoint lay past the partition's new end reads it again from its start: what it handled before
is skipped in runs, cheaply."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from caseloop_events.contracts.clock import SystemClock
from caseloop_events.contracts.envelope import Envelope, Producer
from caseloop_events.runtime.consumer import EventConsumer
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.service import Service
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.testing.broker import BrokerKind, LocalBroker
from caseloop_events.testing.fixtures import eventually, publish, read_topic
from caseloop_events.testing.probe import PROBE, ProbeDeps, ProbeSettings, a_verification, an_acknowledgement

Probe = Service[Any, ProbeDeps, Any]

#: noida-db writes its snapshot about once a second; this long after a send, the record is saved.
SAVED_AFTER = 2.5


async def one_partition_and_a_probe(broker: LocalBroker, path: Path) -> tuple[KafkaSettings, Probe]:
    """Topics of their own with one partition (so the order on it is the order sent), and the probe
    on a SQLite database: it writes supervision's topic and reads dispatch's."""
    kafka = KafkaSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        caseloop_topic_partitions=1,
        caseloop_topic_namespace=f"test-{uuid.uuid4().hex[:12]}",
    )
    await ensure_topics(broker.bootstrap_servers, 1, 1, kafka.all_topics)
    probe = Service(
        PROBE,
        ProbeSettings(database_url=f"sqlite+aiosqlite:///{path}", CASELOOP_DATA_DIR=path.parent),
        kafka,
        SystemClock(),
    )
    await probe.database.create_schema()
    return kafka, probe


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[LocalBroker]:
    broker = LocalBroker(BrokerKind.NOIDA, tmp_path / "broker").start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_records_the_broker_lost_are_published_again_in_order_by_a_new_producer(
    broker: LocalBroker, tmp_path: Path
) -> None:
    kafka, probe = await one_partition_and_a_probe(broker, tmp_path / "relay.db")
    topic, database = kafka.topic_of(Producer.SUPERVISION), probe.database
    producers: list[AIOKafkaProducer] = []

    async def new_producer() -> AIOKafkaProducer:
        producer = kafka.producer("test-relay")
        await producer.start()
        producers.append(producer)
        return producer

    relay = OutboxRelay(
        database,
        await new_producer(),
        bootstrap_servers=broker.bootstrap_servers,
        renew_producer=new_producer,
        poll_interval=0.1,
        check_interval=0.5,
    )
    running = asyncio.create_task(relay.run())
    emitted: list[Envelope] = []

    async def emit_and_publish(count: int) -> None:
        events = [a_verification() for _ in range(count)]
        uow = probe.unit_of_work()
        await uow.load(*(e.case_id for e in events))
        uow.emit(*events)
        await probe.commit(uow)
        emitted.extend(events)
        await eventually(lambda: _nothing_pending(relay), timeout=30)

    try:
        await emit_and_publish(5)
        await asyncio.sleep(SAVED_AFTER)
        saved = tmp_path / "saved-snapshot"
        shutil.copytree(broker.data_dir / "noida", saved)
        await emit_and_publish(5)
        # The broker dies at once and comes back with its data as it was before the last five:
        # acknowledged, and lost, as noida-db loses what it had no time to save.
        broker.kill()
        shutil.rmtree(broker.data_dir / "noida")
        shutil.copytree(saved, broker.data_dir / "noida")
        broker.start()

        # Nothing new to send: the relay's own check finds the loss.
        values = await read_topic(broker.bootstrap_servers, topic, lambda values: len(values) >= 10)
        await emit_and_publish(1)
        values = await read_topic(broker.bootstrap_servers, topic, lambda values: len(values) >= 11)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for producer in producers:
            await producer.stop()
        await database.dispose()

    on_topic = [Envelope.model_validate_json(value).event_id for value in values]
    assert on_topic == [event.event_id for event in emitted], "each once, in the order emitted"
    assert relay.restored_total == 5
    assert len(producers) > 1, "the producer whose records were lost was replaced"


async def _nothing_pending(relay: OutboxRelay) -> bool:
    return await relay.pending() == 0


async def test_a_partition_read_again_from_its_start_skips_what_was_handled(
    probe: Probe, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic_of(Producer.DISPATCH)
    producer = kafka_settings.producer("test")
    await producer.start()
    consumer = EventConsumer(
        name="probe",
        topics=probe.consumes,
        bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        sink=probe,
        deadletter=producer,
        deadletter_topic=kafka_settings.deadletter_topic,
    )
    first, later = [an_acknowledgement() for _ in range(30)], [an_acknowledgement() for _ in range(3)]
    try:
        await publish(kafka_settings.kafka_bootstrap_servers, topic, *first)
        await consumer.start()
        await eventually(lambda: _consumed(consumer, 30), timeout=30)
        # As aiokafka does when a checkpoint lies past the end of a partition: back to its start.
        assert consumer._consumer is not None
        await consumer._consumer.seek_to_beginning()
        await publish(kafka_settings.kafka_bootstrap_servers, topic, *later)
        await eventually(lambda: _consumed(consumer, 63), timeout=30)
    finally:
        await consumer.stop()
        await producer.stop()

    handled = probe.deps.handled
    assert sorted(map(str, handled)) == sorted(str(e.event_id) for e in first + later), "each handled once"
    assert consumer.duplicates_total == 30
    assert sum(consumer.positions.values()) == 33, "the positions are past every record"


async def _consumed(consumer: EventConsumer, count: int) -> bool:
    await consumer.poll_once(timeout_ms=200)
    return consumer.processed_total >= count


async def test_a_consumer_started_on_a_partition_whose_end_was_lost_and_written_again_reads_it_again(
    broker: LocalBroker, tmp_path: Path
) -> None:
    kafka, probe = await one_partition_and_a_probe(broker, tmp_path / "consumer.db")
    topic = kafka.topic_of(Producer.DISPATCH)

    def a_consumer(producer: AIOKafkaProducer) -> EventConsumer:
        return EventConsumer(
            name="probe",
            topics=probe.consumes,
            bootstrap_servers=broker.bootstrap_servers,
            sink=probe,
            deadletter=producer,
            deadletter_topic=kafka.deadletter_topic,
        )

    kept, lost = [an_acknowledgement() for _ in range(3)], [an_acknowledgement() for _ in range(2)]
    written_since: list[Envelope] = []
    producer = kafka.producer("test")
    await producer.start()
    try:
        await publish(broker.bootstrap_servers, topic, *kept)
        await asyncio.sleep(SAVED_AFTER)
        saved = tmp_path / "saved-snapshot"
        shutil.copytree(broker.data_dir / "noida", saved)
        await publish(broker.bootstrap_servers, topic, *lost)
        consumer = a_consumer(producer)
        await consumer.start()
        await eventually(lambda: _consumed(consumer, 5), timeout=30)
        await consumer.stop()
        # The broker loses the last two records; two others take their offsets, then a third.
        broker.kill()
        shutil.rmtree(broker.data_dir / "noida")
        shutil.copytree(saved, broker.data_dir / "noida")
        broker.start()
        written_since = [an_acknowledgement() for _ in range(3)]
        await publish(broker.bootstrap_servers, topic, *written_since)
        consumer = a_consumer(producer)
        await consumer.start()
        await eventually(lambda: _consumed(consumer, 6), timeout=30)
        await consumer.stop()
    finally:
        await producer.stop()
        await probe.database.dispose()

    handled = probe.deps.handled
    assert handled == [e.event_id for e in kept + lost + written_since], "the records written since, none passed over"


@pytest.mark.parametrize("value", [b"\x00\xff not json", b"[1, 2]", b'"text"', b"{not json", None])
def test_a_poison_record_on_the_topic_has_no_event_id_and_does_not_stop_the_relays_check(value: bytes | None) -> None:
    from aiokafka import ConsumerRecord

    from caseloop_events.runtime.kafka import record_event_id

    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic="t",
        partition=0,
        offset=1,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )

    assert record_event_id(record) is None
