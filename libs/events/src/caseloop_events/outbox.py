"""The outbox relay: publishes a service's committed events, in order, to its own topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, update

from caseloop_events.envelope import Envelope
from caseloop_events.kafka import stored_event_headers
from caseloop_events.unit_of_work import Database

log = logging.getLogger(__name__)


class OutboxRelay:
    """Reads unpublished outbox rows in position order, sends them, then marks them published.

    A crash between send and mark re-sends the row on restart; consumers drop the
    duplicate by event id. Rows are never deleted: they are the service's event store.
    """

    def __init__(
        self,
        database: Database,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self._database = database
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self.published_total = 0
        database.on_commit(self._events_committed)

    def _events_committed(self, _events: list[Envelope]) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Relay forever; broker errors are retried with back-off, nothing is skipped."""
        backoff = 0.5
        while True:
            try:
                sent = await self.publish_pending()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if sent < self._batch_size:
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives just as a commit wakes the relay, and the service then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await self._wake.wait()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were sent."""
        outbox = self._database.tables.outbox
        async with self._database.reading() as session:
            rows = (
                await session.execute(
                    select(outbox.c.position, outbox.c.topic, outbox.c.case_id, outbox.c.envelope)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.position)
                    .limit(self._batch_size)
                )
            ).all()
        if not rows:
            return 0
        deliveries = []
        for _position, topic, case_id, raw in rows:
            # The stored bytes go out as they are: a row written under an older contract must
            # not stop the relay, and consumers validate anyway.
            deliveries.append(
                await self._producer.send(
                    topic, value=raw.encode(), key=case_id.encode(), headers=stored_event_headers(json.loads(raw))
                )
            )
        await asyncio.gather(*deliveries)
        async with self._database.transaction() as uow:
            await uow.session.execute(
                update(outbox)
                .where(outbox.c.position.in_([row.position for row in rows]))
                .values(published_at=self._database.clock.now())
            )
        self.published_total += len(rows)
        return len(rows)

    async def pending(self) -> int:
        """How many committed events wait to be published (the relay's lag)."""
        outbox = self._database.tables.outbox
        async with self._database.reading() as session:
            count = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        return int(count or 0)
