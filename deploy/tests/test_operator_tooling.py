"""The operator tooling's parts on a real broker and real databases (SQLite and PostgreSQL):
replay in bulk, diff, carry-over and swap of a shadow, republish of a lost topic."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy import insert, select, update

from caseloop_deploy.compare import DifferenceKind, compare_projections
from caseloop_deploy.databases import (
    connected,
    copy_tables,
    drop_database,
    recreate_database,
    same_database,
    sibling_url,
    swap_in,
)
from caseloop_deploy.logread import case_events_from_topics
from caseloop_deploy.replay import Batch, ReplayReport, _replay_batch, replay_service
from caseloop_deploy.republish import republish_service
from caseloop_deploy.services import ServiceSpec, service_spec
from caseloop_dispatch.domain.model import DispatchCase
from caseloop_dispatch.service_layer.handlers import Work
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned
from caseloop_events.contracts.envelope import Envelope, EventPayload, Producer
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.streams import Stream, StreamCache
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.testing.fixtures import causal_chain, publish

DISPATCH = service_spec("dispatch")
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)


def an_acknowledged_case() -> list[Envelope]:
    payloads: list[EventPayload] = [
        CaseAccepted(
            case_no=f"CL{uuid.uuid4().int % 10**9:09d}",
            source_system="hotline-12345",
            external_id=str(uuid.uuid4()),
            title="路灯不亮",
            description="整条路的路灯都不亮",
            location=LOCATION,
            accepted_at=datetime.now(UTC),
        ),
        CaseJudged(
            category="streetlight",
            risk_level=4,
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


async def publish_all(kafka: KafkaSettings, events: list[Envelope]) -> None:
    for event in events:
        await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(event.producer), event)


@pytest.fixture
async def shadow(database_url: str) -> AsyncIterator[str]:
    url = sibling_url(database_url, "shadow")
    await recreate_database(url)
    try:
        yield url
    finally:
        await drop_database(url)


async def test_a_replay_rebuilds_the_projection_in_bulk_and_a_second_replay_skips_what_it_processed(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    cases = [an_acknowledged_case() for _ in range(5)]
    for events in cases:
        await publish_all(kafka_settings, events)

    first = await replay_service(DISPATCH, kafka_settings, database_url, batch_size=7)
    assert (first.records, first.handled, first.duplicates, first.skipped) == (20, 20, 0, [])
    assert first.events_per_second > 0
    again = await replay_service(DISPATCH, kafka_settings, database_url)
    assert (again.records, again.handled, again.duplicates) == (20, 0, 20)

    assignments = DISPATCH.metadata.tables["assignments"]
    async with connected(database_url) as db:
        rows = (await db.execute(select(assignments.c.case_id, assignments.c.status))).all()
        emitted = (await db.execute(select(DISPATCH.metadata.tables["outbox"]))).all()
    assert sorted(rows) == sorted((str(events[0].case_id), "acknowledged") for events in cases)
    assert emitted == [], "a replay decides nothing: no assignment of its own, nothing in the outbox"


async def test_a_replay_in_worker_processes_builds_what_one_process_builds(
    kafka_settings: KafkaSettings, database_url: str, shadow: str
) -> None:
    await ensure_topics(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.caseloop_topic_partitions,
        kafka_settings.caseloop_topic_replication,
        kafka_settings.all_topics,
    )
    cases = [an_acknowledged_case() for _ in range(9)]
    for events in cases:
        await publish_all(kafka_settings, events)
    await publish_all(kafka_settings, cases[0][-1:])  # delivered twice, as after a relay's crash

    alone = await replay_service(DISPATCH, kafka_settings, database_url, workers=1)
    shared = await replay_service(DISPATCH, kafka_settings, shadow, workers=2)

    assert (alone.records, alone.handled, alone.duplicates, alone.skipped) == (37, 36, 1, [])
    assert (shared.records, shared.handled, shared.duplicates, shared.skipped) == (37, 36, 1, [])
    assert await compare_projections(DISPATCH, database_url, shadow) == []
    async with connected(shadow) as db:
        checkpoints = DISPATCH.metadata.tables["consumer_checkpoints"]
        partitions = (await db.execute(select(checkpoints.c.topic, checkpoints.c.partition))).all()
    assert len(partitions) == len(set(partitions)) > 3, "every partition's checkpoint, written by its worker"


async def test_a_replay_up_to_an_offset_stops_there(kafka_settings: KafkaSettings, database_url: str) -> None:
    await publish_all(kafka_settings, an_acknowledged_case())
    partial = await replay_service(DISPATCH, kafka_settings, database_url, stop=0)
    assert partial.records == 0


async def test_diff_finds_a_changed_a_missing_and_an_extra_row(
    kafka_settings: KafkaSettings, database_url: str, shadow: str
) -> None:
    for _ in range(3):
        await publish_all(kafka_settings, an_acknowledged_case())
    await replay_service(DISPATCH, kafka_settings, database_url)
    await replay_service(DISPATCH, kafka_settings, shadow)
    assert await compare_projections(DISPATCH, database_url, shadow) == []

    assignments = DISPATCH.metadata.tables["assignments"]
    async with connected(database_url) as live:
        case_ids = sorted((await live.scalars(select(assignments.c.case_id))).all())
        await live.execute(update(assignments).where(assignments.c.case_id == case_ids[0]).values(unit_id="U-BAD"))
        await live.execute(assignments.delete().where(assignments.c.case_id == case_ids[1]))
        await live.commit()
    async with connected(shadow) as db:
        log = DISPATCH.metadata.tables["case_events"]
        stray = an_acknowledged_case()[0]
        await db.execute(
            insert(log).values(
                event_id=str(stray.event_id),
                case_id=str(stray.case_id),
                type=stray.type,
                producer=stray.producer.value,
                occurred_at=stray.occurred_at,
                envelope=stray.model_dump_json(),
            )
        )
        await db.commit()

    found = {(d.table, d.kind) for d in await compare_projections(DISPATCH, database_url, shadow)}
    assert found == {
        ("assignments", DifferenceKind.DIFFERS),
        ("assignments", DifferenceKind.ONLY_IN_SHADOW),
        ("case_events", DifferenceKind.ONLY_IN_SHADOW),
    }
    differences = await compare_projections(DISPATCH, database_url, shadow)
    [changed] = [d for d in differences if d.kind is DifferenceKind.DIFFERS]
    assert changed.key == {"case_id": case_ids[0]}
    assert changed.columns == {"unit_id": ("U-BAD", "U-X")}


async def test_a_promotion_carries_the_outbox_over_and_swaps_the_databases(database_url: str, shadow: str) -> None:
    spec: ServiceSpec = DISPATCH
    for url in (database_url, shadow):
        service = spec.service(url, KafkaSettings())
        await service.database.create_schema()
        await service.database.dispose()
    outbox = spec.metadata.tables["outbox"]
    row = {
        "event_id": str(uuid.uuid4()),
        "case_id": str(uuid.uuid4()),
        "type": "case.assigned",
        "topic": "caseloop.dispatch.v1",
        "envelope": "{}",
        "created_at": datetime.now(UTC),
    }
    async with connected(database_url) as live:
        await live.execute(insert(outbox).values(**row))
        await live.commit()

    copied = await copy_tables(database_url, shadow, spec.metadata, spec.carried_over)
    assert copied == {"outbox": 1, "personal_data_reads": 0}
    kept = await swap_in(shadow, database_url)
    try:
        async with connected(database_url) as promoted:
            assert (await promoted.scalars(select(outbox.c.event_id))).all() == [row["event_id"]]
            # The promoted database takes new events: the outbox's serial key is past the copied rows.
            await promoted.execute(insert(outbox).values(**{**row, "event_id": str(uuid.uuid4())}))
            await promoted.commit()
            assert len((await promoted.scalars(select(outbox.c.position))).all()) == 2
        async with connected(kept) as old:
            assert (await old.scalars(select(outbox.c.event_id))).all() == [row["event_id"]]
    finally:
        await drop_database(kept)


async def test_republish_sends_only_what_the_topic_lacks_and_a_second_run_sends_nothing(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    spec = DISPATCH
    service = spec.service(database_url, kafka_settings)
    await service.database.create_schema()
    events = [e for e in an_acknowledged_case() if e.producer is Producer.DISPATCH]
    uow = service.unit_of_work()
    await uow.load(events[0].case_id)
    uow.emit(*events)
    await uow.commit()
    async with service.database.transaction() as session:
        # Published once (the relay's mark), then lost with the broker's data.
        await session.execute(update(service.database.tables.outbox).values(published_at=datetime.now(UTC)))
    await service.database.dispose()
    # The topics as the services create them at start, then one of the two events on the topic.
    await ensure_topics(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.caseloop_topic_partitions,
        kafka_settings.caseloop_topic_replication,
        kafka_settings.all_topics,
    )
    await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(Producer.DISPATCH), events[0])

    first = await republish_service(spec, kafka_settings, database_url)
    assert (first.in_outbox, first.already_on_topic, first.published) == (2, 1, 1)
    second = await republish_service(spec, kafka_settings, database_url)
    assert (second.already_on_topic, second.published) == (2, 0)
    topics = [kafka_settings.topic_of(Producer.DISPATCH)]
    on_topic = await case_events_from_topics(kafka_settings.kafka_bootstrap_servers, topics, events[0].case_id)
    assert [e.event_id for e in on_topic] == [e.event_id for e in events]


def test_a_replay_or_a_promotion_never_names_the_live_database_as_its_shadow(tmp_path: Path) -> None:
    live = f"sqlite+aiosqlite:///{tmp_path}/dispatch.db"
    assert same_database(live, f"sqlite+aiosqlite:///{tmp_path}/../{tmp_path.name}/dispatch.db")
    assert not same_database(live, sibling_url(live, "shadow"))
    pg = "postgresql+asyncpg://postgres@127.0.0.1:5432/caseloop_dispatch"
    assert same_database(pg, "postgresql+asyncpg://other@127.0.0.1/caseloop_dispatch")
    assert sibling_url(pg, "shadow").endswith("/caseloop_dispatch_shadow")


async def test_a_batch_undone_by_a_failing_projection_leaves_no_trace_in_the_streams_the_replay_keeps(
    database_url: str,
) -> None:
    """The replay keeps the streams it wrote across batches. A batch whose projection fails is undone
    and taken record by record; what the undone unit of work recorded must not stay in the kept
    streams, or the record skipped for good would still be folded into its case."""
    case = an_acknowledged_case()
    accepted, judged, assigned, acknowledged = case
    bad = assigned.event_id
    folded: list[list[uuid.UUID]] = []

    async def project(stream: Stream[DispatchCase], uow: Work) -> None:
        if any(e.event_id == bad for e in stream.events):
            raise RuntimeError("this projection cannot take the assignment")
        folded.append([e.event_id for e in stream.events])

    spec = ServiceSpec("dispatch", dataclasses.replace(DISPATCH.definition, project=project))
    service = spec.service(database_url, KafkaSettings())
    await service.database.create_schema()

    def batch(*events: Envelope, first_offset: int) -> Batch:
        tp = TopicPartition("t", 0)
        return [
            (tp, ConsumerRecord("t", 0, first_offset + n, 0, 0, None, e.model_dump_json().encode(), None, 0, 0, []))
            for n, e in enumerate(events)
        ]

    kept: StreamCache[DispatchCase] = StreamCache(10)
    report = ReplayReport("dispatch")
    try:
        await _replay_batch(service, batch(accepted, judged, first_offset=0), report, kept)
        await _replay_batch(service, batch(assigned, acknowledged, first_offset=2), report, kept)
        assert report.skipped == ["t[0]@2: RuntimeError('this projection cannot take the assignment')"]
        in_database = [e.event_id for e in await service.database.case_events(accepted.case_id)]
        assert bad not in in_database
        assert folded[-1] == in_database, "the last fold saw what the database holds, not the undone assignment"
    finally:
        await service.database.dispose()
