"""The operator tooling reads the records written before the CloudEvents headers as it reads today's:
those with the first relays' headers (``ce_schema_version``, ``ce_correlation_id``) and those with
none. The log is kept forever, so a replay, a republish or a case's log read meets them for good."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, update

from caseloop_deploy.databases import connected, drop_database, recreate_database, sibling_url
from caseloop_deploy.logread import case_events_from_topics, log_reader, partitions_of, read_all
from caseloop_deploy.replay import replay_service
from caseloop_deploy.republish import republish_service
from caseloop_deploy.services import service_spec
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned
from caseloop_events.contracts.envelope import Envelope, EventPayload, Producer
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings, event_headers, event_key, record_event_id, record_event_type
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.testing.fixtures import causal_chain

DISPATCH = service_spec("dispatch")
Headers = Callable[[Envelope], list[tuple[str, bytes]] | None]


def headers_of_the_first_relays(event: Envelope) -> list[tuple[str, bytes]]:
    """The headers every record carried before the CloudEvents binding (the header builder of that
    time, kept as it was)."""
    return [
        ("ce_type", event.type.encode()),
        ("ce_schema_version", str(event.schema_version).encode()),
        ("ce_correlation_id", str(event.correlation_id).encode()),
        ("ce_id", str(event.event_id).encode()),
    ]


def no_headers(_event: Envelope) -> None:
    return None


def an_acknowledged_case() -> list[Envelope]:
    location = CaseLocation(
        grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
    )
    payloads: list[EventPayload] = [
        CaseAccepted(
            case_no=f"CL{uuid.uuid4().int % 10**9:09d}",
            source_system="hotline-12345",
            external_id=str(uuid.uuid4()),
            title="井盖缺失",
            description="路口井盖缺失",
            location=location,
            accepted_at=datetime.now(UTC),
        ),
        CaseJudged(
            category="streetlight",
            risk_level=3,
            handling_level=HandlingLevel.TOWN,
            sla_tier=SlaTierName.GENERAL,
            judged_by=JudgedBy.RULES,
            confidence=0.8,
        ),
        CaseAssigned(
            unit_id="U-X",
            unit_name="路灯所",
            town_code="330110001",
            route=AssignmentRoute.RESPONSIBILITY_LIST,
            reason="r",
        ),
        CaseAcknowledged(unit_id="U-X", acknowledged_by="h"),
    ]
    return causal_chain(uuid.uuid4(), payloads, datetime.now(UTC) - timedelta(hours=1), timedelta(minutes=1))


async def written(kafka: KafkaSettings, events: list[Envelope], headers: Headers) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                kafka.topic_of(event.producer),
                value=event.model_dump_json().encode(),
                key=event_key(event),
                headers=headers(event),
            )
    finally:
        await producer.stop()


@pytest.fixture
async def outbox_database(database_url: str) -> AsyncIterator[str]:
    """A second database of the test's kind: dispatch's outbox for the republish."""
    url = sibling_url(database_url, "outbox")
    await recreate_database(url)
    try:
        yield url
    finally:
        await drop_database(url)


async def test_records_with_the_first_relays_headers_or_none_are_read_by_every_tool_like_todays(
    kafka_settings: KafkaSettings, database_url: str, outbox_database: str
) -> None:
    await ensure_topics(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.caseloop_topic_partitions,
        kafka_settings.caseloop_topic_replication,
        kafka_settings.all_topics,
    )
    cases = {way: an_acknowledged_case() for way in (headers_of_the_first_relays, no_headers, event_headers)}
    for way, events in cases.items():
        await written(kafka_settings, events, way)
    everything = [event for events in cases.values() for event in events]
    topics = [kafka_settings.topic_of(p) for p in (Producer.INTAKE, Producer.TRIAGE, Producer.DISPATCH)]

    # What the consumers, the relay's check, a replay and the bench recognise a record by.
    async with log_reader(kafka_settings.kafka_bootstrap_servers) as reader:
        records = [
            record async for batch in read_all(reader, await partitions_of(reader, topics)) for _, record in batch
        ]
    assert sorted((record_event_type(r), record_event_id(r)) for r in records) == sorted(
        (e.type, str(e.event_id)) for e in everything
    )

    # caseloop log / timeline from the topics: one case's events.
    for events in cases.values():
        found = await case_events_from_topics(kafka_settings.kafka_bootstrap_servers, topics, events[0].case_id)
        assert sorted(e.event_id for e in found) == sorted(e.event_id for e in events)

    # caseloop replay: every record handled, the projection rebuilt for each case.
    report = await replay_service(DISPATCH, kafka_settings, database_url)
    assert (report.records, report.handled, report.skipped) == (len(everything), len(everything), [])
    assignments = DISPATCH.metadata.tables["assignments"]
    async with connected(database_url) as db:
        rows = (await db.execute(select(assignments.c.case_id, assignments.c.status))).all()
    assert sorted(rows) == sorted((str(events[0].case_id), "acknowledged") for events in cases.values())

    # caseloop republish: the outbox's events are found on the topic whatever their headers, so none is sent again.
    service = DISPATCH.service(outbox_database, kafka_settings)
    await service.database.create_schema()
    for events in cases.values():
        uow = service.unit_of_work()
        await uow.load(events[0].case_id)
        uow.emit(*(e for e in events if e.producer is Producer.DISPATCH))
        await uow.commit()
    async with service.database.transaction() as session:
        await session.execute(update(service.database.tables.outbox).values(published_at=datetime.now(UTC)))
    await service.database.dispose()
    again = await republish_service(DISPATCH, kafka_settings, outbox_database)
    assert (again.in_outbox, again.already_on_topic, again.published) == (6, 6, 0)
