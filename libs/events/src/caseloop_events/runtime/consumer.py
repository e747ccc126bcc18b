"""The consumer runtime: reads topics with manual partition assignment, seeks to the
checkpoints kept in the service's database, and hands each event to the service's handler
in the same transaction that records the event id and the new position (DESIGN.md §3)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from caseloop_events.contracts.envelope import Envelope, UnknownEventType
from caseloop_events.runtime.unit_of_work import Database, UnitOfWork

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
#: PostgreSQL's deadlock and serialization failures: the transaction lost a race, the event is fine.
LOST_RACE_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(error: BaseException) -> bool:
    """Whether the error says "try again later" (the database) rather than "this event is bad"."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, DBAPIError) and getattr(error.orig, "sqlstate", None) in LOST_RACE_SQLSTATES


#: How long one poll waits for records: as short as asyncio allows. A broker that answers an
#: empty fetch at once (noida-db does, whatever ``fetch_max_wait_ms`` asks) is asked again and
#: again while a poll waits; ``FetchPacer`` rests between polls instead.
FETCH_WINDOW_MS = 1
#: How long a broker may hold an empty fetch (Kafka's default is 500 ms; noida-db never holds one).
FETCH_MAX_WAIT_MS = 10
#: The longest a caught-up consumer rests, not fetching, before it asks the broker again: what an
#: event arriving at an idle service may wait at most. The rest doubles from 2 ms up to this.
MAX_IDLE_WAIT = 0.05


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
        max_idle_wait: float = MAX_IDLE_WAIT,
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
        self._max_idle_wait = max_idle_wait
        self._pacer = FetchPacer(None, max_idle_wait)
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
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await consumer.start()
        self._consumer = consumer
        self._pacer = FetchPacer(consumer, self._max_idle_wait)
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
                await self.poll_once(timeout_ms=FETCH_WINDOW_MS)
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
        """Fetch and process one batch, in one transaction; returns how many records it held.
        With nothing new on any partition, rest a little first (``FetchPacer``)."""
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        if not batches:
            await self._pacer.rest_when_caught_up(self.positions.keys())
            return 0
        self._pacer.got_records()
        await self._process_together(batches)
        return sum(len(records) for records in batches.values())

    async def _process_together(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Every record of one poll in one transaction: the handler's changes, the processed event
        ids and each partition's checkpoint commit together, as for a single event (DESIGN.md §3),
        at the cost of one commit per poll instead of one per event. Records that do not decode,
        or a handler that fails, send the poll the long way instead: record by record, each in its
        own transaction, so only the bad one is retried and dead-lettered."""
        decoded: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], Envelope]] = []
        for tp, records in batches.items():
            for record in records:
                try:
                    decoded.append((tp, record, Envelope.model_validate_json(record.value or b"")))
                except (ValidationError, UnknownEventType, ValueError):
                    return await self._process_one_by_one(batches)
        attempt = 0
        while True:
            attempt += 1
            try:
                handled, duplicates = await self._handle_in_one_transaction(decoded)
                break
            except asyncio.CancelledError:
                raise
            except _HandlerFailed as failed:
                log.warning(
                    "%s: the handler failed on %s in a batch of %d; handling the batch event by event",
                    self.name,
                    failed.event_id,
                    len(decoded),
                    exc_info=failed.__cause__,
                )
                return await self._process_one_by_one(batches, tried_once=failed.event_id)
            except Exception as error:
                if is_transient(error):
                    log.warning("database unavailable while handling a batch (%s); retrying", error)
                    await asyncio.sleep(min(0.5 * attempt, 5.0))
                    continue
                log.warning(
                    "%s: a batch of %d failed; handling it event by event", self.name, len(decoded), exc_info=True
                )
                return await self._process_one_by_one(batches)
        for tp, records in batches.items():
            self.positions[tp] = records[-1].offset + 1
        self.handled_total += handled
        self.duplicates_total += duplicates
        self.processed_total += len(decoded)

    async def _handle_in_one_transaction(
        self, decoded: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], Envelope]]
    ) -> tuple[int, int]:
        """Hand each new event to the handler; returns how many were handled and how many skipped
        as processed before (or earlier in the same batch)."""
        handled: list[UUID] = []
        async with self._database.transaction() as uow:
            seen = await uow.processed_among([event.event_id for _, _, event in decoded])
            next_offsets: dict[TopicPartition, int] = {}
            for tp, record, event in decoded:
                next_offsets[tp] = record.offset + 1
                if event.event_id in seen:
                    continue
                seen.add(event.event_id)
                try:
                    await self._handle(uow, event, Delivery(tp.topic, tp.partition, record.offset, self._replaying))
                except Exception as error:
                    if is_transient(error):
                        raise
                    raise _HandlerFailed(event.event_id) from error
                handled.append(event.event_id)
            await uow.mark_processed_many(handled)
            await uow.save_checkpoints(self.name, {(tp.topic, tp.partition): n for tp, n in next_offsets.items()})
        return len(handled), len(decoded) - len(handled)

    async def _process_one_by_one(
        self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], tried_once: UUID | None = None
    ) -> None:
        """The long way; the event whose handler failed in the batch has had its first attempt."""
        for tp, records in batches.items():
            await self._process_in_order(tp, records, tried_once)

    async def _process_in_order(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]], tried_once: UUID | None = None
    ) -> None:
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
            await self._process(tp, record, tried_once)
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

    async def _process(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], tried_once: UUID | None = None
    ) -> None:
        delivery = Delivery(tp.topic, tp.partition, record.offset, self._replaying)
        try:
            event = Envelope.model_validate_json(record.value or b"")
        except (ValidationError, UnknownEventType, ValueError) as error:
            await self._send_to_deadletter(record, tp, f"undecodable event: {error_without_values(error)}")
            await self._advance(tp, record.offset)
            return
        attempt = 1 if event.event_id == tried_once else 0
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
            except Exception as error:
                if is_transient(error):
                    log.warning("database unavailable while handling %s (%s); retrying", event.event_id, error)
                    await asyncio.sleep(min(0.5 * attempt, 5.0))
                    continue
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


class FetchPacer:
    """Keeps a caught-up consumer from asking the broker for records hundreds of times a second.

    aiokafka fetches again as soon as an answer comes back, and relies on the broker to hold an
    empty fetch for ``fetch_max_wait_ms``. noida-db answers at once, so an idle consumer would be
    answered ~1,700 times a second and burn most of a core. Once a fetch answered since the last
    rest shows every partition read to its end, the partitions are paused (not fetched) for a
    rest that doubles from 2 ms up to ``max_idle_wait`` while nothing comes. Records fetched but
    not yet returned when the pause begins are dropped by aiokafka and fetched again: positions
    only move when records are returned, so nothing is skipped. A broker that holds an empty fetch
    (Kafka, ``fetch_max_wait_ms``) is asked with a short wait (``FETCH_MAX_WAIT_MS``), so the pacer,
    not the broker, sets the pace on every broker."""

    def __init__(self, consumer: AIOKafkaConsumer | None, max_idle_wait: float = MAX_IDLE_WAIT) -> None:
        self._consumer = consumer
        self._max_idle_wait = max_idle_wait
        self._idle_wait = 0.0
        # When fetching last resumed, on the clock aiokafka stamps fetch answers with (ms).
        self._resumed_at_ms = 0

    def got_records(self) -> None:
        self._idle_wait = 0.0

    async def rest_when_caught_up(self, partitions: Iterable[TopicPartition]) -> None:
        """Rest if every partition is read to its end, as a fetch answered since the last rest
        shows — or if no fetch has answered for a whole rest (a broker that holds fetches, or is
        away: a fetch still in flight during the rest is kept and returned after it)."""
        consumer = self._consumer
        partitions = list(partitions)
        if consumer is None or not partitions:
            return
        waited_ms = int(time.time() * 1000) - self._resumed_at_ms
        for tp in partitions:
            answered_at = consumer.last_poll_timestamp(tp)
            if answered_at is None or answered_at < self._resumed_at_ms:
                if waited_ms < self._max_idle_wait * 1000:
                    return
                continue
            highwater = consumer.highwater(tp)
            # aiokafka's own position, not a checkpoint: it is where fetching resumes (the log's
            # start when retention removed the records before a checkpoint).
            if highwater is None or highwater > await consumer.position(tp):
                return
        self._idle_wait = min(max(self._idle_wait * 2, 0.002), self._max_idle_wait)
        consumer.pause(*partitions)
        try:
            await asyncio.sleep(self._idle_wait)
        finally:
            consumer.resume(*partitions)
            self._resumed_at_ms = int(time.time() * 1000)


class _HandlerFailed(Exception):
    """The handler raised on this event, inside a batch (the cause is the handler's error)."""

    def __init__(self, event_id: UUID) -> None:
        super().__init__(f"the handler failed on {event_id}")
        self.event_id = event_id


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
