"""What a service shows Prometheus on ``GET /metrics`` (DESIGN.md §4a, ADR 0017).

Each service keeps its metrics in a registry of its own (``ServiceMetrics.registry``), not in
prometheus-client's global one: the tests run several services in one process, and each must show
only its own figures.

Two kinds of figure:

- counted as things happen: the latency of every HTTP request by method, route template and status
  (``RequestDurations``), the events handled by type;
- read when Prometheus scrapes: consumer lag per partition, the outbox backlog and the age of its
  oldest row, dead letters, events published, the database pool's connections in use — and what a
  service adds through its definition's ``collectors`` (supervision: open, overdue and escalated
  cases by town). A scrape-time reader is async (it may ask the database); Prometheus's collectors
  are not, so the readers run first and a collector in the registry hands out what they read.

Labels never hold a case id or any other unbounded value: the route is its template
(``/v1/cases/{case_id}``), never the path asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caseloop_events.contracts.clock import Clock
from caseloop_events.runtime.auth import Principal, Role, admits
from caseloop_events.runtime.consumer import EventConsumer
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.outbox import OutboxRelay

log = logging.getLogger(__name__)

#: An async collector: reads its metric families when Prometheus scrapes (a service's own, e.g.
#: supervision's cases by town, declared in its definition's ``collectors``).
MetricsCollector = Callable[[], Awaitable[Iterable[Metric]]]

#: The route label of a request no route matched (a 404 of any path is one series, not one per path).
UNMATCHED_ROUTE = "<unmatched>"

#: How long one scrape-time collector may take: Prometheus gives a whole scrape 10 s by default, and a
#: database that is away is often not refused but silent.
READ_WITHIN = 3.0

#: Who may read ``/metrics``: the operators and the monitoring system's own role.
MetricsReader = Annotated[Principal, Depends(admits(Role.OPERATOR, Role.MONITOR))]


class _ReadAtScrape(Collector):
    """Hands the registry the families the scrape-time collectors read just before."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class ServiceMetrics:
    """One service's metrics: its registry, what it counts, and what it reads at each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "caseloop_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.events_handled = Counter(
            "caseloop_events_handled",
            "Events of other services handed to this service's handlers (duplicates not counted), by type.",
            ["type"],
            registry=self.registry,
        )
        self._read_at_scrape = _ReadAtScrape()
        self.registry.register(self._read_at_scrape)
        self._collectors: list[MetricsCollector] = []
        # One scrape at a time: the families read by one are what the registry hands out for it.
        self._scraping = asyncio.Lock()

    def read_at_scrape(self, *collectors: MetricsCollector) -> None:
        self._collectors.extend(collectors)

    def count_handled(self, event_types: Iterable[str]) -> None:
        for event_type in event_types:
            self.events_handled.labels(event_type).inc()

    async def exposition(self) -> bytes:
        """Every metric in Prometheus's text format. A collector that fails or does not answer within
        ``READ_WITHIN`` seconds (the database is away) leaves its families out of this scrape, and
        the others are shown: the scrape still tells what it can, and the absent series are what an
        alert on them notices."""
        async with self._scraping:
            families: list[Metric] = []
            for collector in self._collectors:
                try:
                    async with asyncio.timeout(READ_WITHIN):
                        families.extend(await collector())
                except Exception:
                    log.warning("a metrics collector failed; its figures are left out of this scrape", exc_info=True)
            self._read_at_scrape.families = families
            return generate_latest(self.registry)


class RequestDurations:
    """ASGI middleware: observes every HTTP request's duration under its route's template. The router
    writes the matched route into the request's scope, so it is read after the app answered."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # What an error escaping the app becomes (the outermost error handler answers 500).
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.histogram.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


def metrics_router(metrics: ServiceMetrics) -> APIRouter:
    """``GET /metrics``: Prometheus's text format, for the operator and monitor roles only. Left out
    of the OpenAPI document, like any scrape endpoint: it is not part of the service's API."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(_reader: MetricsReader) -> Response:
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


# --- What every service shows -----------------------------------------------------------------


class Observed(Protocol):
    """What the runtime's figures read of a composed service (``caseloop_events.runtime.service``)."""

    database: Database
    clock: Clock
    consumer: EventConsumer | None
    relay: OutboxRelay | None

    async def stored_checkpoints(self, consumer: str) -> dict[tuple[str, int], tuple[int, str | None]]: ...


def runtime_collectors(service: Observed) -> Sequence[MetricsCollector]:
    """The runtime's scrape-time figures of a composed service: its consumer, outbox and pool."""

    async def consumer() -> Iterable[Metric]:
        return await consumer_figures(service)

    async def outbox() -> Iterable[Metric]:
        return await outbox_figures(service)

    async def pool() -> Iterable[Metric]:
        return database_pool_figures(service)

    return (consumer, outbox, pool)


async def consumer_figures(service: Observed) -> list[Metric]:
    """Lag per topic and partition — the broker's end offset (the high watermark of the consumer's
    last fetch) less the checkpoint in the service's database, what a restart would resume from —
    and the dead letters the consumer sent. Nothing for a service that consumes nothing."""
    consumer = service.consumer
    if consumer is None:
        return []
    lag = GaugeMetricFamily(
        "caseloop_consumer_lag_records",
        "Records on the broker past the service's checkpoint (end offset - checkpoint), by topic and partition.",
        labels=["topic", "partition"],
    )
    checkpoints = await service.stored_checkpoints(consumer.name)
    for tp, end in sorted(consumer.end_offsets().items()):
        checkpoint, _ = checkpoints.get((tp.topic, tp.partition), (0, None))
        lag.add_metric([tp.topic, str(tp.partition)], max(end - checkpoint, 0))
    dead_letters = CounterMetricFamily(
        "caseloop_dead_letters",
        "Records this service's consumer sent to the dead-letter topic (since the process started).",
        value=consumer.deadlettered_total,
    )
    return [lag, dead_letters]


async def outbox_figures(service: Observed) -> list[Metric]:
    """The outbox rows not published yet, the age of the oldest, and the events the relay published."""
    outbox = service.database.tables.outbox
    async with service.database.reading() as session:
        row = (
            await session.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
            )
        ).one()
    unpublished, oldest = int(row[0]), row[1]
    families: list[Metric] = [
        GaugeMetricFamily(
            "caseloop_outbox_unpublished_events", "Events in the outbox not yet published.", value=unpublished
        ),
        GaugeMetricFamily(
            "caseloop_outbox_oldest_unpublished_age_seconds",
            "How long the oldest unpublished event has waited in the outbox (0 when none waits).",
            value=_age_seconds(service.clock.now(), oldest),
        ),
    ]
    if service.relay is not None:
        families.append(
            CounterMetricFamily(
                "caseloop_events_published",
                "Events the outbox relay published to the service's topic (since the process started).",
                value=service.relay.published_total,
            )
        )
    return families


def _age_seconds(now: datetime, oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    # SQLite keeps no offset and the aggregate bypasses the column's type: naive means UTC.
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max((now - oldest).total_seconds(), 0.0)


def database_pool_figures(service: Observed) -> list[Metric]:
    """Connections of the database pool in use and its size: a pool used up makes requests wait."""
    pool = service.database.engine.pool
    if not isinstance(pool, QueuePool):
        return []
    return [
        GaugeMetricFamily(
            "caseloop_database_pool_connections_in_use",
            "Database connections checked out of the pool.",
            value=pool.checkedout(),
        ),
        GaugeMetricFamily("caseloop_database_pool_size", "Database connections the pool keeps.", value=pool.size()),
    ]
