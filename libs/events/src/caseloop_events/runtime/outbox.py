"""The outbox relay: publishes a service's committed events, in order, to its own topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry.trace import Span, SpanKind, Tracer
from sqlalchemy import Row, func, select

from caseloop_events.contracts.envelope import Envelope
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.kafka import client_security, record_event_id, stored_event_headers
from caseloop_events.runtime.telemetry import context_of, stored_event_attributes, traceparent_of, tracer_of

log = logging.getLogger(__name__)

#: How far back the relay looks for its published rows on the topic when it starts: what a broker
#: that lost the end of its log while the service was down may have lost of ours. Older losses (a
#: broker that lost everything) are the operator's ``caseloop republish``.
CHECKED_AT_START = timedelta(seconds=60)
#: The most rows one check looks for.
CHECKED_AT_MOST = 10_000


class OutboxRelay:
    """Sends committed outbox rows in order, then marks them published.

    What this process commits reaches the relay in memory, in commit order (``committed``): it is
    sent without reading it back. The database is read for rows this process did not hand over —
    those left unpublished when it started or after a failure, and, once a second, any another
    process wrote — in position order, before anything newer is sent from memory.

    A crash between send and mark re-sends the row on restart; consumers drop the
    duplicate by event id. Rows are never deleted: they are the service's event store.

    Given the broker's address, the relay also checks that what it published is still on the
    topic — when it starts, after a failure, and every ``check_interval`` seconds while rows it
    published have not yet been seen there twice, the second time at least that long after they
    were sent. A broker that lost acknowledged records (noida-db killed before it saved them, an
    unclean leader election) gets them again, in their order, before anything newer on their
    partition, so they take the offsets they had and no consumer's checkpoint passes over a record.
    Given ``renew_producer``, a producer that failed is replaced: an idempotent producer whose
    records the broker lost fails for good (OutOfOrderSequenceNumber).
    """

    def __init__(
        self,
        database: Database,
        producer: AIOKafkaProducer,
        *,
        bootstrap_servers: str | None = None,
        renew_producer: Callable[[], Awaitable[AIOKafkaProducer]] | None = None,
        tracer: Tracer | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        check_interval: float = 5.0,
    ) -> None:
        self._database = database
        self._producer = producer
        self._bootstrap_servers = bootstrap_servers
        self._renew_producer = renew_producer
        self._tracer = tracer if tracer is not None else tracer_of(None)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._check_interval = check_interval
        self._wake = asyncio.Event()
        # Rows committed by this process and not sent yet, in commit order.
        self._handed_over: deque[_Outgoing] = deque()
        # Whether the database may hold unpublished rows that were not handed over: at the start,
        # after a failure, and every ``poll_interval`` (another process may have written some).
        self._read_database = True
        self._last_read = 0.0
        self.published_total = 0
        #: Records found missing from the topic and published again.
        self.restored_total = 0
        # Rows published up to the first moment are settled (seen on the topic long enough after
        # they were sent); up to the second, seen once. None: nothing checked since the start.
        self._checked: tuple[datetime, datetime] | None = None
        self._last_check = 0.0
        database.on_commit(self._events_committed)

    def _events_committed(self, emitted: Sequence[tuple[Envelope, str]], traceparents: Mapping[UUID, str]) -> None:
        topic = self._database.topic
        self._handed_over.extend(
            _Outgoing(None, topic, str(event.case_id), str(event.event_id), stored, traceparents.get(event.event_id))
            for event, stored in emitted
        )
        self._wake.set()

    async def run(self) -> None:
        """Relay forever; broker errors are retried with back-off, nothing is skipped."""
        backoff = 0.5
        renew = False
        while True:
            try:
                if renew and self._renew_producer is not None:
                    self._producer = await self._renew_producer()
                renew = False
                if self._check_due():
                    await self.restore_lost()
                sent = await self.publish_round()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                renew, self._last_check = True, 0.0  # check the rows not settled before sending more
                self._read_database = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if sent < self._batch_size and not self._handed_over:
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives just as a commit wakes the relay, and the service then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await self._wake.wait()

    async def publish_round(self) -> int:
        """One round: the rows handed over in memory, or, when the database may hold others, the
        database's unpublished rows first. Returns how many were sent."""
        if time.monotonic() - self._last_read >= self._poll_interval:
            self._read_database = True
        if self._read_database:
            # Everything committed so far is in the database: what was handed over is read there
            # (a row committed between this and the read may go twice; consumers drop the copy).
            self._handed_over.clear()
            sent = await self.publish_pending()
            self._last_read = time.monotonic()
            if sent < self._batch_size:
                self._read_database = False
            return sent
        rows = [self._handed_over.popleft() for _ in range(min(len(self._handed_over), self._batch_size))]
        if rows:
            await self._send(rows)
            self.published_total += len(rows)
        return len(rows)

    async def publish_pending(self) -> int:
        """Publish one batch of the database's unpublished rows; returns how many were sent."""
        outbox = self._database.tables.outbox
        async with self._database.reading() as session:
            rows = (
                await session.execute(
                    select(
                        outbox.c.position,
                        outbox.c.topic,
                        outbox.c.case_id,
                        outbox.c.event_id,
                        outbox.c.envelope,
                        outbox.c.traceparent,
                    )
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.position)
                    .limit(self._batch_size)
                )
            ).all()
        if not rows:
            return 0
        await self._send([_Outgoing(*row) for row in rows])
        self.published_total += len(rows)
        return len(rows)

    async def _send(self, rows: Sequence[_Outgoing]) -> None:
        """Send the rows in the order given and mark them published, all at one moment. Each is
        sent in a span ``publish <type>``, a child of the span it was emitted in; the record's
        ``traceparent`` names that span, so its readers handle it in the same trace (ADR 0018)."""
        deliveries = []
        spans: list[Span] = []
        try:
            for row in rows:
                envelope = json.loads(row.envelope)
                span = self._tracer.start_span(
                    f"publish {envelope.get('type')}",
                    context=context_of(row.traceparent),
                    kind=SpanKind.PRODUCER,
                    attributes={**stored_event_attributes(envelope), "messaging.destination.name": row.topic},
                )
                spans.append(span)
                # The stored bytes go out as they are: a row written under an older contract must
                # not stop the relay, and consumers validate anyway.
                deliveries.append(
                    await self._producer.send(
                        row.topic,
                        value=row.envelope.encode(),
                        key=row.case_id.encode(),
                        headers=stored_event_headers(envelope, traceparent=traceparent_of(span) or row.traceparent),
                    )
                )
            await asyncio.gather(*deliveries)
        finally:
            for span in spans:
                span.end()
        await self._database.mark_published([row.event_id for row in rows], self._database.clock.now())

    def _check_due(self) -> bool:
        if self._bootstrap_servers is None:
            return False
        return self._checked is None or time.monotonic() - self._last_check >= self._check_interval

    async def restore_lost(self) -> int:
        """Publish again the rows published lately that the topic no longer holds, in the order they
        were first sent; returns how many. The rows checked are those not settled yet: at start,
        those published in the last ``CHECKED_AT_START``.

        The order rows reach the topic is the order they were published in (``published_at``,
        then position), not their positions: a transaction that took a position commits after
        another that took a later one, and its row is published after it."""
        assert self._bootstrap_servers is not None
        if self._checked is None:
            since = self._database.clock.now() - CHECKED_AT_START
            self._checked = (since, since)
        outbox = self._database.tables.outbox
        query = select(outbox.c.position, outbox.c.event_id, outbox.c.case_id, outbox.c.topic, outbox.c.published_at)
        query = query.where(outbox.c.published_at > self._checked[0])
        async with self._database.reading() as session:
            latest_first = (
                await session.execute(
                    query.order_by(outbox.c.published_at.desc(), outbox.c.position.desc()).limit(CHECKED_AT_MOST)
                )
            ).all()
        rows = list(reversed(latest_first))
        lost = await self._missing_from_topic(rows)
        if lost:
            log.warning("the broker lost %d published event(s) of the outbox; publishing them again", len(lost))
            async with self._database.reading() as session:
                stored = select(outbox.c.position, outbox.c.envelope, outbox.c.traceparent).where(
                    outbox.c.position.in_([row.position for row in lost])
                )
                envelopes: dict[int, tuple[str, str | None]] = {
                    position: (envelope, traceparent)
                    for position, envelope, traceparent in await session.execute(stored)
                }
            await self._send(
                [
                    _Outgoing(row.position, row.topic, row.case_id, row.event_id, *envelopes[row.position])
                    for row in lost
                ]
            )
            self.restored_total += len(lost)
        # Seen now a second time, at least an interval after they were sent: settled.
        self._checked = (self._checked[1], rows[-1].published_at if rows else self._checked[1])
        self._last_check = time.monotonic()
        return len(lost)

    async def _missing_from_topic(self, rows: Sequence[Row[Any]]) -> list[Row[Any]]:
        """The rows (given in the order they were sent) whose records are not on the topic any
        more. The broker loses the end of a partition: a row is missing when no row sent after it
        to its partition is found."""
        if not rows:
            return []
        assert self._bootstrap_servers is not None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            client_id="relay-check",
            **client_security(),
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            by_partition: dict[TopicPartition, list[Row[Any]]] = {}
            for row in rows:
                partitions = sorted(consumer.partitions_for_topic(row.topic) or ())
                if not partitions:
                    raise RuntimeError(f"the broker does not know topic {row.topic}")
                chosen = DefaultPartitioner()(row.case_id.encode(), partitions, partitions)
                by_partition.setdefault(TopicPartition(row.topic, chosen), []).append(row)
            # Duplicates sent after a crash may sit after a row: look a little further back.
            found = await _event_ids_at_the_end(consumer, {tp: 2 * len(rs) + 10 for tp, rs in by_partition.items()})
        finally:
            await consumer.stop()
        missing: list[Row[Any]] = []
        for tp, sent in by_partition.items():
            last_found = max((n for n, row in enumerate(sent) if row.event_id in found[tp]), default=-1)
            missing.extend(sent[last_found + 1 :])
        order = {row.position: n for n, row in enumerate(rows)}
        return sorted(missing, key=lambda row: order[row.position])

    async def pending(self) -> int:
        """How many committed events wait to be published (the relay's lag)."""
        outbox = self._database.tables.outbox
        async with self._database.reading() as session:
            count = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        return int(count or 0)


async def _event_ids_at_the_end(
    consumer: AIOKafkaConsumer, depth: dict[TopicPartition, int]
) -> dict[TopicPartition, set[str]]:
    """The event ids of the last ``depth`` records of each partition, read up to the fetch high
    watermark (Tansu's ListOffsets can be short of the end: it only sets where reading starts)."""
    partitions = list(depth)
    starts, ends = await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, max(starts[tp], ends[tp] - depth[tp]))
    found: dict[TopicPartition, set[str]] = {tp: set() for tp in partitions}
    pending = set(partitions)
    deadline = time.monotonic() + 30.0
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read to the end of {sorted(pending)}")
        for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
            found[tp].update(filter(None, map(record_event_id, records)))
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None and await consumer.position(tp) >= highwater:
                pending.discard(tp)
    return found


@dataclass(frozen=True)
class _Outgoing:
    """An outbox row on its way to the topic (its position: when it was read from the database)."""

    position: int | None
    topic: str
    case_id: str
    event_id: str
    envelope: str
    #: The trace context the event was emitted in (None: outside any span, or before ADR 0018).
    traceparent: str | None = None
