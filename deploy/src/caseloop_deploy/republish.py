"""Restore a service's topic from its own event store, the outbox (DESIGN.md §3).

For when the broker lost its data: every event the service ever emitted is in its outbox, in the
order it was emitted. Republishing sends, in that order, each one the topic does not hold yet
(known by event id), so running it twice — or on a topic that lost only part of its log — adds
nothing twice. Consumers skip an event id they processed before, so no decision is taken again.

Run it on topics that lost everything, before the services publish anything new there (right
after the broker came back, or with the services stopped): events appended after new ones would
sit at offsets a consumer's checkpoint may already have passed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from aiokafka.errors import KafkaConnectionError, KafkaError
from sqlalchemy import select

from caseloop_deploy.databases import connected
from caseloop_deploy.logread import BrokerUnreachable, Progress, log_reader, log_writer, partitions_of, read_all
from caseloop_deploy.services import ServiceSpec
from caseloop_events.runtime.kafka import KafkaSettings, record_event_id, stored_event_headers
from caseloop_events.runtime.storage import OUTBOX_TABLE
from caseloop_events.runtime.topics import ensure_topics

#: Sends in flight before waiting for the broker's acknowledgements.
WINDOW = 500


@dataclass
class RepublishReport:
    service: str
    in_outbox: int = 0
    already_on_topic: int = 0
    published: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.service}: {self.in_outbox:,} events in the outbox, {self.already_on_topic:,} already on the "
            f"topic, {self.published:,} republished in {self.seconds:.1f}s"
        )


async def republish_service(
    spec: ServiceSpec, kafka: KafkaSettings, live_url: str, progress: Progress | None = None
) -> RepublishReport:
    report = RepublishReport(spec.name)
    began = time.monotonic()
    outbox = spec.metadata.tables[OUTBOX_TABLE]
    async with connected(live_url) as connection:
        rows = (
            await connection.execute(
                # Only what was published once: the relay publishes the rest itself.
                select(outbox.c.event_id, outbox.c.case_id, outbox.c.topic, outbox.c.envelope, outbox.c.traceparent)
                .where(outbox.c.published_at.is_not(None))
                .order_by(outbox.c.position)
            )
        ).all()
    report.in_outbox = len(rows)
    topics = sorted({row.topic for row in rows})
    try:
        await ensure_topics(
            kafka.kafka_bootstrap_servers,
            kafka.caseloop_topic_partitions,
            kafka.caseloop_topic_replication,
            kafka.all_topics,
            kafka.security(),
        )
    except (KafkaConnectionError, KafkaError, OSError) as error:
        raise BrokerUnreachable(kafka.kafka_bootstrap_servers, error) from error
    on_topic = await _event_ids_on(kafka.kafka_bootstrap_servers, topics, progress)
    missing = [row for row in rows if row.event_id not in on_topic]
    report.already_on_topic = len(rows) - len(missing)
    async with log_writer(kafka, f"caseloop-republish-{spec.name}") as producer:
        for start in range(0, len(missing), WINDOW):
            window = missing[start : start + WINDOW]
            sent = [
                await producer.send(
                    row.topic,
                    value=row.envelope.encode(),
                    key=row.case_id.encode(),
                    # With the trace context it was emitted in: its readers join that trace.
                    headers=stored_event_headers(json.loads(row.envelope), traceparent=row.traceparent),
                )
                for row in window
            ]
            await asyncio.gather(*sent)
            report.published += len(window)
            if progress is not None:
                progress(f"{spec.name}: republished {report.published:,} of {len(missing):,}")
    report.seconds = time.monotonic() - began
    return report


async def _event_ids_on(bootstrap_servers: str, topics: list[str], progress: Progress | None) -> set[str]:
    """The ids of the events the topics hold now (from the ``ce_id`` header, else the body: a record
    written without headers counts too)."""
    ids: set[str] = set()
    async with log_reader(bootstrap_servers) as consumer:
        async for batch in read_all(consumer, await partitions_of(consumer, topics)):
            ids.update(filter(None, (record_event_id(record) for _tp, record in batch)))
            if progress is not None:
                progress(f"found {len(ids):,} events already on {', '.join(topics)}")
    return ids
