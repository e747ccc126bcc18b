"""One service, declared once and composed by the runtime (DESIGN.md §3, §5; ADR 0014).

A service's ``app.py`` declares a ``ServiceDefinition``: its commands and their handlers, the
events it reacts to and their handlers (a table: the declared interest), how it folds a stream,
what it projects, its tables, routers and background jobs, and the dependencies its handlers use.
``compose`` turns a definition into the running service: the FastAPI app, the consumer, the outbox
relay, the jobs, health — the same way for every service. The operator tooling (replay, verify,
promote) takes the same definition.

Every handler has one signature: ``async def handler(message, uow) -> result``, where ``message``
is a command or an event's envelope and ``uow`` the ``UnitOfWork`` it works in.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from fastapi import APIRouter, Depends, FastAPI, Request
from opentelemetry.trace import Tracer, TracerProvider
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import MetaData, select

from caseloop_events.contracts.clock import Clock, clock_from_environment
from caseloop_events.contracts.envelope import Envelope, EventPayload, Producer
from caseloop_events.contracts.folding import State, StreamModel
from caseloop_events.contracts.reference import ReferenceData, default_reference_dir, load_reference_data
from caseloop_events.runtime.auth import Authenticator, RateLimiter, authenticated, authenticator_from_settings
from caseloop_events.runtime.consumer import EventConsumer, Handled, HandlerFailed, Incoming, is_transient
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.http import (
    COMMON_RESPONSES,
    PROBLEM_RESPONSES,
    BodySizeLimit,
    ProblemDocumentedAPI,
    case_named_in_path,
    health_router,
    install_error_handlers,
)
from caseloop_events.runtime.kafka import BrokerRequests, KafkaSettings
from caseloop_events.runtime.metrics import (
    MetricsCollector,
    RequestDurations,
    ServiceMetrics,
    metrics_router,
    runtime_collectors,
)
from caseloop_events.runtime.migrations import Migrations
from caseloop_events.runtime.outbox import OutboxRelay
from caseloop_events.runtime.readiness import Readiness, readiness_router
from caseloop_events.runtime.storage import DEFAULT_POOL_SIZE, RuntimeTables, ping
from caseloop_events.runtime.streams import Stream, StreamCache
from caseloop_events.runtime.telemetry import fastapi_telemetry, handling, tracer_of
from caseloop_events.runtime.topics import ensure_topics
from caseloop_events.runtime.unit_of_work import Checkpoint, Deps, KeyedLocks, UnitOfWork, VersionConflict

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A handler of an event of the log: ``async def handler(event, uow) -> None``.
EventHandler = Callable[[Envelope, UnitOfWork[Deps, State]], Awaitable[None]]
#: A handler of a command: ``async def handler(command, uow) -> result``.
CommandHandler = Callable[[Any, UnitOfWork[Deps, State]], Awaitable[Any]]
#: Brings a stream's projection rows in line with its state (``uow.put``, ``uow.remove``); its type
#: variables come in the order they first appear: ``Projector[State, Deps]``.
Projector = Callable[[Stream[State], UnitOfWork[Deps, State]], Awaitable[None]]

#: How often a command is decided again on fresh state when another writer changed its streams
#: first (``VersionConflict``); after that the client is answered 503, to try again.
COMMAND_ATTEMPTS = 5


async def keep(event: Envelope, uow: UnitOfWork[Any, Any]) -> None:
    """The handler of an event a service keeps for its folds and projections and decides nothing on
    (the runtime records every handled event in its stream before calling its handler)."""


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
    #: Connections to PostgreSQL: the requests served at once, the consumer, the relay and the jobs.
    #: A request beyond them waits for a connection.
    database_pool_size: int = Field(default=DEFAULT_POOL_SIZE, ge=1, validation_alias="CASELOOP_DATABASE_POOL_SIZE")
    #: Streams (cases) whose events and state the service keeps in memory between units of work.
    stream_cache_size: int = Field(default=2000, ge=0, validation_alias="CASELOOP_STREAM_CACHE_SIZE")
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


Settings = TypeVar("Settings", bound=ServiceSettings)


@dataclass(frozen=True)
class ServiceTables:
    """A service's tables: its own and the runtime's on one metadata, and what a replay rebuilds."""

    metadata: MetaData
    runtime: RuntimeTables
    #: The tables a replay rebuilds, each with the columns that may differ between a live and a
    #: rebuilt database without the projection being wrong (ADR 0008).
    projections: Mapping[str, frozenset[str]]
    #: The service's tables no replay can rebuild (carried over by a promotion, with the outbox).
    operational: tuple[str, ...] = ()
    #: The service's migration environment (ADR 0016): how its schema is brought to head.
    migrations: Migrations | None = None


@dataclass(frozen=True)
class Wiring(Generic[Settings]):
    """What a service's dependencies are built from."""

    settings: Settings
    reference: ReferenceData
    database: Database
    clock: Clock


#: A background job: a coroutine that runs until cancelled (each round logged and survived).
Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceDefinition(Generic[Settings, Deps, State]):
    """Everything that makes one service, on one screen of its ``app.py``."""

    name: Producer
    title: str
    summary: str
    settings: type[Settings]
    tables: ServiceTables
    #: How a stream folds: the state before any event, and one event applied.
    model: StreamModel[State]
    #: The commands the service takes, each with its handler.
    commands: Mapping[type[Any], CommandHandler[Deps, State]]
    #: The events the service reacts to, each with its handler: it reads nothing else (``keep``:
    #: kept for the folds and projections only). Events of its own topic it wrote itself.
    events: Mapping[type[EventPayload], EventHandler[Deps, State]]
    #: Brings the projections of a stream that changed in a unit of work in line with its state:
    #: called once per changed stream, before the unit of work is written (and in a replay).
    project: Projector[State, Deps]
    routers: Sequence[APIRouter]
    #: The dependencies the handlers reach as ``uow.deps`` (reference data, rules, stores).
    dependencies: Callable[[Wiring[Settings]], Deps]
    #: The background jobs, built once the service is composed.
    jobs: Callable[[Service[Settings, Deps, State]], Mapping[str, Job]] = field(default=lambda _service: {})
    #: What the service shows on ``/metrics`` besides the runtime's figures (read at each scrape).
    collectors: Callable[[Service[Settings, Deps, State]], Sequence[MetricsCollector]] = field(
        default=lambda _service: ()
    )

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self.handlers_by_type)

    @functools.cached_property
    def handlers_by_type(self) -> Mapping[str, EventHandler[Deps, State]]:
        return {payload.event_type: handler for payload, handler in self.events.items()}

    def producers_read(self) -> tuple[Producer, ...]:
        """The services whose events this one declares handlers for, in topic order."""
        return tuple(p for p in Producer if any(payload.producer is p for payload in self.events))


class Service(Generic[Settings, Deps, State]):
    """A composed service: its database, its dependencies, its units of work; once started, its
    producer, relay, consumer and jobs."""

    def __init__(
        self,
        definition: ServiceDefinition[Settings, Deps, State],
        settings: Settings,
        kafka: KafkaSettings,
        clock: Clock,
        *,
        dependencies: Deps | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.definition = definition
        self.name = definition.name.value
        self.settings = settings
        self.kafka = kafka
        self.clock = clock
        self.topic = kafka.topic_of(definition.name)
        self.database = Database(
            settings.resolved_database_url,
            definition.tables.runtime,
            self.topic,
            clock,
            pool_size=settings.database_pool_size,
            migrations=definition.tables.migrations,
        )
        self.reference = load_reference_data(settings.reference_dir or default_reference_dir())
        self.deps: Deps = (
            dependencies
            if dependencies is not None
            else definition.dependencies(Wiring(settings, self.reference, self.database, clock))
        )
        self.cache: StreamCache[State] = StreamCache(settings.stream_cache_size)
        self.locks = KeyedLocks()
        self.relay: OutboxRelay | None = None
        self.consumer: EventConsumer | None = None
        #: The runtime's tracer: from the provider given (tests), else the process's (ADR 0018).
        self.tracer = tracer_of(tracer_provider)
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = ServiceMetrics()
        self.metrics.read_at_scrape(*runtime_collectors(self), *definition.collectors(self))

    # --- topics ------------------------------------------------------------------------------

    @property
    def consumes(self) -> tuple[str, ...]:
        """The topics the live consumer reads: those of the other services it declares handlers
        for. Its own events it recorded when it wrote them."""
        return tuple(self.kafka.topic_of(p) for p in self.definition.producers_read() if p is not self.definition.name)

    @property
    def replays(self) -> tuple[str, ...]:
        """The topics a replay reads to rebuild the projections: its own as well."""
        return tuple(self.kafka.topic_of(p) for p in self.definition.producers_read())

    def wants(self, event_type: str) -> bool:
        return event_type in self.definition.event_types

    # --- units of work -----------------------------------------------------------------------

    def unit_of_work(self, cache: StreamCache[State] | None = None) -> UnitOfWork[Deps, State]:
        return UnitOfWork(
            self.database,
            self.definition.model,
            self.cache if cache is None else cache,
            self.deps,
            self.clock,
            self.locks,
        )

    async def check(self, stream_id: UUID, rule: Callable[[State], None]) -> None:
        """Apply ``rule`` (raising to refuse) to the stream's state, as this process keeps it when it
        does (no round trip); a refusal on a kept stream is checked again on the stream as stored,
        since another process may have changed it meanwhile (an access check before a command)."""
        uow = self.unit_of_work()
        try:
            rule(await uow.state(stream_id))
        except Exception:
            if not uow.took_kept_streams:
                raise
            fresh = self.unit_of_work()
            fresh.trust_cache = False
            rule(await fresh.state(stream_id))

    async def commit(self, uow: UnitOfWork[Deps, State]) -> None:
        """Project each stream that changed, then write the unit of work."""
        await write(self.definition, uow)

    async def handle(self, command: object) -> Any:
        """Run a command's handler in a unit of work and write it (``run_command``)."""
        return await run_command(self.definition, self.unit_of_work, command)

    async def take(self, events: Sequence[Incoming], checkpoints: Sequence[Checkpoint]) -> Handled:
        """A consumer's poll: every event recorded in its stream and handed to its handler, the
        changed streams projected, all written with the checkpoints in one unit of work."""
        uow = self.unit_of_work()
        handled_types: list[str] = []
        handled = await react(self.definition, uow, events, self.tracer, handled_types)
        for checkpoint in checkpoints:
            uow.put_checkpoint(checkpoint)
        await self.commit(uow)
        self.metrics.count_handled(handled_types)
        return Handled(handled, len(events) - handled)

    async def rebuild(
        self, events: Sequence[Incoming], checkpoints: Sequence[Checkpoint], cache: StreamCache[State]
    ) -> Handled:
        """A replay's batch: the events recorded and the changed streams projected, once each; no
        handler runs, so nothing is decided and nothing emitted (DESIGN.md §3, replay mode)."""
        uow = self.unit_of_work(cache)
        await uow.load(*(incoming.event.case_id for incoming in events))
        handled = sum(uow.record(incoming.event, incoming.stored) for incoming in events)
        for checkpoint in checkpoints:
            uow.put_checkpoint(checkpoint)
        await self.commit(uow)
        return Handled(handled, len(events) - handled)

    async def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        uow = self.unit_of_work()
        for checkpoint in checkpoints:
            uow.put_checkpoint(checkpoint)
        await uow.commit()

    async def stored_checkpoints(self, consumer: str) -> dict[tuple[str, int], tuple[int, str | None]]:
        table = self.database.tables.checkpoints
        async with self.database.reading() as session:
            rows = await session.execute(
                select(table.c.topic, table.c.partition, table.c.next_offset, table.c.last_event_id).where(
                    table.c.consumer == consumer
                )
            )
            return {(topic, partition): (offset, last) for topic, partition, offset, last in rows}

    # --- running -----------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        BrokerRequests.count()
        if self.settings.profile == "production":
            # A deployment migrates first (``caseloop migrate``, the migrate job): a service that
            # changed its schema as it started could break the replicas still running the old code.
            await self.database.require_schema_at_head()
        else:
            await self.database.create_schema()
        await _retry_connect(
            "topic creation",
            lambda: ensure_topics(
                self.kafka.kafka_bootstrap_servers,
                self.kafka.caseloop_topic_partitions,
                self.kafka.caseloop_topic_replication,
                self.kafka.all_topics,
                self.kafka.security(),
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
            tracer=self.tracer,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        if self.consumes:
            self.consumer = EventConsumer(
                name=self.name,
                topics=self.consumes,
                bootstrap_servers=self.kafka.kafka_bootstrap_servers,
                sink=self,
                deadletter=producer,
                deadletter_topic=self.kafka.deadletter_topic,
            )
            await _retry_connect("the consumer", self.consumer.start)
            self._tasks.append(asyncio.create_task(self.consumer.run(), name=f"{self.name}-consumer"))
        for job_name, job in self.definition.jobs(self).items():
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

    async def database_answers(self) -> None:
        """``SELECT 1`` on the service's database (``/readyz``); raises when it does not answer."""
        async with self.database.reading() as session:
            await ping(session)

    async def broker_answers(self) -> None:
        """A metadata request to the broker on the producer's connections (``/readyz``); raises when
        no broker answers, or while the producer has not connected yet."""
        if self._producer is None:
            raise KafkaConnectionError("the producer has not connected to the broker yet")
        await self._producer.client.fetch_all_metadata()

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
            report["not_handled_here"] = self.consumer.skipped_total
            report["deadlettered"] = self.consumer.deadlettered_total
        report["database_round_trips"] = self.database.round_trips
        report["broker_requests"] = BrokerRequests.sent
        report["streams_cached"] = len(self.cache)
        return report


async def write(definition: ServiceDefinition[Any, Deps, State], uow: UnitOfWork[Deps, State]) -> None:
    """Project each stream that changed in the unit of work, then write it."""
    for stream in uow.changed():
        await definition.project(stream, uow)
    await uow.commit()


async def run_command(
    definition: ServiceDefinition[Any, Deps, State],
    new_unit_of_work: Callable[[], UnitOfWork[Deps, State]],
    command: object,
) -> Any:
    """Run a command's handler in a unit of work and write it; decided again on fresh state when
    another writer changed its streams first (``COMMAND_ATTEMPTS`` times, then ``VersionConflict``).
    A command refused (its handler raised) on streams taken as this process keeps them is decided
    once more on the streams as stored: no write checks a refusal, and the kept stream may be
    behind another process's write."""
    handler = definition.commands[type(command)]
    trust_cache = True
    for attempt in range(1, COMMAND_ATTEMPTS + 1):
        uow = new_unit_of_work()
        uow.trust_cache = trust_cache
        try:
            result = await handler(command, uow)
            await write(definition, uow)
        except VersionConflict:
            if attempt == COMMAND_ATTEMPTS:
                raise
            continue
        except Exception:
            if not uow.took_kept_streams or attempt == COMMAND_ATTEMPTS:
                raise
            trust_cache = False
            continue
        finally:
            uow.release()
        return result
    raise AssertionError("unreachable")


async def react(
    definition: ServiceDefinition[Any, Deps, State],
    uow: UnitOfWork[Deps, State],
    events: Sequence[Incoming],
    tracer: Tracer | None = None,
    handled_types: list[str] | None = None,
) -> int:
    """Record each event in its stream and hand it to its handler (none for an event its stream holds
    already), in a span that continues the trace it was published in; returns how many were
    handled, and notes their types in ``handled_types``. A handler that raises raises
    ``HandlerFailed``."""
    tracer = tracer if tracer is not None else tracer_of(None)
    await uow.load(*(incoming.event.case_id for incoming in events))
    handlers = definition.handlers_by_type
    handled = 0
    for incoming in events:
        event = incoming.event
        if not uow.record(event, incoming.stored):
            continue
        handled += 1
        if handled_types is not None:
            handled_types.append(event.type)
        try:
            with handling(tracer, event, incoming.traceparent):
                await handlers[event.type](event, uow)
        except Exception as error:
            uow.rollback()
            if is_transient(error):
                raise
            raise HandlerFailed(event.event_id) from error
    return handled


#: How many new objects a process allocates before Python looks for reference cycles (700 by
#: default). A service keeps thousands of folded cases, events and parsed envelopes alive: each
#: full look walked them all, and took a third of a replay's time and a good part of a busy
#: service's (docs/performance.md). Almost all of them are freed by reference counting anyway.
OBJECTS_BETWEEN_CYCLE_COLLECTIONS = 50_000


def tune_garbage_collection() -> None:
    """Set the objects made while starting aside from the cycle collector (``gc.freeze``) and let it
    run once per ``OBJECTS_BETWEEN_CYCLE_COLLECTIONS`` new objects instead of 700."""
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(OBJECTS_BETWEEN_CYCLE_COLLECTIONS, second, third)


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


def compose(
    definition: ServiceDefinition[Settings, Deps, State],
    settings: Settings | None = None,
    kafka: KafkaSettings | None = None,
    clock: Clock | None = None,
    *,
    dependencies: Deps | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The service's FastAPI app, its ``Service`` in ``app.state.service`` and as lifespan: problem+json
    errors, a body size limit, ``/healthz`` and ``/readyz`` open to probes, ``/metrics`` for the
    operator and monitor roles, and its routers behind credentials and the per-client rate limit; a
    span for each request, its log lines naming the case its path names. ``dependencies`` replaces
    what the definition would build, ``tracer_provider`` the process's (tests)."""
    settings = settings if settings is not None else definition.settings()
    service = Service(
        definition,
        settings,
        kafka or KafkaSettings(),
        clock or clock_from_environment(),
        dependencies=dependencies,
        tracer_provider=tracer_provider,
    )
    app = ProblemDocumentedAPI(
        title=definition.title,
        summary=definition.summary,
        version="0.1.0",
        lifespan=service.lifespan,
        responses=PROBLEM_RESPONSES,
        telemetry=fastapi_telemetry(tracer_provider),
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestDurations, histogram=service.metrics.request_duration)
    app.state.service = service
    app.state.authenticator = settings.authenticator()
    app.state.rate_limiter = settings.rate_limiter()
    install_error_handlers(app)
    app.include_router(health_router(service.health))
    app.include_router(
        readiness_router(Readiness({"database": service.database_answers, "broker": service.broker_answers}))
    )
    app.include_router(metrics_router(service.metrics))
    for router in definition.routers:
        app.include_router(
            router, dependencies=[Depends(authenticated), Depends(case_named_in_path)], responses=COMMON_RESPONSES
        )
    return app


async def service_of(request: Request) -> Service[Any, Any, Any]:
    """The composed service serving the request (a route's dependency; ``async``, so FastAPI runs it
    on the event loop, not in its thread pool)."""
    service: Service[Any, Any, Any] = request.app.state.service
    return service
