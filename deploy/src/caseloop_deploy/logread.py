"""Reading caseloop's topics straight from the broker, with no service running."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from caseloop_events.contracts.envelope import Envelope, UnknownEventType
from caseloop_events.runtime.kafka import KafkaSettings, client_security

#: A position to read from or to: an offset (the same on every partition), a time, or the end.
Position = int | datetime | None

Progress = Callable[[str], None]


class BrokerStalled(RuntimeError):
    pass


class BrokerUnreachable(RuntimeError):
    def __init__(self, bootstrap_servers: str, error: BaseException) -> None:
        super().__init__(f"cannot reach the Kafka broker at {bootstrap_servers}: {error}")


@asynccontextmanager
async def log_reader(bootstrap_servers: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer with no group and no commits: it reads, and leaves no trace on the broker."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id="caseloop-operator",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
        **client_security(),
    )
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as error:
        await consumer.stop()
        raise BrokerUnreachable(bootstrap_servers, error) from error
    # aiokafka starts a background task for a consumer with no group and, when stopped before that
    # task first ran, stop() raises its CancelledError: let it run once before anything can stop it.
    await asyncio.sleep(0)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics (a topic the broker does not have has none)."""
    await consumer._client.force_metadata_update()
    return [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def resolve_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], position: Position, *, default_end: bool
) -> dict[TopicPartition, int]:
    """Each partition's offset for ``position``: an offset as given (within the log), the first record
    at or after a time, or the log's start (``default_end=False``) or end (``default_end=True``)."""
    ends = await consumer.end_offsets(partitions) if partitions else {}
    starts = await consumer.beginning_offsets(partitions) if partitions else {}
    if position is None:
        return dict(ends) if default_end else dict(starts)
    if isinstance(position, int):
        return {tp: min(max(position, starts[tp]), ends[tp]) for tp in partitions}
    stamp = int(position.timestamp() * 1000)
    found = await consumer.offsets_for_times(dict.fromkeys(partitions, stamp))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in partitions}


async def read_all(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *, batch_size: int = 1000
) -> AsyncIterator[list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]]:
    """Batches of every record the partitions hold now, from their start to their end."""
    start = await resolve_offsets(consumer, partitions, None, default_end=False)
    end = await resolve_offsets(consumer, partitions, None, default_end=True)
    async for batch in read_range(consumer, start, end, batch_size=batch_size):
        yield batch


@asynccontextmanager
async def log_writer(kafka: KafkaSettings, client_id: str) -> AsyncIterator[AIOKafkaProducer]:
    """A producer with the services' settings (acks=all), or a clear error when the broker is away."""
    producer = kafka.producer(client_id=client_id)
    try:
        await producer.start()
    except (KafkaConnectionError, KafkaError, OSError) as error:
        await producer.stop()
        raise BrokerUnreachable(kafka.kafka_bootstrap_servers, error) from error
    try:
        yield producer
    finally:
        await producer.stop()


async def read_range(
    consumer: AIOKafkaConsumer,
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    *,
    batch_size: int = 1000,
) -> AsyncIterator[list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]]:
    """Batches of records from ``start`` up to (not including) ``end``, partition by partition order kept."""
    pending = {tp for tp in start if start[tp] < end[tp]}
    if not pending:
        return
    consumer.assign(sorted(pending))
    for tp in pending:
        consumer.seek(tp, start[tp])
    idle_since = time.monotonic()
    while pending:
        fetched = await consumer.getmany(timeout_ms=1000, max_records=batch_size)
        batch = [(tp, r) for tp, records in fetched.items() for r in records if r.offset < end[tp]]
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
                # A partition read to its end is fetched no more: a broker that answers an empty
                # fetch at once (noida-db) would otherwise be asked in a loop, taking the CPU from
                # the work. The others are not paused while the caller works on a batch: aiokafka
                # drops the records it holds for a paused partition, and fetching them again and
                # again cost more than the work (the records it fetched ahead are the next batch).
                consumer.pause(tp)
        if batch:
            idle_since = time.monotonic()
            yield batch
        elif time.monotonic() - idle_since > 30:
            missing = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
            raise BrokerStalled(f"the broker sends nothing more for {missing} although its end is further on")


async def read_range_in_time_order(
    consumer: AIOKafkaConsumer,
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    *,
    batch_size: int = 1000,
) -> AsyncIterator[list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]]:
    """Like ``read_range``, but the partitions' records merged in the order they were written (their
    timestamps; ties: the order of the partitions given): a case's events, on four topics, come
    nearly in causal order, so a stream mostly grows at its end instead of being folded again.
    A record is handed on only when every partition not read to its end has one buffered to compare
    it with, so partition order is always kept."""
    buffered: dict[TopicPartition, deque[ConsumerRecord[bytes, bytes]]] = {tp: deque() for tp in start}
    order = {tp: n for n, tp in enumerate(start)}
    unread = {tp for tp in start if start[tp] < end[tp]}
    fetched = read_range(consumer, start, end, batch_size=batch_size)
    batch: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]] = []
    heads: list[tuple[int, int, int, TopicPartition]] = []

    def push_head(tp: TopicPartition) -> None:
        if buffered[tp]:
            record = buffered[tp][0]
            heapq.heappush(heads, (record.timestamp, order[tp], record.offset, tp))

    while unread or heads:
        # Every partition that may still bring an earlier record has one to compare with.
        while any(not buffered[tp] for tp in unread):
            try:
                more = await anext(fetched)
            except StopAsyncIteration:
                unread.clear()
                break
            for tp, record in more:
                if not buffered[tp]:
                    buffered[tp].append(record)
                    push_head(tp)
                else:
                    buffered[tp].append(record)
                if record.offset == end[tp] - 1:
                    unread.discard(tp)
        if not heads:
            break
        _, _, _, tp = heapq.heappop(heads)
        batch.append((tp, buffered[tp].popleft()))
        push_head(tp)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def partition_of_case(case_id: UUID, partitions: int) -> int:
    """The partition a producer sends a case's events to (key: the case id; Kafka's default partitioner)."""
    key = str(case_id).encode()
    chosen: int = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    return chosen


async def case_events_from_topics(
    bootstrap_servers: str, topics: Iterable[str], case_id: UUID, progress: Progress | None = None
) -> list[Envelope]:
    """Every event of one case on the topics: only the partition its key goes to is read."""
    key = str(case_id).encode()
    events: list[Envelope] = []
    async with log_reader(bootstrap_servers) as consumer:
        all_partitions = await partitions_of(consumer, topics)
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in all_partitions:
            by_topic.setdefault(tp.topic, []).append(tp)
        chosen = [tps[partition_of_case(case_id, len(tps))] for tps in by_topic.values()]
        read = 0
        async for batch in read_all(consumer, chosen):
            read += len(batch)
            for _tp, record in batch:
                if record.key == key and record.value:
                    try:
                        events.append(Envelope.model_validate_json(record.value))
                    except (ValidationError, UnknownEventType, ValueError):
                        continue  # a poison record: the consumers dead-lettered it

            if progress is not None:
                progress(f"read {read:,} records")
    return events
