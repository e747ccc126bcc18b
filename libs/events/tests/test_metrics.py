"""What a service shows on /metrics and answers on /readyz: the probe composed by the runtime, on a
real broker and real databases (SQLite, then PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from caseloop_events.contracts.clock import ManualClock, SystemClock
from caseloop_events.contracts.envelope import Producer
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.metrics import ServiceMetrics
from caseloop_events.runtime.readiness import Readiness
from caseloop_events.runtime.service import Service, compose
from caseloop_events.runtime.unit_of_work import Checkpoint
from caseloop_events.testing.broker import BrokerKind, LocalBroker
from caseloop_events.testing.fixtures import eventually, publish
from caseloop_events.testing.probe import PROBE, ProbeSettings, Verify, an_acknowledgement

MONITOR = {"X-API-Key": "dev:monitor"}

case_router = APIRouter()


@case_router.get("/v1/cases/{case_id}")
async def a_case(case_id: uuid.UUID) -> dict[str, str]:
    return {"case_id": str(case_id)}


#: The probe with one route that names a case in its path.
PROBE_WITH_A_ROUTE = replace(PROBE, routers=[case_router])


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (relay, consumer) and a client for it; credentials are the test's to send."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client,
    ):
        yield client


@pytest.fixture
async def probe_app(database_url: str, kafka_settings: KafkaSettings, tmp_path: Path) -> FastAPI:
    settings = ProbeSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path)
    return compose(PROBE_WITH_A_ROUTE, settings, kafka_settings, SystemClock())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics", headers=MONITOR)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_are_for_the_operator_and_the_monitor_only(probe_app: FastAPI) -> None:
    async with serving(probe_app) as client:
        answers = {
            key: (await client.get("/metrics", headers={"X-API-Key": key} if key else {})).status_code
            for key in ("dev:operator", "dev:monitor", "dev:supervisor", "dev:auditor", "dev:unit:U-1", None)
        }

    assert answers == {
        "dev:operator": 200,
        "dev:monitor": 200,
        "dev:supervisor": 403,
        "dev:auditor": 403,
        "dev:unit:U-1": 403,
        None: 401,
    }


async def test_request_latency_is_counted_by_route_template_and_status_never_by_case_id(probe_app: FastAPI) -> None:
    case_id = uuid.uuid4()
    async with serving(probe_app) as client:
        for _ in range(2):
            assert (await client.get(f"/v1/cases/{case_id}", headers=MONITOR)).status_code == 200
        assert (await client.get("/v1/cases/not-a-uuid", headers=MONITOR)).status_code == 422
        assert (await client.get(f"/nowhere/{case_id}", headers=MONITOR)).status_code == 404
        response = await client.get("/metrics", headers=MONITOR)

    scraped = samples(response.text)
    count = "caseloop_http_request_duration_seconds_count"
    assert value(scraped, count, method="GET", route="/v1/cases/{case_id}", status="200") == 2
    assert value(scraped, count, method="GET", route="/v1/cases/{case_id}", status="422") == 1
    assert value(scraped, count, method="GET", route="<unmatched>", status="404") == 1
    assert str(case_id) not in response.text


async def test_events_handled_dead_letters_and_lag_per_partition_are_read_from_the_consumer_and_its_checkpoints(
    probe_app: FastAPI, kafka_settings: KafkaSettings
) -> None:
    service: Service[Any, Any, Any] = probe_app.state.service
    dispatch = kafka_settings.topic_of(Producer.DISPATCH)
    async with serving(probe_app) as client:
        await publish(kafka_settings.kafka_bootstrap_servers, dispatch, *(an_acknowledgement() for _ in range(3)))
        await publish(kafka_settings.kafka_bootstrap_servers, dispatch, raw=b"not an event")

        async def all_taken() -> bool:
            scraped = await scrape(client)
            return (
                value(scraped, "caseloop_events_handled_total", type="case.acknowledged") == 3
                and value(scraped, "caseloop_dead_letters_total") == 1
                and sum(v for (name, _), v in scraped.items() if name == "caseloop_consumer_lag_records") == 0
            )

        await eventually(all_taken)
        scraped = await scrape(client)
        partitions = {
            dict(labels)["partition"]: v
            for (name, labels), v in scraped.items()
            if name == "caseloop_consumer_lag_records"
        }
        assert partitions == {"0": 0, "1": 0, "2": 0}
        # The checkpoint of the partition that holds the poison record, set back to its start: the
        # lag is what the broker holds past it, whatever the consumer holds in memory.
        assert service.consumer is not None
        ends = {tp.partition: end for tp, end in service.consumer.end_offsets().items()}
        busiest = max(ends, key=lambda partition: ends[partition])
        await service.save_checkpoints([Checkpoint(service.consumer.name, dispatch, busiest, 0, None)])
        scraped = await scrape(client)

    assert value(scraped, "caseloop_consumer_lag_records", topic=dispatch, partition=str(busiest)) == ends[busiest]
    assert ends[busiest] > 0


async def test_the_outbox_backlog_and_the_age_of_its_oldest_row_are_read_from_the_outbox(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    settings = ProbeSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path)
    service = Service(PROBE, settings, kafka_settings, clock)
    await service.database.create_schema()
    try:
        before = samples((await service.metrics.exposition()).decode())
        # Not started: no relay publishes what the commands write.
        await service.handle(Verify(uuid.uuid4(), "li.na"))
        clock.advance(timedelta(seconds=90))
        await service.handle(Verify(uuid.uuid4(), "li.na"))
        clock.advance(timedelta(seconds=30))
        after = samples((await service.metrics.exposition()).decode())
    finally:
        await service.database.dispose()

    assert value(before, "caseloop_outbox_unpublished_events") == 0
    assert value(before, "caseloop_outbox_oldest_unpublished_age_seconds") == 0
    assert value(after, "caseloop_outbox_unpublished_events") == 2
    assert value(after, "caseloop_outbox_oldest_unpublished_age_seconds") == 120
    assert (value(after, "caseloop_database_pool_size") or 0) > 0
    assert value(after, "caseloop_database_pool_connections_in_use") == 0


def test_each_service_has_a_registry_of_its_own(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    first, second = (
        Service(PROBE, ProbeSettings(CASELOOP_DATA_DIR=tmp_path / name), kafka_settings, SystemClock())
        for name in ("first", "second")
    )
    first.metrics.count_handled(["case.acknowledged"])

    handled = "caseloop_events_handled_total"
    assert first.metrics.registry.get_sample_value(handled, {"type": "case.acknowledged"}) == 1
    assert second.metrics.registry.get_sample_value(handled, {"type": "case.acknowledged"}) is None


async def test_ready_when_the_database_and_the_broker_answer_503_naming_the_broker_while_it_is_gone(
    tmp_path: Path,
) -> None:
    broker = LocalBroker(BrokerKind.NOIDA, tmp_path / "broker").start()
    try:
        kafka = KafkaSettings(
            kafka_bootstrap_servers=broker.bootstrap_servers, caseloop_topic_namespace=f"test-{uuid.uuid4().hex[:12]}"
        )
        settings = ProbeSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", CASELOOP_DATA_DIR=tmp_path
        )
        app = compose(PROBE, settings, kafka, SystemClock())
        async with serving(app) as client:
            ready = await client.get("/readyz")
            broker.kill()

            async def not_ready() -> httpx.Response | None:
                response = await client.get("/readyz")
                return response if response.status_code == 503 else None

            await eventually(not_ready, timeout=30)
            gone = await client.get("/readyz")
            alive = await client.get("/healthz")
            broker.start()  # back on its port, so the service is ready again (and stops cleanly)

            async def ready_again() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready_again, timeout=30)
    finally:
        broker.stop()

    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "database": "ok", "broker": "ok", "failed": []},
    )
    assert gone.status_code == 503
    assert gone.json()["failed"] == ["broker"]
    assert gone.json()["database"] == "ok"
    assert alive.status_code == 200, "the process is up: liveness does not depend on the broker"


async def test_readiness_is_checked_once_per_moment_however_many_probes_ask() -> None:
    now = [0.0]
    calls = {"database": 0, "broker": 0}

    def counted(name: str) -> Any:
        async def check() -> None:
            calls[name] += 1
            if name == "broker":
                raise ConnectionError("no broker")

        return check

    readiness = Readiness({name: counted(name) for name in calls}, kept_for=1.5, clock=lambda: now[0])
    first = [await readiness.report() for _ in range(5)]
    now[0] = 1.6
    later = await readiness.report()

    assert calls == {"database": 2, "broker": 2}
    assert first[0] == {
        "status": "not ready",
        "database": "ok",
        "broker": "unavailable: ConnectionError",
        "failed": ["broker"],
    }
    assert later == first[0]


async def test_a_collector_that_fails_leaves_out_its_own_figures_only() -> None:
    metrics = ServiceMetrics()

    async def database_away() -> Iterable[Metric]:
        raise ConnectionRefusedError("the database is away")

    async def backlog() -> Iterable[Metric]:
        return [GaugeMetricFamily("caseloop_outbox_unpublished_events", "backlog", value=3)]

    metrics.read_at_scrape(database_away, backlog)
    scraped = samples((await metrics.exposition()).decode())

    assert value(scraped, "caseloop_outbox_unpublished_events") == 3
