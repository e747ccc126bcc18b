"""The runtime's tests run the probe service (``caseloop_events.testing.probe``) on a real broker
and real databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from caseloop_events.contracts.clock import SystemClock
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import Service
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.testing.fixtures import create_postgres_database, drop_postgres_database
from caseloop_events.testing.probe import PROBE, ProbeSettings

Probe = Service[Any, Any, Any]


@asynccontextmanager
async def composed_probe(database_url: str, kafka_settings: KafkaSettings, data_dir: Path) -> AsyncIterator[Probe]:
    service = Service(
        PROBE, ProbeSettings(database_url=database_url, CASELOOP_DATA_DIR=data_dir), kafka_settings, SystemClock()
    )
    await service.database.create_schema()
    await ensure_topics(kafka_settings.kafka_bootstrap_servers, 3, 1, kafka_settings.all_topics)
    try:
        yield service
    finally:
        await service.database.dispose()


@pytest.fixture
async def probe(database_url: str, kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[Probe]:
    """The probe composed on a fresh database (SQLite, then PostgreSQL) and the test's topics, not started."""
    async with composed_probe(database_url, kafka_settings, tmp_path) as service:
        yield service


@pytest.fixture
async def probe_on_postgresql(
    postgres_admin_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> AsyncIterator[Probe]:
    """The probe on a fresh PostgreSQL database only: what round trips cost is a server's question."""
    url = await create_postgres_database(postgres_admin_url)
    try:
        async with composed_probe(url, kafka_settings, tmp_path) as service:
            yield service
    finally:
        await drop_postgres_database(postgres_admin_url, url)


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = kafka_settings.producer("test")
    await producer.start()
    yield producer
    await producer.stop()
