"""The consumer runtime: reads topics with manual partition assignment, seeks to the
checkpoints kept in the service's database, and hands each event to the service's handler
in the same transaction that records the event id and the new position (DESIGN.md §3)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from caseloop_events.envelope import Envelope, UnknownEventType
from caseloop_events.unit_of_work import Database, UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """Where an event came from, and whether it is being replayed (no decisions, no side effects)."""

    topic: str
    partition: int
    offset: int
    replaying: bool = False


EventHandler = Callable[[UnitOfWork, Envelope, Delivery], Awaitable[None]]

#: How often a handler that raises is tried before its event is dead-lettered. Database
#: outages are not counted: the consumer waits for the database rather than skip events.
HANDLER_ATTEMPTS = 3

#: Errors that say the database is unreachable or busy, not that the event is bad.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError, OSError)


class EventConsumer:
    """Consumes ``topics`` for one service, exactly-once in effect."""

    def __init__(
        self,
        *,
        name: str,
        topics: tuple[str, ...],
        bootstrap_servers: str,
        database: Database,
        handle: EventHandler,
        deadletter: AIOKafkaProducer,
        deadletter_topic: str,
        replaying: bool = False,
        max_records: int = 500,
    ) -> None:
        self.name = name
        self._topics = topics
        self._bootstrap_servers = bootstrap_servers
        self._database = database
        self._handle = handle
        #: Where dead letters go out (the runtime puts in a new producer when one failed).
        self.deadletter = deadletter
        self._deadletter_topic = deadletter_topic
        self._replaying = replaying
        self._max_records = max_records
        self._consumer: AIOKafkaConsumer | None = None
        self.processed_total = 0
        #: Events handed to the handler, and events skipped because their id was processed before
        #: (a redelivery, a republished topic): together they make ``processed_total``.
        self.handled_total = 0
        self.duplicates_total = 0
        self.deadlettered_total = 0
        self.positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Connect, assign every partition of the topics, and seek to the stored checkpoints."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=f"caseloop-{self.name}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        partitions = [
            TopicPartition(topic, p) for topic in self._topics for p in sorted(await self._partitions_of(topic))
        ]
        consumer.assign(partitions)
        self.positions = dict.fromkeys(partitions, 0)
        await self._seek_to_checkpoints()

    async def _partitions_of(self, topic: str) -> set[int]:
        assert self._consumer is not None
        for _ in range(50):
            partitions = self._consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            await self._consumer._client.force_metadata_update()  # topic just created
            await asyncio.sleep(0.2)
        raise RuntimeError(f"topic {topic} has no partitions; was it created?")

    async def _stored_checkpoints(self) -> dict[TopicPartition, int]:
        table = self._database.tables.checkpoints
        async with self._database.reading() as session:
            rows = await session.execute(
                select(table.c.topic, table.c.partition, table.c.next_offset).where(table.c.consumer == self.name)
            )
            return {TopicPartition(topic, partition): offset for topic, partition, offset in rows}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        """Consume until cancelled. A broker or database outage is waited out: after it, the
        consumer seeks back to the database checkpoints, so a half-processed batch is re-read."""
        backoff = 0.5
        while True:
            try:
                await self.poll_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s failed; resuming from the checkpoints in %.1fs", self.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                with suppress(Exception):
                    await self._seek_to_checkpoints()

    async def _seek_to_checkpoints(self) -> None:
        assert self._consumer is not None
        stored = await self._stored_checkpoints()
        for tp in self.positions:
            if tp in stored:
                self._consumer.seek(tp, stored[tp])
            else:
                await self._consumer.seek_to_beginning(tp)
            self.positions[tp] = stored.get(tp, 0)
        try:
            changed = await self._log_changed_under(stored)
        except Exception:  # the broker went away again: the next seek checks again
            log.warning("%s: could not check the records before the checkpoints", self.name, exc_info=True)
            changed = []
        for tp in changed:
            log.warning(
                "%s: %s[%d] is not the log this consumer read up to its checkpoint (the broker lost records): "
                "reading it again from its start",
                self.name,
                tp.topic,
                tp.partition,
            )
            await self._consumer.seek_to_beginning(tp)
            self.positions[tp] = 0

    async def _log_changed_under(self, checkpoints: dict[TopicPartition, int]) -> list[TopicPartition]:
        """The partitions whose record just before the checkpoint is not one this consumer
        processed: the broker lost the end of the partition, and what was written there since is
        another record, which reading on from the checkpoint would pass over."""
        before = {tp: offset - 1 for tp, offset in checkpoints.items() if offset > 0 and tp in self.positions}
        if not before:
            return []
        found = await records_at(self._bootstrap_servers, before)
        ids = {tp: event_id for tp, record in found.items() if (event_id := _event_id_in(record)) is not None}
        async with self._database.transaction() as uow:
            processed = await uow.processed_among([UUID(i) for i in ids.values()])
        return [tp for tp, event_id in ids.items() if UUID(event_id) not in processed]

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch and process one batch; returns how many records it held."""
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        count = 0
        for tp, records in batches.items():
            await self._process_in_order(tp, records)
            count += len(records)
        return count

    async def _process_in_order(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """One partition's records in order. Those whose event was processed before — a partition
        read again from its start after the broker lost records, a topic republished — are skipped
        in runs: one query finds them, one transaction moves the checkpoint past each run."""
        ids = {record.offset: _event_id_in(record) for record in records}
        async with self._database.transaction() as uow:
            seen = {str(i) for i in await uow.processed_among([UUID(i) for i in ids.values() if i is not None])}
        skipped_to: int | None = None
        skipped = 0
        for record in records:
            if ids[record.offset] in seen:
                skipped_to, skipped = record.offset, skipped + 1
                continue
            if skipped_to is not None:
                await self._skip(tp, skipped_to, skipped)
                skipped_to, skipped = None, 0
            await self._process(tp, record)
        if skipped_to is not None:
            await self._skip(tp, skipped_to, skipped)

    async def _skip(self, tp: TopicPartition, last_offset: int, count: int) -> None:
        await self._advance(tp, last_offset)
        self.duplicates_total += count
        self.processed_total += count

    def lag(self) -> int:
        """Records on the broker not yet processed (from the fetch high watermarks)."""
        if self._consumer is None:
            return 0
        total = 0
        for tp, position in self.positions.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                total += max(highwater - position, 0)
        return total

    async def _process(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        delivery = Delivery(tp.topic, tp.partition, record.offset, self._replaying)
        try:
            event = Envelope.model_validate_json(record.value or b"")
        except (ValidationError, UnknownEventType, ValueError) as error:
            await self._send_to_deadletter(record, tp, f"undecodable event: {error_without_values(error)}")
            await self._advance(tp, record.offset)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._database.transaction() as uow:
                    duplicate = await uow.is_processed(event.event_id)
                    if not duplicate:
                        await self._handle(uow, event, delivery)
                        await uow.mark_processed(event.event_id)
                    await uow.save_checkpoint(self.name, tp.topic, tp.partition, record.offset + 1)
                if duplicate:
                    self.duplicates_total += 1
                else:
                    self.handled_total += 1
                break
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as error:
                log.warning("database unavailable while handling %s (%s); retrying", event.event_id, error)
                await asyncio.sleep(min(0.5 * attempt, 5.0))
            except Exception as error:
                if attempt < HANDLER_ATTEMPTS:
                    log.exception("handler failed on %s %s (attempt %d)", event.type, event.event_id, attempt)
                    await asyncio.sleep(0.2 * attempt)
                    continue
                await self._send_to_deadletter(record, tp, f"handler failed: {error!r}")
                await self._advance(tp, record.offset)
                return
        self.positions[tp] = record.offset + 1
        self.processed_total += 1

    async def _advance(self, tp: TopicPartition, offset: int) -> None:
        async with self._database.transaction() as uow:
            await uow.save_checkpoint(self.name, tp.topic, tp.partition, offset + 1)
        self.positions[tp] = offset + 1

    async def _send_to_deadletter(self, record: ConsumerRecord[bytes, bytes], tp: TopicPartition, error: str) -> None:
        """Publish the raw record with the error and its origin; acknowledged before we move on."""
        log.error("dead-lettering %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, error)
        body = {
            "error": error,
            "consumer": self.name,
            "origin": {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
            },
            "key_b64": base64.b64encode(record.key).decode() if record.key is not None else None,
            "value_b64": base64.b64encode(record.value).decode() if record.value is not None else None,
            "headers": [[k, base64.b64encode(v).decode()] for k, v in (record.headers or ())],
        }
        await self.deadletter.send_and_wait(self._deadletter_topic, value=json.dumps(body).encode(), key=record.key)
        self.deadlettered_total += 1


async def records_at(
    bootstrap_servers: str, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes]]:
    """The record at each offset, where the partition holds one (read with a consumer of its own)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        found: dict[TopicPartition, ConsumerRecord[bytes, bytes]] = {}
        pending = set(offsets)
        deadline = asyncio.get_running_loop().time() + 30.0
        while pending and asyncio.get_running_loop().time() < deadline:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                at = [record for record in records if record.offset == offsets[tp]]
                if at:
                    found[tp] = at[0]
                pending.discard(tp)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and highwater <= offsets[tp]:
                    pending.discard(tp)  # the partition ends before the offset
        if pending:
            raise TimeoutError(f"could not read {sorted(pending)}")
        return found
    finally:
        await consumer.stop()


def _event_id_in(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The event id a record's body names, when it names a well-formed one (else the record goes
    the long way, to be handled or dead-lettered)."""
    try:
        event_id = json.loads(record.value or b"").get("event_id")
        return str(UUID(event_id)) if isinstance(event_id, str) else None
    except (ValueError, AttributeError):
        return None


def error_without_values(error: Exception) -> str:
    """What was wrong, without the values: a malformed case report may hold a reporter's name and
    phone, which must not reach the logs or the dead-letter record's error text."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors(include_input=False)
        )
    return str(error)
