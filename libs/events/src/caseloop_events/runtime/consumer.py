"""The consumer runtime: reads topics with manual partition assignment, seeks to the checkpoints
kept in the service's database, and hands each poll's events to the service in one unit of work
that also writes the checkpoints (DESIGN.md §3, ADR 0011, ADR 0014).

A record whose type the service declares no handler for is skipped without touching the database:
its partition's position moves in memory and is written with the next unit of work (or after a
second of nothing else to write). A poll whose handling fails is handled again record by record,
so only a poison record is dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from typing import Protocol
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from caseloop_events.contracts.envelope import Envelope, UnknownEventType, payload_class_for
from caseloop_events.runtime.kafka import client_security, record_event_id, record_event_type, record_traceparent
from caseloop_events.runtime.logs import bound_to_event
from caseloop_events.runtime.telemetry import within
from caseloop_events.runtime.unit_of_work import Checkpoint, VersionConflict

log = logging.getLogger(__name__)

#: How often a handler that raises is tried before its event is dead-lettered. Database
#: outages are not counted: the consumer waits for the database rather than skip events.
HANDLER_ATTEMPTS = 3

#: Errors that say the database is unreachable or busy, not that the event is bad.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError, OSError, VersionConflict)
#: PostgreSQL's deadlock and serialization failures: the transaction lost a race, the event is fine.
LOST_RACE_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(error: BaseException) -> bool:
    """Whether the error says "try again later" (the database, a lost race) rather than "this event is bad"."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    if isinstance(error, DBAPIError) and getattr(error.orig, "sqlstate", None) in LOST_RACE_SQLSTATES:
        return True
    # asyncpg's own errors, met on the connections the runtime drives directly.
    return getattr(error, "sqlstate", None) in LOST_RACE_SQLSTATES or type(error).__name__ in {
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "ConnectionFailureError",
        "TooManyConnectionsError",
        "CannotConnectNowError",
    }


#: How long one poll waits for records: as short as asyncio allows. A broker that answers an
#: empty fetch at once (noida-db does, whatever ``fetch_max_wait_ms`` asks) is asked again and
#: again while a poll waits; ``FetchPacer`` rests between polls instead.
FETCH_WINDOW_MS = 1
#: How long a broker may hold an empty fetch (Kafka's default is 500 ms; noida-db never holds one).
FETCH_MAX_WAIT_MS = 10
#: The longest a caught-up consumer rests, not fetching, before it asks the broker again: what an
#: event arriving at an idle service may wait at most. The rest doubles from 2 ms up to this.
MAX_IDLE_WAIT = 0.05
#: How long a consumer fetches nothing after a poll that held fewer records than it takes at once:
#: records written meanwhile come in one fetch and one unit of work (docs/performance.md).
LINGER = 0.005
#: How long a consumer back from a rest waits between two looks whether the broker answered its
#: fetch. The answer comes within a millisecond, and the sooner it is seen, the fewer fetches
#: aiokafka sends before the next rest (~3 instead of ~7 an idle second's 20 rests); looking on
#: every turn of the event loop saves one more but costs a busy service several per cent of a core.
ANSWER_CHECK_INTERVAL = 0.0005
#: The longest one call of ``FetchPacer.rest_when_caught_up`` rests before the consumer polls again
#: (and writes the positions it moved past skipped records).
RESTING_AT_MOST = 0.5
#: How long positions moved only past skipped records may wait before they are written on their own.
CHECKPOINT_DELAY = 1.0


@dataclass(frozen=True)
class Incoming:
    """An event read from a topic: where it came from, and its JSON as it came."""

    topic: str
    partition: int
    offset: int
    event: Envelope
    stored: str
    #: The W3C trace context of the span that published it (its ``traceparent`` header), if any.
    traceparent: str | None = None


@dataclass(frozen=True)
class Handled:
    """What a unit of work made of the events it was given."""

    handled: int
    duplicates: int


class EventSink(Protocol):
    """What a consumer hands events to: the service (``caseloop_events.runtime.service``)."""

    def wants(self, event_type: str) -> bool:
        """Whether the service declares a handler for this type of event."""
        ...

    async def take(self, events: Sequence[Incoming], checkpoints: Sequence[Checkpoint]) -> Handled:
        """Handle the events and write the checkpoints, in one unit of work."""
        ...

    async def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None: ...

    async def stored_checkpoints(self, consumer: str) -> dict[tuple[str, int], tuple[int, str | None]]: ...


class HandlerFailed(Exception):
    """The service's handler raised on this event (the cause is the handler's error)."""

    def __init__(self, event_id: UUID) -> None:
        super().__init__(f"the handler failed on {event_id}")
        self.event_id = event_id


class EventConsumer:
    """Consumes ``topics`` for one service, exactly-once in effect."""

    def __init__(
        self,
        *,
        name: str,
        topics: tuple[str, ...],
        bootstrap_servers: str,
        sink: EventSink,
        deadletter: AIOKafkaProducer,
        deadletter_topic: str,
        max_records: int = 500,
        max_idle_wait: float = MAX_IDLE_WAIT,
        linger: float = LINGER,
    ) -> None:
        self.name = name
        self._topics = topics
        self._bootstrap_servers = bootstrap_servers
        self._sink = sink
        #: Where dead letters go out (the runtime puts in a new producer when one failed).
        self.deadletter = deadletter
        self._deadletter_topic = deadletter_topic
        self._max_records = max_records
        self._max_idle_wait = max_idle_wait
        self._linger = linger
        self._pacer = FetchPacer(None, max_idle_wait)
        self._consumer: AIOKafkaConsumer | None = None
        #: Records read (handled, duplicates, skipped as not wanted, dead-lettered).
        self.processed_total = 0
        #: Events handed to the service's handlers, and events found in their stream already (a
        #: redelivery, a republished topic); records of types the service has no handler for.
        self.handled_total = 0
        self.duplicates_total = 0
        self.skipped_total = 0
        self.deadlettered_total = 0
        #: Polls written as one unit of work each (their wanted events, handled, with the checkpoints).
        self.polls_written_total = 0
        #: Where each partition stands: the next offset to read, in memory.
        self.positions: dict[TopicPartition, int] = {}
        # Positions past skipped records, not written yet, and since when.
        self._unwritten: dict[TopicPartition, Checkpoint] = {}
        self._unwritten_since: float | None = None

    async def start(self) -> None:
        """Connect, assign every partition of the topics, and seek to the stored checkpoints."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=f"caseloop-{self.name}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **client_security(),
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

    async def stop(self) -> None:
        """Write the positions not written yet (if the database answers), and disconnect."""
        if self._unwritten:
            with suppress(Exception):
                await self._write_unwritten()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        """Consume until cancelled. A broker or database outage is waited out: after it, the
        consumer seeks back to the database checkpoints, so a half-processed poll is read again."""
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
                    self._unwritten.clear()
                    self._unwritten_since = None
                    await self._seek_to_checkpoints()

    async def _seek_to_checkpoints(self) -> None:
        assert self._consumer is not None
        stored = await self._sink.stored_checkpoints(self.name)
        checkpoints: dict[TopicPartition, tuple[int, str | None]] = {
            TopicPartition(topic, partition): at for (topic, partition), at in stored.items()
        }
        for tp in self.positions:
            if tp in checkpoints:
                self._consumer.seek(tp, checkpoints[tp][0])
            else:
                await self._consumer.seek_to_beginning(tp)
            self.positions[tp] = checkpoints.get(tp, (0, None))[0]
        try:
            changed = await self._log_changed_under(checkpoints)
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

    async def _log_changed_under(
        self, checkpoints: dict[TopicPartition, tuple[int, str | None]]
    ) -> list[TopicPartition]:
        """The partitions whose record just before the checkpoint is not the one the consumer read
        there: the broker lost the end of the partition, and what was written there since is
        another record, which reading on from the checkpoint would pass over (ADR 0010)."""
        before = {
            tp: offset - 1
            for tp, (offset, last_event_id) in checkpoints.items()
            if offset > 0 and last_event_id is not None and tp in self.positions
        }
        if not before:
            return []
        found = await records_at(self._bootstrap_servers, before)
        return [tp for tp in before if tp not in found or record_event_id(found[tp]) != checkpoints[tp][1]]

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch and process one poll; returns how many records it held. With nothing new on any
        partition, rest a little first (``FetchPacer``)."""
        assert self._consumer is not None, "start() first"
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        if not batches:
            await self._write_unwritten_when_due()
            await self._pacer.rest_when_caught_up(self.positions.keys())
            return 0
        self._pacer.got_records()
        await self._process(batches)
        await self._write_unwritten_when_due()
        read = sum(len(records) for records in batches.values())
        if read < self._max_records:
            await self._pacer.linger(self.positions.keys(), self._linger)
        return read

    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """The poll's wanted events in one unit of work with every partition's checkpoint. A record
        that does not decode, or a handler that fails, sends the poll the long way instead: record
        by record, so that only the bad one is retried and dead-lettered."""
        wanted: list[Incoming] = []
        for tp, records in batches.items():
            for record in records:
                kind = self._kind_of(record)
                if kind is _Kind.POISON:
                    return await self._process_one_by_one(batches)
                if kind is _Kind.WANTED:
                    incoming = decoded(tp, record)
                    if incoming is None:
                        return await self._process_one_by_one(batches)
                    wanted.append(incoming)
        checkpoints = {tp: self._checkpoint(tp, records[-1]) for tp, records in batches.items()}
        if wanted:
            try:
                taken = await self._take(wanted, [*self._unwritten_merged(checkpoints).values()])
            except HandlerFailed as failed:
                log.warning(
                    "%s: the handler failed on %s in a poll of %d events; handling the poll record by record",
                    self.name,
                    failed.event_id,
                    len(wanted),
                    exc_info=failed.__cause__,
                )
                return await self._process_one_by_one(batches, tried_once=failed.event_id)
            self._written()
            self.polls_written_total += 1
            self.handled_total += taken.handled
            self.duplicates_total += taken.duplicates
        else:
            self._remember_unwritten(checkpoints)
        for tp, records in batches.items():
            self.positions[tp] = records[-1].offset + 1
        read = sum(len(records) for records in batches.values())
        self.skipped_total += read - len(wanted)
        self.processed_total += read

    async def _take(self, events: Sequence[Incoming], checkpoints: Sequence[Checkpoint]) -> Handled:
        """Hand the events to the service; a database outage or a lost race is waited out and the
        same events handed again, as often as it takes."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._sink.take(events, checkpoints)
            except asyncio.CancelledError:
                raise
            except HandlerFailed:
                raise
            except Exception as error:
                if not is_transient(error):
                    raise
                if not isinstance(error, VersionConflict):
                    log.warning("%s: database unavailable while handling a poll (%s); retrying", self.name, error)
                await asyncio.sleep(0 if isinstance(error, VersionConflict) else min(0.5 * attempt, 5.0))

    def _kind_of(self, record: ConsumerRecord[bytes, bytes]) -> _Kind:
        event_type = record_event_type(record)
        if event_type is None:
            return _Kind.POISON
        if self._sink.wants(event_type):
            return _Kind.WANTED
        try:
            payload_class_for(event_type)
        except UnknownEventType:
            return _Kind.POISON  # a type no contract describes: nobody can read it
        return _Kind.SKIPPED

    def _checkpoint(self, tp: TopicPartition, last: ConsumerRecord[bytes, bytes]) -> Checkpoint:
        return Checkpoint(self.name, tp.topic, tp.partition, last.offset + 1, record_event_id(last))

    def _unwritten_merged(self, checkpoints: dict[TopicPartition, Checkpoint]) -> dict[TopicPartition, Checkpoint]:
        return {**self._unwritten, **checkpoints}

    def _remember_unwritten(self, checkpoints: dict[TopicPartition, Checkpoint]) -> None:
        self._unwritten.update(checkpoints)
        if self._unwritten_since is None:
            self._unwritten_since = time.monotonic()

    def _written(self) -> None:
        self._unwritten.clear()
        self._unwritten_since = None

    async def _write_unwritten_when_due(self) -> None:
        if self._unwritten_since is not None and time.monotonic() - self._unwritten_since >= CHECKPOINT_DELAY:
            await self._write_unwritten()

    async def _write_unwritten(self) -> None:
        checkpoints = list(self._unwritten.values())
        await self._sink.save_checkpoints(checkpoints)
        self._written()

    async def _process_one_by_one(
        self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], tried_once: UUID | None = None
    ) -> None:
        """The long way; the event whose handler failed in the poll has had its first attempt."""
        for tp, records in batches.items():
            for record in records:
                await self._process_record(tp, record, tried_once)

    async def _process_record(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], tried_once: UUID | None
    ) -> None:
        checkpoint = self._checkpoint(tp, record)
        kind = self._kind_of(record)
        incoming = decoded(tp, record) if kind is _Kind.WANTED else None
        if kind is _Kind.SKIPPED:
            self._remember_unwritten({tp: checkpoint})
            self.skipped_total += 1
        elif kind is _Kind.POISON or incoming is None:
            await self._send_to_deadletter(record, tp, f"undecodable event: {_why_undecodable(record)}")
            await self._sink.save_checkpoints([*self._unwritten_merged({tp: checkpoint}).values()])
            self._written()
        else:
            # Its retries and its dead letter are logged naming its case, in its trace.
            with bound_to_event(incoming.event), within(incoming.traceparent):
                await self._take_alone(incoming, checkpoint, tp, record, tried_once)
        self.positions[tp] = record.offset + 1
        self.processed_total += 1

    async def _take_alone(
        self,
        incoming: Incoming,
        checkpoint: Checkpoint,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        tried_once: UUID | None,
    ) -> None:
        attempt = 1 if incoming.event.event_id == tried_once else 0
        while True:
            attempt += 1
            try:
                taken = await self._take([incoming], [*self._unwritten_merged({tp: checkpoint}).values()])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if attempt < HANDLER_ATTEMPTS:
                    log.exception(
                        "handler failed on %s %s (attempt %d)", incoming.event.type, incoming.event.event_id, attempt
                    )
                    await asyncio.sleep(0.2 * attempt)
                    continue
                cause = error.__cause__ if isinstance(error, HandlerFailed) and error.__cause__ else error
                await self._send_to_deadletter(record, tp, f"handler failed: {cause!r}")
                await self._sink.save_checkpoints([*self._unwritten_merged({tp: checkpoint}).values()])
                self._written()
                return
            self._written()
            self.handled_total += taken.handled
            self.duplicates_total += taken.duplicates
            return

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

    def end_offsets(self) -> dict[TopicPartition, int]:
        """Each assigned partition's end offset as the last fetch answer gave it (its high watermark:
        right on every broker, where Tansu's ListOffsets is not); a partition not fetched yet is left out."""
        if self._consumer is None:
            return {}
        ends = {tp: self._consumer.highwater(tp) for tp in self.positions}
        return {tp: end for tp, end in ends.items() if end is not None}

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


class _Kind(Enum):
    """What a record is to this consumer."""

    WANTED = "an event of a type the service handles"
    SKIPPED = "an event of a type the service has no handler for"
    POISON = "not an event any contract describes"


def decoded(tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> Incoming | None:
    """The record as an event with where it came from; None when it is not a valid event."""
    try:
        stored = (record.value or b"").decode()
        event = Envelope.model_validate_json(stored)
        return Incoming(tp.topic, tp.partition, record.offset, event, stored, record_traceparent(record))
    except (ValidationError, UnknownEventType, ValueError):
        return None


def _why_undecodable(record: ConsumerRecord[bytes, bytes]) -> str:
    try:
        Envelope.model_validate_json(record.value or b"")
    except (ValidationError, UnknownEventType, ValueError) as error:
        return error_without_values(error)
    return "no event type"


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

    async def linger(self, partitions: Iterable[TopicPartition], seconds: float) -> None:
        """Fetch nothing for a moment after a poll that found little: the records written meanwhile
        come in the next fetch together, so a busy service makes fewer fetches and fewer, larger
        units of work (a consumer-side ``linger``), for a few milliseconds more per hop."""
        consumer = self._consumer
        partitions = list(partitions)
        if consumer is None or not partitions or seconds <= 0:
            return
        consumer.pause(*partitions)
        try:
            await asyncio.sleep(seconds)
        finally:
            consumer.resume(*partitions)
            self._resumed_at_ms = int(time.time() * 1000)

    async def rest_when_caught_up(self, partitions: Iterable[TopicPartition]) -> None:
        """Rest while every partition is read to its end, as the fetch answered after each rest shows
        — or while no fetch answers for a whole rest (a broker that holds fetches, or is away: a
        fetch still in flight during a rest is kept and returned after it). Returns as soon as an
        answer shows records to read, or after resting ``RESTING_AT_MOST`` in all.

        Between two rests only the first answer is awaited, not a poll for records: a local broker
        answers an empty fetch in well under a millisecond, and aiokafka fetches again at once, so
        every millisecond spent not resting is several more fetches."""
        consumer = self._consumer
        partitions = list(partitions)
        if consumer is None or not partitions:
            return
        loop = asyncio.get_running_loop()
        rested = 0.0
        while True:
            give_up = loop.time() + self._max_idle_wait
            # One fetch asks for every partition of a broker: the first answered tells of them all.
            while not self._answered_since_resume(partitions[0]):
                if loop.time() >= give_up:
                    break
                await asyncio.sleep(ANSWER_CHECK_INTERVAL)
            for tp in partitions:
                if not self._answered_since_resume(tp):
                    continue
                highwater = consumer.highwater(tp)
                # aiokafka's own position, not a checkpoint: it is where fetching resumes (the
                # log's start when retention removed the records before a checkpoint).
                if highwater is None or highwater > await consumer.position(tp):
                    return
            if rested >= RESTING_AT_MOST:
                return
            self._idle_wait = min(max(self._idle_wait * 2, 0.002), self._max_idle_wait)
            consumer.pause(*partitions)
            try:
                await asyncio.sleep(self._idle_wait)
            finally:
                consumer.resume(*partitions)
                self._resumed_at_ms = int(time.time() * 1000)
            rested += self._idle_wait

    def _answered_since_resume(self, tp: TopicPartition) -> bool:
        assert self._consumer is not None
        answered_at = self._consumer.last_poll_timestamp(tp)
        return answered_at is not None and answered_at >= self._resumed_at_ms


async def records_at(
    bootstrap_servers: str, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes]]:
    """The record at each offset, where the partition holds one (read with a consumer of its own)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, **client_security()
    )
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


def error_without_values(error: Exception) -> str:
    """What was wrong, without the values: a malformed case report may hold a reporter's name and
    phone, which must not reach the logs or the dead-letter record's error text."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors(include_input=False)
        )
    return str(error)
