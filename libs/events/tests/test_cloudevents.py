"""caseloop's records are CloudEvents (the Kafka protocol binding, binary content mode): a team with the
CloudEvents SDK reads the topics without caseloop's code. And the records written before, with the
first relays' headers or none, stay readable: the log is kept forever."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as cloudevents_kafka
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1 import kafka as cloudevents_v1_kafka

from caseloop_events.contracts.envelope import Envelope, Producer, registered_payloads
from caseloop_events.runtime.consumer import EventConsumer
from caseloop_events.runtime.kafka import (
    KafkaSettings,
    event_headers,
    event_key,
    record_event_id,
    record_event_type,
    stored_event_headers,
)
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.service import Service
from caseloop_events.testing.probe import ProbeDeps, an_acknowledgement

Probe = Service[Any, ProbeDeps, Any]
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def golden_samples() -> list[Envelope]:
    """One event of every event type and version: the golden samples."""
    samples = [Envelope.model_validate_json(path.read_text()) for path in sorted(GOLDEN.glob("*.json"))]
    contracts = {
        key for key, c in registered_payloads().items() if c.__module__.startswith("caseloop_events.contracts.")
    }
    assert {(e.type, e.schema_version) for e in samples} == contracts, "a sample of every type"
    return samples


def headers_of_the_first_relays(event: Envelope) -> list[tuple[str, bytes]]:
    """The headers every record carried before the CloudEvents binding: written then, on the topics for
    good (a copy of the header builder of that time, kept as it was)."""
    return [
        ("ce_type", event.type.encode()),
        ("ce_schema_version", str(event.schema_version).encode()),
        ("ce_correlation_id", str(event.correlation_id).encode()),
        ("ce_id", str(event.event_id).encode()),
    ]


def no_headers(_event: Envelope) -> None:
    """A record written by something that sets no headers (kcat, a test tool, a restore)."""
    return None


def as_kafka_message(record: ConsumerRecord[bytes, bytes]) -> cloudevents_kafka.KafkaMessage:
    return cloudevents_kafka.KafkaMessage(
        headers={name: bytes(value) for name, value in record.headers}, key=record.key, value=record.value or b""
    )


async def records_on(bootstrap_servers: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of a topic, as a consumer receives them (headers included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        for _ in range(100):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if len(records) >= count:
                return records
        raise TimeoutError(f"{topic}: read {len(records)} of {count} records")
    finally:
        await consumer.stop()


def assert_the_cloudevent_is_the_envelope(cloudevent: BaseCloudEvent, event: Envelope) -> None:
    attributes = cloudevent.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["id"] == str(event.event_id)
    assert attributes["source"] == f"/caseloop/{event.producer.value}"
    assert attributes["type"] == event.type
    assert attributes["time"] == event.occurred_at
    assert attributes["subject"] == str(event.case_id)
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["schemaversion"] == str(event.schema_version)
    assert attributes["correlationid"] == str(event.correlation_id)
    assert attributes.get("causationid") == (str(event.causation_id) if event.causation_id else None)
    assert attributes["partitionkey"] == str(event.case_id), "the record's key: the case id"
    assert cloudevent.get_data() == event.model_dump(mode="json"), "the data is the whole envelope"


async def test_an_event_of_every_type_the_relay_publishes_is_read_by_the_cloudevents_sdk(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    samples = golden_samples()
    uow = probe.unit_of_work()
    await uow.load(*{e.case_id for e in samples})
    uow.emit(*samples)
    await uow.commit()
    assert await OutboxRelay(probe.database, producer).publish_round() == len(samples)

    records = await records_on(kafka_settings.kafka_bootstrap_servers, probe.database.topic, len(samples))
    by_id = {str(e.event_id): e for e in samples}
    for record in records:
        message = as_kafka_message(record)
        event = by_id[message.headers["ce_id"].decode()]
        # The SDK's binding (2.x, which checks every attribute: extension names, time, specversion) ...
        assert_the_cloudevent_is_the_envelope(cloudevents_kafka.from_binary(message, JSONFormat()), event)
        # ... and the 1.x API that existing consumers use, kept in the SDK as cloudevents.v1.
        older = cloudevents_v1_kafka.from_binary(
            cloudevents_v1_kafka.KafkaMessage(message.headers, message.key, message.value)
        )
        assert (older["specversion"], older["id"], older["type"], older["subject"]) == (
            "1.0",
            str(event.event_id),
            event.type,
            str(event.case_id),
        )
    assert sorted(record_event_id(r) or "" for r in records) == sorted(by_id)


def test_a_traced_event_carries_its_traceparent_as_an_extension_and_as_the_plain_header() -> None:
    event = golden_samples()[0]
    headers = dict(stored_event_headers(event.model_dump(mode="json"), traceparent=TRACEPARENT))
    message = cloudevents_kafka.KafkaMessage(
        headers=headers, key=event_key(event), value=event.model_dump_json().encode()
    )
    assert cloudevents_kafka.from_binary(message, JSONFormat()).get_extension("traceparent") == TRACEPARENT
    assert headers["traceparent"] == TRACEPARENT.encode()
    untraced = dict(event_headers(event))
    assert "traceparent" not in untraced
    assert "ce_traceparent" not in untraced


def test_the_first_relays_headers_were_no_cloudevent_to_the_sdk() -> None:
    """Why the headers changed: without specversion, source and time the SDK refused the records."""
    event = golden_samples()[0]
    message = cloudevents_kafka.KafkaMessage(
        headers=dict(headers_of_the_first_relays(event)), key=event_key(event), value=event.model_dump_json().encode()
    )
    with pytest.raises(CloudEventValidationError) as refused:
        cloudevents_kafka.from_binary(message, JSONFormat())
    assert {"source", "schema_version", "correlation_id"} <= set(refused.value.errors)


def test_the_time_attribute_is_rfc_3339_in_utc() -> None:
    for event in golden_samples():
        written = dict(event_headers(event))["ce_time"].decode()
        assert written.endswith("Z")
        assert datetime.fromisoformat(written) == event.occurred_at


async def test_acknowledgements_written_with_the_first_relays_headers_or_none_are_handled_like_todays(
    probe: Probe, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> None:
    case_id = uuid.uuid4()
    ways: list[Callable[[Envelope], list[tuple[str, bytes]] | None]] = [
        headers_of_the_first_relays,
        no_headers,
        event_headers,
    ]
    written = [(an_acknowledgement(case_id), way) for way in ways]
    topic = kafka_settings.topic_of(Producer.DISPATCH)
    for event, way in written:
        await producer.send_and_wait(
            topic, value=event.model_dump_json().encode(), key=event_key(event), headers=way(event)
        )

    records = await records_on(kafka_settings.kafka_bootstrap_servers, topic, len(written))
    assert [(record_event_type(r), record_event_id(r)) for r in records] == [
        (e.type, str(e.event_id)) for e, _way in written
    ], "what the consumer, the relay's check, a replay and the bench recognise records by"

    consumer = EventConsumer(
        name="probe",
        topics=probe.consumes,
        bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        sink=probe,
        deadletter=producer,
        deadletter_topic=kafka_settings.deadletter_topic,
    )
    await consumer.start()
    try:
        done = 0
        for _ in range(100):
            done += await consumer.poll_once(timeout_ms=200)
            if done >= len(written):
                break
    finally:
        await consumer.stop()
    assert probe.deps.handled == [e.event_id for e, _way in written]
    assert consumer.deadlettered_total == 0
