"""Test fixtures shared by every package's tests (loaded by the root conftest.py).

Real parts, not mocks: a Kafka-protocol broker and real databases — a SQLite file, and a fresh
PostgreSQL database that is dropped afterwards. Where a Docker engine answers (and
``CASELOOP_TESTCONTAINERS`` is not ``0``), Kafka and PostgreSQL run in testcontainers;
elsewhere a local noida-db process and the local PostgreSQL (``CASELOOP_TEST_POSTGRES_URL``,
default ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``) are used.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.engine import make_url

from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, new_event
from caseloop_events.runtime.kafka import KafkaSettings, event_headers, event_key
from caseloop_events.testing.broker import BrokerKind, LocalBroker

# Services built or started by the tests take the development keys (DevelopmentCaller sends them),
# and no rate limit slows the suites' polling; the auth and rate-limit tests configure both.
os.environ.setdefault("CASELOOP_PROFILE", "development")
os.environ.setdefault("CASELOOP_RATE_LIMIT_PER_SECOND", "0")

_UNIT_COMMAND = re.compile(r"/v1/cases/[^/]+/(acknowledge|result|extension|return|transfer)$")
_UNIT_INBOX = re.compile(r"/v1/units/([^/]+)/cases$")


def development_key_for(method: str, path: str, body: dict[str, object]) -> str:
    """The development key of who would send this request in real use: the source system it
    reports for, the unit that acts, a triage officer for judgments, the monitoring system for
    metrics, else a district supervisor."""
    if method == "POST" and path.endswith("/v1/cases"):
        return f"dev:source_system:{body.get('source_system', '')}"
    if method == "POST" and path.endswith("/v1/screenings"):
        return "dev:source_system:grid-screening"
    if method == "POST" and _UNIT_COMMAND.search(path):
        return f"dev:unit:{body.get('unit_id', '')}"
    if inbox := _UNIT_INBOX.search(path):
        return f"dev:unit:{inbox.group(1)}"
    if (method == "POST" and path.endswith("/judgment")) or path.endswith("/review-queue"):
        return "dev:triage_officer"
    if path.startswith("/v1/audit/"):
        return "dev:auditor"
    if path.endswith("/metrics"):
        return "dev:monitor"
    return "dev:supervisor"


class DevelopmentCaller(httpx.Auth):
    """Sends each request with the development key of the caller it stands for (see
    :func:`development_key_for`), unless the request carries credentials of its own."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "X-API-Key" not in request.headers and "Authorization" not in request.headers:
            body: dict[str, object] = {}
            try:
                content = request.content
            except httpx.RequestNotRead:  # a streamed body: its caller is the path's
                content = b""
            if request.headers.get("Content-Type", "").startswith("application/json") and content:
                loaded = json.loads(content)
                body = loaded if isinstance(loaded, dict) else {}
            request.headers["X-API-Key"] = development_key_for(request.method, request.url.path, body)
        yield request


LOCAL_POSTGRES_URL = os.environ.get(
    "CASELOOP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class BrokerEndpoint:
    bootstrap_servers: str
    supports_idempotent_producer: bool


def docker_engine_available() -> bool:
    """True when testcontainers can start containers here (and nobody said not to)."""
    if os.environ.get("CASELOOP_TESTCONTAINERS") == "0":
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no client config, no socket, no engine: all mean "use local processes"
        return False
    return True


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerEndpoint]:
    """A Kafka broker for the whole test session: a container where Docker runs, else noida-db."""
    if docker_engine_available():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield BrokerEndpoint(container.get_bootstrap_server(), supports_idempotent_producer=True)
        return
    with LocalBroker(BrokerKind.NOIDA, tmp_path_factory.mktemp("broker")) as broker:
        yield BrokerEndpoint(broker.bootstrap_servers, broker.supports_idempotent_producer)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server to create test databases on: a container where Docker runs, else the local one."""
    if docker_engine_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="asyncpg") as container:
            yield container.get_connection_url()
        return
    yield LOCAL_POSTGRES_URL


@pytest.fixture
def kafka_settings(kafka_broker: BrokerEndpoint) -> KafkaSettings:
    """Settings pointing at the session broker, in topics of the test's own."""
    return KafkaSettings(
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        kafka_idempotent_producer=kafka_broker.supports_idempotent_producer,
        caseloop_topic_partitions=3,
        caseloop_topic_namespace=f"test-{uuid.uuid4().hex[:12]}",
    )


async def create_postgres_database(admin_url: str, prefix: str = "caseloop_test") -> str:
    """Create an empty database on the server of ``admin_url`` and return its SQLAlchemy URL."""
    admin = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(
        host=admin.host, port=admin.port or 5432, user=admin.username, password=admin.password, database=admin.database
    )
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin.set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(admin_url: str, url: str) -> None:
    admin = make_url(admin_url)
    connection = await asyncpg.connect(
        host=admin.host, port=admin.port or 5432, user=admin.username, password=admin.password, database=admin.database
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    url = await create_postgres_database(admin_url)
    try:
        yield url
    finally:
        await drop_postgres_database(admin_url, url)


async def publish(bootstrap_servers: str, topic: str, *events: Envelope, raw: bytes | None = None) -> None:
    """Put events (or raw bytes) on a topic the way a service's relay would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, value=event.model_dump_json().encode(), key=event_key(event), headers=event_headers(event)
            )
        if raw is not None:
            await producer.send_and_wait(topic, value=raw, key=b"poison")
    finally:
        await producer.stop()


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    until: Callable[[list[bytes]], bool],
    timeout: float = 30.0,
) -> list[bytes]:
    """Read a topic from the start until ``until`` holds for the values read, or fail."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(values):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: condition not met after {timeout}s; read {len(values)} records")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await consumer.stop()


async def read_events(
    bootstrap_servers: str, topic: str, until: Callable[[list[Envelope]], bool], timeout: float = 30.0
) -> list[Envelope]:
    """Like ``read_topic``, decoded into envelopes."""
    decoded: list[Envelope] = []

    def decoded_until(values: list[bytes]) -> bool:
        decoded[:] = [Envelope.model_validate_json(v) for v in values]
        return until(decoded)

    await read_topic(bootstrap_servers, topic, decoded_until, timeout)
    return decoded


async def eventually(check: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> None:
    """Wait until ``check()`` (sync or async) returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def causal_chain(
    case_id: uuid.UUID, payloads: Sequence[EventPayload], start: datetime, step: timedelta
) -> list[Envelope]:
    """One case's events, each caused by the one before and ``step`` after it."""
    events: list[Envelope] = []
    for n, payload in enumerate(payloads):
        events.append(
            new_event(
                payload,
                case_id=case_id,
                actor=Actor(id="test", role=ActorRole.SYSTEM),
                occurred_at=start + n * step,
                correlation_id=uuid.uuid4(),
                causation_id=events[-1].event_id if events else None,
            )
        )
    return events
