"""Rebuild a service's projections from the log into a database of its own (DESIGN.md §3, replay mode).

No handler runs: every event of a type the service declares is recorded in its stream, and each
stream a batch touched is folded and projected once — no new events, no callbacks, no timers. A
batch of records is one unit of work: the streams it touches read at once, the events, the
projection rows and the checkpoints written at once. The replay is the target database's only
writer, so the streams it wrote stay in memory across batches and are never read back.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from caseloop_deploy.databases import DatabaseUnreachable, is_sqlite
from caseloop_deploy.logread import (
    Position,
    Progress,
    log_reader,
    partitions_of,
    read_range_in_time_order,
    resolve_offsets,
)
from caseloop_deploy.services import ServiceSpec, service_spec
from caseloop_events.runtime.consumer import Incoming, decoded
from caseloop_events.runtime.kafka import KafkaSettings, record_event_id, record_event_type
from caseloop_events.runtime.service import Service, tune_garbage_collection
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
    #: Processes that replayed partitions side by side.
    workers: int = 1

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        processes = f", {self.workers} processes" if self.workers > 1 else ""
        return (
            f"{self.service}: replayed {self.records:,} records in {self.seconds:.1f}s "
            f"({self.events_per_second:,.0f} events/s{processes}): "
            f"{self.handled:,} handled, "
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
    workers: int | None = None,
) -> ReplayReport:
    """Feed the topics ``spec`` reads, from ``start`` to ``stop`` (default: all of it), into the
    database at ``target_url`` (its schema is created if needed). ``workers`` processes share the
    partitions out by their number: a case's events are on the same partition number of every
    topic (its id is the key), so each worker has cases of its own and no two write one row.
    Default: ``default_workers``."""
    report = ReplayReport(spec.name)
    began = time.monotonic()
    service = spec.service(target_url, kafka)
    try:
        try:
            await service.database.create_schema()
        except OSError as error:
            raise DatabaseUnreachable(target_url, error) from error
        async with log_reader(kafka.kafka_bootstrap_servers) as consumer:
            partitions = await partitions_of(consumer, service.replays)
            first = await resolve_offsets(consumer, partitions, start, default_end=False)
            last = await resolve_offsets(consumer, partitions, stop, default_end=True)
    finally:
        await service.database.dispose()
    ranges = {(tp.topic, tp.partition): (first[tp], last[tp]) for tp in partitions}
    total = sum(max(end - begin, 0) for begin, end in ranges.values())
    numbers = sorted({tp.partition for tp in partitions})
    count = max(1, min(workers or default_workers(target_url, total), len(numbers)))
    shares = [numbers[n::count] for n in range(count)]
    report.workers = count
    if len(shares) <= 1:
        await _replay_share(spec.name, kafka, target_url, ranges, batch_size, report, _Progress(progress, total, began))
    else:
        await _replay_in_processes(spec.name, kafka, target_url, ranges, shares, batch_size, report, progress, total)
    report.seconds = time.monotonic() - began
    return report


#: Below this many records a replay runs in one process: starting another costs about a second.
PARALLEL_FROM_RECORDS = 50_000


def default_workers(target_url: str, records: int) -> int:
    """One process per core (at most four) on PostgreSQL for a log worth it; one on SQLite, whose
    writers wait for each other anyway."""
    if is_sqlite(target_url) or records < PARALLEL_FROM_RECORDS:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


class _Progress:
    """A progress line at most once a second: records replayed of all, and the rate."""

    def __init__(self, say: Progress | None, total: int, began: float) -> None:
        self._say, self._total, self._began, self._shown = say, total, began, time.monotonic()

    def __call__(self, name: str, records: int) -> None:
        if self._say is not None and (time.monotonic() - self._shown > 1.0 or records == self._total):
            self._shown = time.monotonic()
            rate = records / max(self._shown - self._began, 1e-9)
            self._say(f"{name}: {records:,} of {self._total:,} records ({rate:,.0f} events/s)")


Ranges = dict[tuple[str, int], tuple[int, int]]


async def _replay_share(
    name: str,
    kafka: KafkaSettings,
    target_url: str,
    ranges: Ranges,
    batch_size: int,
    report: ReplayReport,
    progress: Callable[[str, int], None] | None = None,
) -> None:
    """Replay the partitions of ``ranges`` (topic, partition → first and last offset) in this process."""
    if all(begin >= end for begin, end in ranges.values()):
        return
    service = service_spec(name).service(target_url, kafka)
    service.database.sole_writer = True
    kept: StreamCache[Any] = StreamCache(KEPT_STREAMS)
    try:
        async with log_reader(kafka.kafka_bootstrap_servers) as consumer:
            first = {TopicPartition(t, p): begin for (t, p), (begin, _) in ranges.items()}
            last = {TopicPartition(t, p): end for (t, p), (_, end) in ranges.items()}
            async for batch in read_range_in_time_order(consumer, first, last, batch_size=batch_size):
                await _replay_batch(service, batch, report, kept)
                report.records += len(batch)
                if progress is not None:
                    progress(name, report.records)
    finally:
        await service.database.dispose()


async def _replay_in_processes(
    name: str,
    kafka: KafkaSettings,
    target_url: str,
    ranges: Ranges,
    shares: list[list[int]],
    batch_size: int,
    report: ReplayReport,
    say: Progress | None,
    total: int,
) -> None:
    """One process per share of the partition numbers; their reports added up."""
    context = multiprocessing.get_context("spawn")
    done = context.Value("q", 0)
    with ProcessPoolExecutor(len(shares), mp_context=context, initializer=_keep_counter, initargs=(done,)) as pool:
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(
                pool,
                _replay_share_in_a_process,
                name,
                kafka.model_dump(),
                target_url,
                {key: span for key, span in ranges.items() if key[1] in share},
                batch_size,
            )
            for share in shares
        ]
        shown = _Progress(say, total, time.monotonic())
        pending = set(futures)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=1.0)
            shown(name, done.value)
        for future in futures:
            part = future.result()
            report.handled += part.handled
            report.duplicates += part.duplicates
            report.records += part.records
            report.skipped.extend(part.skipped)


_counter: Any = None


def _keep_counter(counter: Any) -> None:
    global _counter
    _counter = counter


def _replay_share_in_a_process(
    name: str, kafka: dict[str, Any], target_url: str, ranges: Ranges, batch_size: int
) -> ReplayReport:
    """A worker process: its share of the partitions, replayed; records counted in the shared counter."""
    tune_garbage_collection()
    report = ReplayReport(name)
    counted = 0

    def count(_name: str, records: int) -> None:
        nonlocal counted
        if _counter is not None:
            with _counter.get_lock():
                _counter.value += records - counted
        counted = records

    asyncio.run(_replay_share(name, KafkaSettings(**kafka), target_url, ranges, batch_size, report, count))
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
