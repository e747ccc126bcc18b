"""Rebuild a service's projections from the log into a database of its own (DESIGN.md §3, replay mode).

No handler runs: every event of a type the service declares is recorded in its stream, and each
stream a batch touched is folded and projected once — no new events, no callbacks, no timers. A
batch of records is one unit of work: the streams it touches read at once, the events, the
projection rows and the checkpoints written at once. The replay is the target database's only
writer, so the streams it wrote stay in memory across batches and are never read back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from caseloop_deploy.databases import DatabaseUnreachable
from caseloop_deploy.logread import Position, Progress, log_reader, partitions_of, read_range, resolve_offsets
from caseloop_deploy.services import ServiceSpec
from caseloop_events.runtime.consumer import Incoming, decoded
from caseloop_events.runtime.kafka import KafkaSettings, record_event_id, record_event_type
from caseloop_events.runtime.service import Service
from caseloop_events.runtime.streams import StreamCache
from caseloop_events.runtime.unit_of_work import Checkpoint

log = logging.getLogger(__name__)

#: Records per unit of work: large enough that writes do not dominate, small enough to retry.
BATCH_SIZE = 2000
#: Streams (cases) whose events and state the replay keeps between batches: a case met again in a
#: later batch (its events on another topic) is neither read nor folded again.
KEPT_STREAMS = 20_000


@dataclass
class ReplayReport:
    service: str
    records: int = 0
    handled: int = 0
    duplicates: int = 0
    #: Records no handler could take (undecodable, or the handler failed): the live consumer
    #: dead-lettered them too. "topic[partition]@offset: why".
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.service}: replayed {self.records:,} records in {self.seconds:.1f}s "
            f"({self.events_per_second:,.0f} events/s): {self.handled:,} handled, "
            f"{self.duplicates:,} already processed, {len(self.skipped):,} skipped"
        )


async def replay_service(
    spec: ServiceSpec,
    kafka: KafkaSettings,
    target_url: str,
    *,
    start: Position = None,
    stop: Position = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> ReplayReport:
    """Feed the topics ``spec`` reads, from ``start`` to ``stop`` (default: all of it), into the
    database at ``target_url`` (its schema is created if needed)."""
    service = spec.service(target_url, kafka)
    report = ReplayReport(spec.name)
    kept: StreamCache[Any] = StreamCache(KEPT_STREAMS)
    began = time.monotonic()
    try:
        try:
            await service.database.create_schema()
        except OSError as error:
            raise DatabaseUnreachable(target_url, error) from error
        async with log_reader(kafka.kafka_bootstrap_servers) as consumer:
            partitions = await partitions_of(consumer, service.replays)
            first = await resolve_offsets(consumer, partitions, start, default_end=False)
            last = await resolve_offsets(consumer, partitions, stop, default_end=True)
            total = sum(max(last[tp] - first[tp], 0) for tp in partitions)
            shown = time.monotonic()
            async for batch in read_range(consumer, first, last, batch_size=batch_size):
                await _replay_batch(service, batch, report, kept)
                report.records += len(batch)
                if progress is not None and (time.monotonic() - shown > 1.0 or report.records == total):
                    shown = time.monotonic()
                    rate = report.records / max(shown - began, 1e-9)
                    progress(f"{spec.name}: {report.records:,} of {total:,} records ({rate:,.0f} events/s)")
    finally:
        await service.database.dispose()
        report.seconds = time.monotonic() - began
    return report


Batch = list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]


async def _replay_batch(
    service: Service[Any, Any, Any], batch: Batch, report: ReplayReport, kept: StreamCache[Any]
) -> None:
    """The batch in one unit of work; a record that spoils it (undecodable, or its projection fails)
    sends the batch the long way: record by record, so only that record is skipped."""
    wanted: list[Incoming] = []
    for tp, record in batch:
        event_type = record_event_type(record)
        if event_type is None or service.wants(event_type):
            incoming = decoded(tp, record)
            if incoming is None:
                return await _one_by_one(service, batch, report, kept)
            wanted.append(incoming)
    try:
        taken = await service.rebuild(wanted, _checkpoints(service.name, batch), kept)
    except Exception:
        kept.clear()  # it holds what the undone unit of work recorded
        return await _one_by_one(service, batch, report, kept)
    report.handled += taken.handled
    report.duplicates += taken.duplicates


async def _one_by_one(
    service: Service[Any, Any, Any], batch: Batch, report: ReplayReport, kept: StreamCache[Any]
) -> None:
    for tp, record in batch:
        event_type = record_event_type(record)
        if event_type is not None and not service.wants(event_type):
            await service.save_checkpoints(_checkpoints(service.name, [(tp, record)]))
            continue
        try:
            incoming = decoded(tp, record)
            if incoming is None:
                raise UndecodableRecord("undecodable event")
            taken = await service.rebuild([incoming], _checkpoints(service.name, [(tp, record)]), kept)
        except Exception as error:
            kept.clear()
            report.skipped.append(f"{tp.topic}[{tp.partition}]@{record.offset}: {error!r}")
            log.warning(
                "replay of %s skipped %s[%d]@%d: %r", service.name, tp.topic, tp.partition, record.offset, error
            )
            await service.save_checkpoints(_checkpoints(service.name, [(tp, record)]))
            continue
        report.handled += taken.handled
        report.duplicates += taken.duplicates


def _checkpoints(name: str, batch: Batch) -> list[Checkpoint]:
    """Each partition's position after the batch, under the service's own consumer name, so a
    promoted shadow resumes reading where the replay stopped."""
    last: dict[TopicPartition, ConsumerRecord[bytes, bytes]] = {}
    for tp, record in batch:
        if tp not in last or record.offset > last[tp].offset:
            last[tp] = record
    return [Checkpoint(name, tp.topic, tp.partition, r.offset + 1, record_event_id(r)) for tp, r in last.items()]


class UndecodableRecord(ValueError):
    pass
