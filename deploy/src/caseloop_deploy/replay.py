"""Rebuild a service's projections from the log into a database of its own (DESIGN.md §3, replay mode).

The service's own handler does the work, called with ``replaying=True``: it folds and projects,
and decides nothing — no new events, no callbacks, no timers. Records are read in batches and
each batch is one transaction: the events the service keeps are recorded with one statement, the
handler folds and projects each case once per batch (on its last event), and the processed ids and
checkpoints are written at once — one commit and one projection per case per batch, not per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from caseloop_deploy.databases import DatabaseUnreachable
from caseloop_deploy.logread import Position, Progress, log_reader, partitions_of, read_range, resolve_offsets
from caseloop_deploy.services import ServiceSpec
from caseloop_events.contracts.envelope import Envelope, UnknownEventType
from caseloop_events.runtime.consumer import Delivery, EventHandler
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.unit_of_work import CaseLogs, Database

log = logging.getLogger(__name__)

#: Records per transaction: large enough that commits do not dominate, small enough to retry.
BATCH_SIZE = 2000
#: Cases whose parsed logs the replay keeps between batches (it alone writes the target database):
#: a case met again in a later batch — its events on another topic — is neither read nor parsed
#: again. About 40 MB per 1,000 cases of a dozen events.
KEPT_CASE_LOGS = 5000


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
    runtime = spec.runtime(target_url, kafka)
    database, handle, keeps = runtime.database, runtime.handle, runtime.keeps
    assert handle is not None, f"{spec.name} reads no topic"
    report = ReplayReport(spec.name)
    kept_logs = CaseLogs(KEPT_CASE_LOGS)
    began = time.monotonic()
    try:
        try:
            await database.create_schema()
        except OSError as error:
            raise DatabaseUnreachable(target_url, error) from error
        async with log_reader(kafka.kafka_bootstrap_servers) as consumer:
            partitions = await partitions_of(consumer, runtime.consumes)
            first = await resolve_offsets(consumer, partitions, start, default_end=False)
            last = await resolve_offsets(consumer, partitions, stop, default_end=True)
            total = sum(max(last[tp] - first[tp], 0) for tp in partitions)
            shown = time.monotonic()
            async for batch in read_range(consumer, first, last, batch_size=batch_size):
                await _replay_batch(spec.name, database, handle, keeps, batch, report, kept_logs)
                report.records += len(batch)
                if progress is not None and (time.monotonic() - shown > 1.0 or report.records == total):
                    shown = time.monotonic()
                    rate = report.records / max(shown - began, 1e-9)
                    progress(f"{spec.name}: {report.records:,} of {total:,} records ({rate:,.0f} events/s)")
    finally:
        await database.dispose()
        report.seconds = time.monotonic() - began
    return report


Batch = list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]
Keeps = Callable[[Envelope], bool]


async def _replay_batch(
    name: str,
    database: Database,
    handle: EventHandler,
    keeps: Keeps,
    batch: Batch,
    report: ReplayReport,
    kept_logs: CaseLogs,
) -> None:
    try:
        handled, duplicates = await _in_one_transaction(name, database, handle, keeps, batch, kept_logs)
    except Exception:
        # One record spoils the batch: take them one by one, so only that record is skipped. The
        # kept logs hold what the undone transaction recorded: they go.
        kept_logs.clear()
        handled = duplicates = 0
        for item in batch:
            try:
                one_handled, one_duplicate = await _in_one_transaction(name, database, handle, keeps, [item], kept_logs)
            except Exception as error:
                kept_logs.clear()
                tp, record = item
                report.skipped.append(f"{tp.topic}[{tp.partition}]@{record.offset}: {error!r}")
                log.warning("replay of %s skipped %s[%d]@%d: %r", name, tp.topic, tp.partition, record.offset, error)
                await _save_checkpoints(name, database, [item])
                continue
            handled += one_handled
            duplicates += one_duplicate
    report.handled += handled
    report.duplicates += duplicates


async def _in_one_transaction(
    name: str, database: Database, handle: EventHandler, keeps: Keeps, batch: Batch, kept_logs: CaseLogs
) -> tuple[int, int]:
    """The batch in one transaction, in bulk: the events the service keeps are recorded at once,
    and the handler runs once per case, on the case's last event — it folds the case from its
    whole log and projects it, which is what it would have left after each event in turn (the
    handler's own recording of that event finds it recorded already)."""
    decoded = [(tp, record, _decoded(record)) for tp, record in batch]
    async with database.transaction(kept_logs) as uow:
        seen = await uow.processed_among([event.event_id for _, _, event in decoded])
        fresh: dict[UUID, tuple[TopicPartition, ConsumerRecord[bytes, bytes], Envelope]] = {}
        for tp, record, event in decoded:
            if event.event_id not in seen:
                fresh.setdefault(event.event_id, (tp, record, event))
        last_of_case: dict[UUID, tuple[TopicPartition, ConsumerRecord[bytes, bytes], Envelope]] = {}
        kept: list[Envelope] = []
        for tp, record, event in fresh.values():
            if keeps(event):
                kept.append(event)
                last_of_case[event.case_id] = (tp, record, event)
        await uow.record_many(kept)
        for tp, record, event in last_of_case.values():
            await handle(uow, event, Delivery(tp.topic, tp.partition, record.offset, replaying=True))
        await uow.mark_processed_many(list(fresh))
        await uow.save_checkpoints(name, _next_offsets(batch))
    return len(fresh), len(decoded) - len(fresh)


async def _save_checkpoints(name: str, database: Database, batch: Batch) -> None:
    async with database.transaction() as uow:
        await uow.save_checkpoints(name, _next_offsets(batch))


def _next_offsets(batch: Batch) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for tp, record in batch:
        key = (tp.topic, tp.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets


class UndecodableRecord(ValueError):
    pass


def _decoded(record: ConsumerRecord[bytes, bytes]) -> Envelope:
    try:
        return Envelope.model_validate_json(record.value or b"")
    except (ValidationError, UnknownEventType, ValueError) as error:
        raise UndecodableRecord(f"undecodable event: {error}") from error
