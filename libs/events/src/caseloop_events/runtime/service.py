"""What every service runs beside its HTTP API: schema, topics, outbox relay and consumer.

A service's ``app.py`` builds one ``ServiceRuntime`` and hands its ``lifespan`` to FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from caseloop_events.contracts.envelope import Envelope, Producer
from caseloop_events.runtime.auth import Authenticator, RateLimiter, authenticator_from_settings
from caseloop_events.runtime.consumer import EventConsumer, EventHandler
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.storage import ping
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.runtime.unit_of_work import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceSettings(BaseSettings):
    """Settings every service has; subclasses set the environment prefix and default port."""

    model_config = SettingsConfigDict(extra="ignore")
    service_name: ClassVar[str]

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    database_url: str | None = None
    data_dir: Path = Field(default=Path("data"), validation_alias="CASELOOP_DATA_DIR")
    reference_dir: Path | None = Field(default=None, validation_alias="CASELOOP_REFERENCE_DIR")
    log_level: str = "info"
    #: The largest request body the service reads; larger ones are 413.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, validation_alias="CASELOOP_MAX_BODY_BYTES")
    #: ``development`` accepts the well-known keys ``dev:<role>[:<scope>]`` (``make run``); any other
    #: value needs real credentials configured below, or the service refuses to start.
    profile: Literal["production", "development"] = Field(default="production", validation_alias="CASELOOP_PROFILE")
    api_keys_file: Path | None = Field(default=None, validation_alias="CASELOOP_API_KEYS_FILE")
    jwt_issuer: str | None = Field(default=None, validation_alias="CASELOOP_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, validation_alias="CASELOOP_JWT_AUDIENCE")
    jwt_jwks_url: str | None = Field(default=None, validation_alias="CASELOOP_JWT_JWKS_URL")
    jwt_public_key_file: Path | None = Field(default=None, validation_alias="CASELOOP_JWT_PUBLIC_KEY_FILE")
    jwt_algorithms: str = Field(default="RS256,ES256", validation_alias="CASELOOP_JWT_ALGORITHMS")
    #: Requests per second each client may make on average (0: no limit), and at once.
    rate_limit_per_second: float = Field(default=50.0, ge=0, validation_alias="CASELOOP_RATE_LIMIT_PER_SECOND")
    rate_limit_burst: int = Field(default=100, ge=1, validation_alias="CASELOOP_RATE_LIMIT_BURST")

    def authenticator(self) -> Authenticator:
        return authenticator_from_settings(
            profile=self.profile,
            api_keys_file=self.api_keys_file,
            jwt_issuer=self.jwt_issuer,
            jwt_audience=self.jwt_audience,
            jwt_jwks_url=self.jwt_jwks_url,
            jwt_public_key_file=self.jwt_public_key_file,
            jwt_algorithms=self.jwt_algorithms,
        )

    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.rate_limit_per_second, self.rate_limit_burst)

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded default: a SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{self.service_name}.db').resolve()}"


async def _retry_connect(what: str, connect: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """The broker may come up after us (make run, a restart): wait for it, then say why not."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connect()
        except (KafkaConnectionError, OSError) as error:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"cannot reach the Kafka broker for {what}: {error}") from error
            log.warning("waiting for the Kafka broker (%s): %s", what, error)
            await asyncio.sleep(1.0)


async def run_periodically(name: str, interval: float, step: Callable[[], Awaitable[Any]]) -> None:
    """Run ``step`` every ``interval`` seconds until cancelled; a failed round is logged and the
    next one runs, so one bad row or a database hiccup never stops a background job."""
    while True:
        try:
            await step()
        except Exception:
            log.exception("%s: this round failed; the next one runs in %.1fs", name, interval)
        await asyncio.sleep(interval)


class ServiceRuntime:
    """Owns the long-running parts of one service and their start and stop order."""

    def __init__(
        self,
        *,
        producer: Producer,
        database: Database,
        kafka: KafkaSettings,
        consumes: tuple[str, ...] = (),
        handle: EventHandler | None = None,
        keeps: Callable[[Envelope], bool] | None = None,
        background: Mapping[str, Callable[[], Coroutine[Any, Any, None]]] | None = None,
    ) -> None:
        self.name = producer.value
        self.database = database
        self.kafka = kafka
        self._consumes = consumes
        self._handle = handle
        # Which events the handler keeps in the case log (it returns at once on the others).
        self._keeps = keeps or (lambda _event: True)
        # Timers and deliveries (auto-closure, callbacks...): each a coroutine that loops until cancelled.
        self._background = dict(background or {})
        self.relay: OutboxRelay | None = None
        self.consumer: EventConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._producer: AIOKafkaProducer | None = None

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        await self.database.create_schema()
        await _retry_connect(
            "topic creation",
            lambda: ensure_topics(
                self.kafka.kafka_bootstrap_servers,
                self.kafka.caseloop_topic_partitions,
                self.kafka.caseloop_topic_replication,
                self.kafka.all_topics,
            ),
        )
        producer = self.kafka.producer(client_id=f"caseloop-{self.name}")
        await _retry_connect("the producer", producer.start)
        self._producer = producer
        self.relay = OutboxRelay(
            self.database,
            producer,
            bootstrap_servers=self.kafka.kafka_bootstrap_servers,
            renew_producer=self._renew_producer,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        if self._consumes and self._handle is not None:
            self.consumer = EventConsumer(
                name=self.name,
                topics=self._consumes,
                bootstrap_servers=self.kafka.kafka_bootstrap_servers,
                database=self.database,
                handle=self._handle,
                deadletter=self._producer,
                deadletter_topic=self.kafka.deadletter_topic,
            )
            await _retry_connect("the consumer", self.consumer.start)
            self._tasks.append(asyncio.create_task(self.consumer.run(), name=f"{self.name}-consumer"))
        for job_name, job in self._background.items():
            self._tasks.append(asyncio.create_task(job(), name=f"{self.name}-{job_name}"))
        log.info(
            "%s started: database %s, broker %s",
            self.name,
            self.database.engine.url.render_as_string(),
            self.kafka.kafka_bootstrap_servers,
        )
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()
            if self.consumer is not None:
                await self.consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
            await self.database.dispose()

    async def _renew_producer(self) -> AIOKafkaProducer:
        """A new producer in place of one that failed (for the relay and the dead letters alike)."""
        producer = self.kafka.producer(client_id=f"caseloop-{self.name}")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        failed, self._producer = self._producer, producer
        if self.consumer is not None:
            self.consumer.deadletter = producer
        if failed is not None:
            with suppress(Exception):
                async with asyncio.timeout(10.0):
                    await failed.stop()
        return producer

    @property
    def consumes(self) -> tuple[str, ...]:
        """The topics the service reads (what a replay of its projections reads too)."""
        return self._consumes

    @property
    def handle(self) -> EventHandler | None:
        """The service's event handler, as the consumer calls it (a replay calls it with ``replaying``)."""
        return self._handle

    @property
    def keeps(self) -> Callable[[Envelope], bool]:
        """Whether the handler keeps an event in the case log: a replay records a batch's kept
        events at once and hands the handler only each case's last one (ADR 0008)."""
        return self._keeps

    async def health(self) -> dict[str, Any]:
        """Status of the database, the relay and the consumer, for ``GET /healthz``."""
        report: dict[str, Any] = {"service": self.name, "status": "ok"}
        try:
            async with self.database.reading() as session:
                await ping(session)
            report["database"] = "ok"
        except Exception as error:  # any failure here is what the health check reports
            report["database"] = f"unavailable: {error.__class__.__name__}"
            report["status"] = "degraded"
        for task in self._tasks:
            if task.done():
                report["status"] = "degraded"
                report[task.get_name()] = "stopped"
        if self.relay is not None and report["database"] == "ok":
            report["outbox_pending"] = await self.relay.pending()
            report["published"] = self.relay.published_total
            report["restored"] = self.relay.restored_total
        if self.consumer is not None:
            report["consumer_lag"] = self.consumer.lag()
            report["processed"] = self.consumer.processed_total
            report["handled"] = self.consumer.handled_total
            report["duplicates_skipped"] = self.consumer.duplicates_total
            report["deadlettered"] = self.consumer.deadlettered_total
        return report
