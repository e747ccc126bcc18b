"""``make bench``: how much work caseloop does on this machine, and where the time goes (issue 7).

Run as ``python -m caseloop_deploy.bench --help``. For each database kind — PostgreSQL (fresh
databases for the run, dropped after) and the SQLite default — the broker and the four services
start as ``make run`` starts them (:class:`~caseloop_deploy.stack.LocalStack`, development
profile, no rate limit), and load goes through their real HTTP APIs:

1. **warm-up**: a few cases round the whole loop; their timelines are the pre-load's templates.
2. **pre-load**: supervision is stopped and its database filled with ``--stored-events`` events of
   closed cases, cloned from the templates with new ids and earlier times, through the service's
   own replay path (its event handler with ``replaying=True``, one transaction per batch, as
   ``caseloop replay`` does); then supervision starts again. These events are in supervision's
   case log and case list (what the timeline and list queries read), not on the topics.
3. **loop**: several simulated source systems keep ``--loop-concurrency`` cases in flight for
   ``--loop-seconds``; each case is acknowledged and its result reported by its unit as soon as
   the assignment is on the log, verified by a supervisor once supervision has seen the result,
   and evaluated by the citizen (which closes it). Closed cases per second; POST→assignment and
   POST→closure latency; per closed case, the services' database round trips and broker requests
   (their ``/healthz`` counters) and the CPU, the bench's own reported apart. The bench reads the
   topics itself to see assignments at once (a unit's app would poll its inbox); the actions all go
   through HTTP (aiohttp), each with the development key of who would send it.
4. **settle**, then **queries**: timelines of random stored cases and pages of the case list, one
   request at a time.
5. **intake**: POST /v1/cases at a fixed offered rate (open loop: sent on schedule, whatever the
   answers), then at saturation (``--saturation-concurrency`` clients sending back to back).
6. **resources**: CPU seconds and peak RSS of each service, the broker, the bench itself and the
   PostgreSQL server over the measured phases, and what else kept the machine busy.
7. **rebuild**: with the services stopped, a full replay of each service's topics into a shadow
   database (``caseloop replay``'s function), events per second.

Consumer lag, outbox backlog and processed counts are read from each service's ``/healthz`` every
second throughout. ``bench-results/<timestamp>/`` gets ``report.json``, ``bench.png`` and, with
``--profile SERVICE``, that service's cProfile statistics.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import aiohttp
import psutil
import typer
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from caseloop_deploy.bench_report import (
    Timed,
    draw_plot,
    evaluate_targets,
    latency_summary,
    per_second,
    render_table,
)
from caseloop_deploy.databases import connected, drop_database, is_sqlite, recreate_database, sibling_url
from caseloop_deploy.logread import partitions_of
from caseloop_deploy.replay import replay_service
from caseloop_deploy.samples import REPORTS
from caseloop_deploy.services import SERVICE_NAMES, service_spec
from caseloop_deploy.stack import LocalStack
from caseloop_events.contracts.envelope import Envelope, Producer
from caseloop_events.runtime.consumer import FETCH_WINDOW_MS, FetchPacer, Incoming
from caseloop_events.runtime.kafka import BrokerRequests, KafkaSettings, record_event_type
from caseloop_events.runtime.streams import StreamCache
from caseloop_events.testing.broker import free_port

DEFAULT_POSTGRES_URL = os.environ.get(
    "CASELOOP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task of the bench and wait until it has stopped."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


#: The systems that report cases (each posts under its own development key).
SOURCE_SYSTEMS = ("hotline-12345", "grid-worker-app", "police-110", "city-management", "wechat-miniapp", "open311")


#: Cases per transaction when pre-loading supervision (the replay path's batches hold ~2,000 records).
PRELOAD_BATCH_CASES = 150

#: How many of the pre-loaded cases the timeline queries choose from (a uniform sample).
TIMELINE_SAMPLE = 2000


class DatabaseKind(StrEnum):
    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"


@dataclass(frozen=True)
class BenchOptions:
    databases: tuple[DatabaseKind, ...] = (DatabaseKind.POSTGRESQL, DatabaseKind.SQLITE)
    output_dir: Path = Path("bench-results")
    warmup_cases: int = 6
    stored_events: int = 20_000
    loop_seconds: float = 60.0
    loop_concurrency: int = 160
    intake_rate: float = 50.0
    intake_seconds: float = 15.0
    saturation_seconds: float = 10.0
    saturation_concurrency: int = 16
    query_requests: int = 200
    settle_timeout: float = 30.0
    source_systems: int = 4
    postgres_url: str = DEFAULT_POSTGRES_URL
    profile_service: str | None = None
    keep_data: bool = False
    seed: int = 7


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- the stack


#: Runs a service module under cProfile and writes the statistics when it stops. uvicorn raises the
#: SIGTERM again once it has shut down; turned into SystemExit, it lets the statistics be written.
_PROFILED = """
import cProfile, runpy, signal, sys
def _exit(*_):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, _exit)
out, module = sys.argv[1], sys.argv[2]
sys.argv = [module]
profile = cProfile.Profile()
try:
    profile.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.dump_stats(out)
"""


@dataclass
class BenchStack(LocalStack):
    """The local stack, with one service (optionally) run under cProfile."""

    profiled: str | None = None
    profile_path: Path | None = None

    def start_service(self, name: str) -> None:
        if name != self.profiled or self.profile_path is None:
            super().start_service(name)
            return
        service = self.services[name]
        service.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-c", _PROFILED, str(self.profile_path), f"caseloop_{name}"]
        with open(service.log_path, "ab") as log:
            service.process = subprocess.Popen(
                command,
                env=self.service_environment(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )


def database_urls(kind: DatabaseKind, data_dir: Path, postgres_url: str, tag: str) -> dict[str, str]:
    if kind is DatabaseKind.SQLITE:
        return {name: f"sqlite+aiosqlite:///{(data_dir / f'{name}.db').resolve()}" for name in SERVICE_NAMES}
    base = postgres_url.rsplit("/", 1)[0]
    return {name: f"{base}/caseloop_bench_{tag}_{name}" for name in SERVICE_NAMES}


# ------------------------------------------------------------------------------ the log, tailed


@dataclass(frozen=True)
class Observed:
    """An event of interest as the bench saw it on the log."""

    type: str
    event_id: str
    causation_id: str | None
    producer: str
    unit_id: str | None
    seen: float


class LogTail:
    """Reads the four service topics as they grow, and wakes whoever waits for a case's event."""

    INTERESTING = frozenset({"case.assigned", "case.result_reported", "case.clock_stopped", "case.closed"})

    def __init__(self, bootstrap_servers: str, topics: Sequence[str]) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[str, list[Observed]] = {}
        self._waiters: dict[str, list[tuple[Callable[[Observed], bool], asyncio.Future[Observed]]]] = {}
        self.records = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id="caseloop-bench",
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        partitions = await partitions_of(self._consumer, self._topics)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._run(), name="bench-log-tail")

    async def stop(self) -> None:
        await _cancelled(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def records_on_topics(self) -> int:
        """How many records the four topics hold now (the sum of their end offsets)."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        return int(sum(ends.values()))

    async def _run(self) -> None:
        assert self._consumer is not None
        pacer = FetchPacer(self._consumer)  # the bench must not spin on an idle broker either
        while True:
            batches = await self._consumer.getmany(timeout_ms=FETCH_WINDOW_MS, max_records=5000)
            if not batches:
                await pacer.rest_when_caught_up(self._consumer.assignment())
                continue
            pacer.got_records()
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    self.records += 1
                    self._observe(record, now)

    def _observe(self, record: Any, now: float) -> None:
        event_type = record_event_type(record)
        if event_type not in self.INTERESTING or record.key is None or record.value is None:
            return
        case_id = record.key.decode()
        data = json.loads(record.value)
        payload = data.get("payload") or {}
        observed = Observed(
            type=event_type,
            event_id=str(data.get("event_id")),
            causation_id=data.get("causation_id"),
            producer=str(data.get("producer")),
            unit_id=payload.get("unit_id") if isinstance(payload, dict) else None,
            seen=now,
        )
        self._seen.setdefault(case_id, []).append(observed)
        waiting = self._waiters.get(case_id)
        if not waiting:
            return
        for entry in list(waiting):
            wants, future = entry
            if not future.done() and wants(observed):
                future.set_result(observed)
                waiting.remove(entry)

    async def wait_for(self, case_id: str, wants: Callable[[Observed], bool], timeout: float) -> Observed | None:
        """The first event of the case that ``wants`` accepts, seen already or within ``timeout``."""
        for observed in self._seen.get(case_id, []):
            if wants(observed):
                return observed
        future: asyncio.Future[Observed] = asyncio.get_running_loop().create_future()
        entry = (wants, future)
        self._waiters.setdefault(case_id, []).append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(case_id, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._waiters.pop(case_id, None)


# ------------------------------------------------------------------------- resources and health


def _peak_rss_kib(pid: int) -> int | None:
    """The kernel's high-water mark of the process's resident memory (VmHWM), on Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _is_postgres(process: psutil.Process) -> bool:
    try:
        return process.name() in ("postgres", "postmaster")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


@dataclass
class CpuSnapshot:
    at: float
    processes: dict[str, float]
    postgres: float
    machine_busy: float


class HealthSample(NamedTuple):
    """One answer of a service's /healthz (all None when it did not answer)."""

    at: float
    consumer_lag: int | None
    outbox_pending: int | None
    processed: int | None
    #: Statements the service sent to its database since it started.
    database_round_trips: int | None
    #: Requests its Kafka clients sent since it started.
    broker_requests: int | None


class Monitor:
    """Every second: each service's /healthz, and the CPU and memory of every process of the run."""

    def __init__(self, stack: LocalStack, t0: float) -> None:
        self._stack = stack
        self._t0 = t0
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.health: dict[str, list[HealthSample]] = {n: [] for n in SERVICE_NAMES}
        self._processes: dict[str, psutil.Process] = {}
        self._peak_rss: dict[str, int] = {}
        self._postgres_cpu: dict[int, float] = {}
        self._postgres_peak_rss = 0

    def track(self) -> None:
        """(Re)take the processes to watch: the services, the broker and the bench."""
        self._processes = {}
        self._peak_rss = {}
        for name, service in self._stack.services.items():
            if service.process is not None and service.process.poll() is None:
                self._processes[name] = psutil.Process(service.process.pid)
        broker = self._stack.broker
        if broker is not None and broker.process is not None:
            self._processes["broker"] = psutil.Process(broker.process.pid)
        self._processes["bench"] = psutil.Process(os.getpid())

    def start(self) -> None:
        self.track()
        self._task = asyncio.create_task(self._run(), name="bench-monitor")

    async def stop(self) -> None:
        await _cancelled(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def cpu(self) -> CpuSnapshot:
        processes: dict[str, float] = {}
        for name, process in self._processes.items():
            try:
                times = process.cpu_times()
                processes[name] = times.user + times.system
                self._peak_rss[name] = max(self._peak_rss.get(name, 0), process.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        for process in psutil.process_iter():
            if _is_postgres(process):
                try:
                    times = process.cpu_times()
                    self._postgres_cpu[process.pid] = times.user + times.system
                    self._postgres_peak_rss = max(self._postgres_peak_rss, process.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq + machine.steal
        return CpuSnapshot(time.monotonic() - self._t0, processes, sum(self._postgres_cpu.values()), busy)

    def peak_rss_mb(self) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for name, process in self._processes.items():
            high_water = _peak_rss_kib(process.pid)
            sampled = self._peak_rss.get(name, 0)
            peaks[name] = round(max(sampled, (high_water or 0) * 1024) / 2**20, 1)
        peaks["postgresql"] = round(self._postgres_peak_rss / 2**20, 1)
        return peaks

    async def sample_health(self) -> None:
        """Ask every service's /healthz once and keep the answers (also between the periodic ones:
        at a phase's edges, so that its counters are read where it starts and ends)."""
        if self._session is None:
            self._session = new_session(connections=2 * len(self._stack.services), timeout=2.0)
        session = self._session
        at = round(time.monotonic() - self._t0, 2)
        # /healthz takes no credentials
        answers = await asyncio.gather(
            *(request(session, "GET", f"{service.url}/healthz", None) for service in self._stack.services.values())
        )
        for name, answer in zip(self._stack.services, answers, strict=True):
            if answer is not None and answer.content_type == "application/json":
                body = answer.json()
                self.health[name].append(
                    HealthSample(
                        at,
                        body.get("consumer_lag"),
                        body.get("outbox_pending"),
                        body.get("processed"),
                        body.get("database_round_trips"),
                        body.get("broker_requests"),
                    )
                )
            else:
                self.health[name].append(HealthSample(at, None, None, None, None, None))

    def health_nearest(self, at: float) -> dict[str, HealthSample | None]:
        """Each service's answer with counters in it nearest to ``at`` (seconds since the start)."""
        nearest: dict[str, HealthSample | None] = {}
        for name, samples in self.health.items():
            counted = [s for s in samples if s.database_round_trips is not None and s.broker_requests is not None]
            nearest[name] = min(counted, key=lambda s: abs(s.at - at), default=None)
        return nearest

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            await self.sample_health()
            self.cpu()
            await asyncio.sleep(max(1.0 - (time.monotonic() - began), 0.05))


def cpu_between(first: CpuSnapshot, last: CpuSnapshot) -> dict[str, Any]:
    """CPU seconds each process used between two snapshots, and what the rest of the machine used."""
    used = {name: round(last.processes[name] - first.processes.get(name, 0.0), 2) for name in last.processes}
    postgres = round(last.postgres - first.postgres, 2)
    busy = last.machine_busy - first.machine_busy
    seconds = max(last.at - first.at, 1e-9)
    cores = psutil.cpu_count() or 1
    return {
        "seconds": round(seconds, 1),
        "processes": used,
        "postgresql": postgres,
        "machine_busy_cpu_seconds": round(busy, 1),
        "machine_busy_percent": round(100 * busy / (seconds * cores), 1),
        "other_processes_cpu_seconds": round(busy - sum(used.values()) - postgres, 1),
    }


def _increases(
    first: Mapping[str, HealthSample | None], last: Mapping[str, HealthSample | None], counter: str
) -> dict[str, int] | None:
    """How much each service's /healthz ``counter`` grew between two answers; None when a service
    did not answer with it, or restarted in between (its counter began again)."""
    grown: dict[str, int] = {}
    for name in SERVICE_NAMES:
        before, after = first.get(name), last.get(name)
        was = None if before is None else getattr(before, counter)
        now = None if after is None else getattr(after, counter)
        if was is None or now is None or now < was:
            return None
        grown[name] = now - was
    return grown


def per_closed_case(
    closed: int,
    cpu: tuple[CpuSnapshot, CpuSnapshot],
    first: Mapping[str, HealthSample | None],
    last: Mapping[str, HealthSample | None],
    log_reader_broker_requests: int,
) -> dict[str, Any]:
    """What one closed case cost in a phase: the services' database round trips and broker requests
    (from their /healthz counters), and CPU in ms — the whole machine's, the same without the bench's
    own process (the driver must not be what is measured), the four services', and the bench's."""

    def each(amount: float | None, digits: int = 2) -> float | None:
        return None if amount is None or closed <= 0 else round(amount / closed, digits)

    round_trips = _increases(first, last, "database_round_trips")
    broker = _increases(first, last, "broker_requests")
    start, end = cpu
    used = {name: end.processes[name] - start.processes.get(name, 0.0) for name in end.processes}
    busy = end.machine_busy - start.machine_busy
    driver = used.get("bench", 0.0)
    services = sum(used.get(n, 0.0) for n in SERVICE_NAMES)
    postgres = end.postgres - start.postgres
    # What the services, the broker and PostgreSQL used: the machine's busy time less the driver
    # and less whatever else ran meanwhile (another test run on the same cores shows here).
    stack = services + used.get("broker", 0.0) + postgres
    return {
        "closed": closed,
        "seconds": round(end.at - start.at, 1),
        "database_round_trips": each(None if round_trips is None else sum(round_trips.values())),
        "database_round_trips_by_service": {n: each(v) for n, v in (round_trips or {}).items()},
        "broker_requests": each(None if broker is None else sum(broker.values())),
        "broker_requests_by_service": {n: each(v) for n, v in (broker or {}).items()},
        "bench_log_reader_broker_requests": each(log_reader_broker_requests),
        "cpu_ms": {
            "machine": each(busy * 1000),
            "machine_without_driver": each((busy - driver) * 1000),
            "stack": each(stack * 1000),
            "services": each(services * 1000),
            **{n: each(used.get(n, 0.0) * 1000) for n in SERVICE_NAMES},
            "broker": each(used.get("broker", 0.0) * 1000),
            "postgresql": each(postgres * 1000),
            "driver": each(driver * 1000),
            "other_processes": each((busy - driver - stack) * 1000),
        },
        "note": "over the loop phase (its drain included): each counter's increase, and CPU, divided by the "
        "cases closed in it; round trips and broker requests are the four services' (their /healthz), the "
        "bench's own log reader's apart; machine CPU is every core's busy time, driver = the bench process, "
        "stack = the services, the broker and every PostgreSQL process (other databases' too)",
    }


# ----------------------------------------------------------------------------- the HTTP side


@dataclass
class Api:
    intake: str
    triage: str
    dispatch: str
    supervision: str

    @classmethod
    def of(cls, stack: LocalStack) -> Api:
        return cls(*(stack.services[name].url for name in SERVICE_NAMES))


#: The development key of a district supervisor: what the bench sends for verifications, the
#: citizen's evaluations and every read (as ``development_key_for`` of the test fixtures would).
SUPERVISOR = "dev:supervisor"


def source_system_key(source_system: str) -> str:
    """The development key of a source system that reports cases."""
    return f"dev:source_system:{source_system}"


def unit_key(unit_id: str) -> str:
    """The development key of a unit acting on a case assigned to it."""
    return f"dev:unit:{unit_id}"


def new_session(connections: int = 256, timeout: float = 60.0) -> aiohttp.ClientSession:
    """A session of at most ``connections`` requests at once (size it to the requests in flight:
    one more waits for a free connection). Each request names its caller's key itself.

    aiohttp, not httpx: the load driver must cost far less than the services it drives (~0.1 ms of
    CPU per request here against ~2.5 ms)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=connections,
            limit_per_host=0,
            # Below uvicorn's 5 s: a POST on a connection the server just closed would fail, not be retried.
            keepalive_timeout=2.0,
        ),
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),  # the APIs set none; the jar would be consulted per request
    )


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read whole; its body is decoded only when asked for."""

    status_code: int
    content_type: str
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    key: str | None,
    *,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Answer | None:
    """Send one request as the caller whose development ``key`` it carries (None: no credentials);
    its answer, or None when there was none (refused, reset, timed out)."""
    headers = {"X-API-Key": key} if key is not None else None
    try:
        async with session.request(method, url, json=body, params=params, headers=headers) as response:
            return Answer(response.status, response.content_type, await response.read())
    except (aiohttp.ClientError, TimeoutError):
        return None


@dataclass
class Counters:
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, response: Answer | None) -> None:
        key = f"{what} {'error' if response is None else response.status_code}"
        self.statuses[key] = self.statuses.get(key, 0) + 1


class CaseFactory:
    """Reports of the simulated source systems: each case in a grid and with a text none before it
    had in this run (so screening never links it as a duplicate of an open case)."""

    def __init__(self, grids: Sequence[str], systems: Sequence[str], tag: str) -> None:
        self._grids = list(grids)
        self._systems = list(systems)
        self._tag = tag
        self._next = 0

    def take(self) -> tuple[int, dict[str, Any]]:
        n = self._next
        self._next += 1
        title, description, category = REPORTS[(n // len(self._grids)) % len(REPORTS)]
        system = self._systems[n % len(self._systems)]
        body: dict[str, Any] = {
            "source_system": system,
            "external_id": f"BENCH-{self._tag}-{n:07d}",
            "title": title,
            "description": description,
            "location": {"grid_code": self._grids[n % len(self._grids)], "address": f"{n % 40 + 1}号楼"},
            "reporter": {"name": "王五", "phone": "13900000000"},
        }
        if category:
            body["category"] = category
        return n, body


async def all_grids(session: aiohttp.ClientSession, api: Api) -> list[str]:
    grids: list[str] = []
    while True:
        answer = await request(
            session, "GET", f"{api.intake}/v1/grids", SUPERVISOR, params={"limit": 1000, "offset": len(grids)}
        )
        if answer is None or answer.status_code != 200:
            raise RuntimeError(f"GET /v1/grids: {'no answer' if answer is None else answer.status_code}")
        page = answer.json()
        grids.extend(item["grid_code"] for item in page["items"])
        if not page["items"] or len(grids) >= page["total"]:
            return grids


@dataclass
class LoopResults:
    started: int = 0
    closed: int = 0
    failed: int = 0
    not_accepted: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    posts: list[Timed] = field(default_factory=list)
    assignments: list[Timed] = field(default_factory=list)
    closures: list[Timed] = field(default_factory=list)
    closed_ids: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failed += 1
        self.failures[why] = self.failures.get(why, 0) + 1


class LoopDriver:
    """Cases round the whole loop over HTTP: report, acknowledge, result, verify, evaluate.
    ``concurrency``: the most cases it will have in flight (each sends one request at a time)."""

    def __init__(
        self,
        api: Api,
        tail: LogTail,
        cases: CaseFactory,
        counters: Counters,
        t0: float,
        concurrency: int,
        step_timeout: float = 60.0,
    ) -> None:
        self.api = api
        self.tail = tail
        self.cases = cases
        self.counters = counters
        self.t0 = t0
        self.step_timeout = step_timeout
        self.results = LoopResults()
        # One pool for every caller: each case waits for one answer at a time, so as many
        # connections as cases in flight never keep a request waiting for one.
        self.session = new_session(connections=max(concurrency, 1))

    async def close(self) -> None:
        await self.session.close()

    async def _send(
        self, what: str, method: str, url: str, key: str, body: Mapping[str, Any] | None = None
    ) -> Answer | None:
        response = await request(self.session, method, url, key, body=body)
        self.counters.count(what, response)
        return response

    async def one_case(self) -> str | None:
        """One case from report to closure; its id once closed, else None (the failure counted)."""
        results, api = self.results, self.api
        _, body = self.cases.take()
        results.started += 1
        began = time.monotonic()
        created = await self._send(
            "POST intake /v1/cases", "POST", f"{api.intake}/v1/cases", source_system_key(body["source_system"]), body
        )
        answered = time.monotonic()
        if created is None or created.status_code not in (200, 201):
            results.fail("report")
            return None
        results.posts.append(Timed(answered - self.t0, answered - began))
        case = created.json()
        if case.get("status") != "accepted":
            results.not_accepted += 1
            return None
        case_id = str(case["case_id"])
        assigned = await self.tail.wait_for(case_id, lambda e: e.type == "case.assigned", self.step_timeout)
        if assigned is None or assigned.unit_id is None:
            results.fail("no assignment")
            return None
        results.assignments.append(Timed(assigned.seen - self.t0, assigned.seen - began))
        unit = assigned.unit_id
        dispatch = f"{api.dispatch}/v1/cases/{case_id}"
        ack = await self._send(
            "POST dispatch acknowledge",
            "POST",
            f"{dispatch}/acknowledge",
            unit_key(unit),
            {"unit_id": unit, "by": "handler-1"},
        )
        if ack is None or ack.status_code != 200:
            results.fail("acknowledge")
            return None
        result = await self._send(
            "POST dispatch result",
            "POST",
            f"{dispatch}/result",
            unit_key(unit),
            {
                "unit_id": unit,
                "by": "handler-1",
                "summary": "已到现场处理完毕",
                "evidence": ["https://files.example/p.jpg"],
            },
        )
        if result is None or result.status_code != 200:
            results.fail("result")
            return None
        if not await self._verify(case_id):
            return None
        evaluated = await self._send(
            "POST supervision evaluation",
            "POST",
            f"{api.supervision}/v1/cases/{case_id}/evaluation",
            SUPERVISOR,
            {"rating": "satisfied", "comment": "处理及时"},
        )
        closed = time.monotonic()
        if evaluated is None or evaluated.status_code != 200 or evaluated.json().get("status") != "closed":
            results.fail("evaluation")
            return None
        results.closed += 1
        results.closures.append(Timed(closed - self.t0, closed - began))
        results.closed_ids.append(case_id)
        return case_id

    async def _verify(self, case_id: str) -> bool:
        """Verify once supervision has seen the result: its handling clock stops on it (an event
        of supervision caused by the result); a 409 meanwhile is tried again."""
        reported = await self.tail.wait_for(case_id, lambda e: e.type == "case.result_reported", self.step_timeout)
        if reported is not None:
            await self.tail.wait_for(
                case_id,
                lambda e: e.producer == Producer.SUPERVISION.value and e.causation_id == reported.event_id,
                self.step_timeout,
            )
        deadline = time.monotonic() + self.step_timeout
        while True:
            verified = await self._send(
                "POST supervision verification",
                "POST",
                f"{self.api.supervision}/v1/cases/{case_id}/verification",
                SUPERVISOR,
                {"passed": True, "by": "supervisor-1", "note": "现场核查属实"},
            )
            if verified is not None and verified.status_code == 200:
                return True
            if verified is None or verified.status_code != 409 or time.monotonic() > deadline:
                self.results.fail("verification")
                return False
            await asyncio.sleep(0.1)

    async def run_for(self, seconds: float, concurrency: int, drain: float = 20.0) -> None:
        """``concurrency`` cases in flight until ``seconds`` have passed; then up to ``drain``
        seconds for the cases still in flight to close (they count for latency, not throughput)."""
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop_at:
                await self.one_case()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        _, pending = await asyncio.wait(workers, timeout=seconds + drain)
        for task in pending:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self.results.failed += len(pending)
        if pending:
            self.results.failures["still open when the drain ended"] = len(pending)

    async def run_count(self, count: int, concurrency: int) -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with limit:
                await self.one_case()

        await asyncio.gather(*(one() for _ in range(count)))


# ------------------------------------------------------------------------------------- intake


@dataclass
class IntakeResults:
    sent: int = 0
    accepted: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    latencies: list[Timed] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)


async def post_case(
    session: aiohttp.ClientSession,
    api: Api,
    body: dict[str, Any],
    results: IntakeResults,
    counters: Counters,
    t0: float,
) -> None:
    began = time.monotonic()
    response = await request(
        session, "POST", f"{api.intake}/v1/cases", source_system_key(body["source_system"]), body=body
    )
    answered = time.monotonic()
    counters.count("POST intake /v1/cases", response)
    if response is not None and response.status_code in (200, 201):
        results.accepted += 1
        results.latencies.append(Timed(answered - t0, answered - began))
    else:
        results.errors += 1


async def intake_fixed_rate(
    api: Api, cases: CaseFactory, rate: float, seconds: float, counters: Counters, t0: float, outstanding: int = 1000
) -> IntakeResults:
    """POST at ``rate`` per second on schedule (open loop), whatever the answers; a send that would
    pass ``outstanding`` requests in flight is skipped and counted."""
    results = IntakeResults()
    total = max(int(rate * seconds), 1)
    in_flight: set[asyncio.Task[None]] = set()
    async with new_session(connections=outstanding) as session:
        began = time.monotonic()
        for n in range(total):
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            results.lateness.append(max(time.monotonic() - due, 0.0))
            if len(in_flight) >= outstanding:
                results.skipped += 1
                continue
            _, body = cases.take()
            results.sent += 1
            task = asyncio.create_task(post_case(session, api, body, results, counters, t0))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)
        results.seconds = time.monotonic() - began
    return results


async def intake_saturation(
    api: Api, cases: CaseFactory, seconds: float, concurrency: int, counters: Counters, t0: float
) -> IntakeResults:
    """``concurrency`` clients posting back to back for ``seconds``."""
    results = IntakeResults()
    async with new_session(connections=concurrency) as session:
        began = time.monotonic()
        stop_at = began + seconds

        async def sender() -> None:
            while time.monotonic() < stop_at:
                _, body = cases.take()
                results.sent += 1
                await post_case(session, api, body, results, counters, t0)

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        results.seconds = time.monotonic() - began
    return results


def intake_report(results: IntakeResults, offered: float | None, concurrency: int | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "seconds": round(results.seconds, 1),
        "sent": results.sent,
        "accepted": results.accepted,
        "errors": results.errors,
        "accepted_per_second": round(results.accepted / results.seconds, 1) if results.seconds else 0.0,
        "latency_ms": latency_summary([t.seconds for t in results.latencies]),
    }
    if offered is not None:
        report["offered_per_second"] = offered
        report["skipped_too_many_in_flight"] = results.skipped
        report["send_lateness_ms"] = latency_summary(results.lateness)
    if concurrency is not None:
        report["concurrency"] = concurrency
    return report


# ------------------------------------------------------------------------------------ queries


async def measure_queries(
    api: Api, timeline_ids: Sequence[str], list_filters: Sequence[dict[str, Any]], requests: int, rng: random.Random
) -> dict[str, Any]:
    """Timelines of random stored cases, then pages of the case list; one request at a time."""
    timeline: list[float] = []
    events: list[int] = []
    listing: list[float] = []
    errors = 0
    async with new_session(connections=4) as session:
        for _ in range(requests):
            case_id = rng.choice(timeline_ids)
            began = time.monotonic()
            response = await request(session, "GET", f"{api.supervision}/v1/cases/{case_id}/timeline", SUPERVISOR)
            took = time.monotonic() - began
            if response is not None and response.status_code == 200:
                timeline.append(took)
                events.append(len(response.json()["events"]))
            else:
                errors += 1
        for n in range(requests):
            params = list_filters[n % len(list_filters)]
            began = time.monotonic()
            response = await request(session, "GET", f"{api.supervision}/v1/cases", SUPERVISOR, params=params)
            took = time.monotonic() - began
            if response is not None and response.status_code == 200:
                listing.append(took)
            else:
                errors += 1
    return {
        "timeline": {
            "requests": len(timeline),
            "events_per_timeline_mean": round(sum(events) / len(events), 1) if events else 0,
            "latency_ms": latency_summary(timeline),
        },
        "case_list": {"requests": len(listing), "filters": list(list_filters), "latency_ms": latency_summary(listing)},
        "errors": errors,
    }


# --------------------------------------------------------------------------------- the pre-load


_TOKEN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z|CL\d{15}"
)


class CaseTemplate:
    """A closed case's events as JSON; each clone has new ids, an earlier time, its own numbers."""

    def __init__(self, envelopes: Sequence[Envelope], external_id: str) -> None:
        self.size = len(envelopes)
        self._text = "\n".join(event.model_dump_json() for event in envelopes)
        self._external_id = external_id
        self._first = envelopes[0].occurred_at

    def clone(self, n: int, rng: random.Random) -> list[Envelope]:
        shift = timedelta(days=1 + rng.randrange(365), seconds=rng.randrange(86_400))
        case_no = f"CL{(self._first - shift):%Y%m%d}{n % 10_000_000:07d}"
        ids: dict[str, str] = {}

        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            if token.startswith("CL"):
                return case_no
            if token.endswith("Z"):
                moved = datetime.fromisoformat(token) - shift
                return moved.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if token not in ids:
                ids[token] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            return ids[token]

        cloned = _TOKEN.sub(replace, self._text).replace(self._external_id, f"BENCH-PRELOAD-{n:08d}")
        return [Envelope.model_validate_json(line) for line in cloned.split("\n")]


async def case_templates(session: aiohttp.ClientSession, api: Api, case_ids: Sequence[str]) -> list[CaseTemplate]:
    """The timelines of closed cases, as templates for the pre-load."""
    templates: list[CaseTemplate] = []
    for case_id in case_ids:
        answer = await request(session, "GET", f"{api.supervision}/v1/cases/{case_id}/timeline", SUPERVISOR)
        if answer is None or answer.status_code != 200:
            continue
        timeline = answer.json()
        if timeline.get("status") != "closed":
            continue
        envelopes = [
            Envelope.model_validate(
                {
                    "case_id": timeline["case_id"],
                    **{
                        key: entry[key]
                        for key in (
                            "event_id",
                            "type",
                            "schema_version",
                            "occurred_at",
                            "producer",
                            "actor",
                            "correlation_id",
                            "causation_id",
                            "payload",
                        )
                    },
                }
            )
            for entry in timeline["events"]
        ]
        accepted = next((e for e in envelopes if e.type == "case.accepted"), None)
        if accepted is None or envelopes[-1].type != "case.closed":
            continue
        external_id = str(getattr(accepted.payload, "external_id", ""))
        templates.append(CaseTemplate(envelopes, external_id))
    return templates


@dataclass
class PreloadResult:
    cases: int = 0
    events: int = 0
    seconds: float = 0.0
    timeline_ids: list[str] = field(default_factory=list)


async def preload_supervision(
    database_url: str, kafka: KafkaSettings, templates: Sequence[CaseTemplate], events: int, rng: random.Random
) -> PreloadResult:
    """Fill supervision's database with ``events`` events of closed cases through its replay path:
    per batch one unit of work that records the events and projects each case once, deciding nothing."""
    service = service_spec("supervision").service(database_url, kafka)
    database = service.database
    kept: StreamCache[Any] = StreamCache(PRELOAD_BATCH_CASES * 2)
    result = PreloadResult()
    began = shown = time.monotonic()
    try:
        await database.create_schema()
        while result.events < events:
            batch: list[list[Envelope]] = []
            while len(batch) < PRELOAD_BATCH_CASES and result.events < events:
                case = templates[result.cases % len(templates)].clone(result.cases, rng)
                batch.append(case)
                result.cases += 1
                result.events += len(case)
                # A uniform sample of the pre-loaded cases (reservoir): the timelines the queries ask for.
                if len(result.timeline_ids) < TIMELINE_SAMPLE:
                    result.timeline_ids.append(str(case[0].case_id))
                elif (slot := rng.randrange(result.cases)) < TIMELINE_SAMPLE:
                    result.timeline_ids[slot] = str(case[0].case_id)
            incoming = [
                Incoming(kafka.topic_of(event.producer), 0, 0, event, event.model_dump_json())
                for case in batch
                for event in case
                if service.wants(event.type)
            ]
            await service.rebuild(incoming, [], kept)
            if time.monotonic() - shown > 10:
                shown = time.monotonic()
                rate = result.events / (shown - began)
                say(f"pre-load: {result.events:,} of {events:,} events ({rate:,.0f} events/s)")
    finally:
        await database.dispose()
        result.seconds = time.monotonic() - began
    return result


async def vacuum_after_bulk_load(database_url: str) -> None:
    """``VACUUM (ANALYZE)`` the database after the pre-load, as an operator does after a bulk load:
    otherwise autovacuum takes up the pre-loaded rows during the loop, and the loop is charged for it."""
    if is_sqlite(database_url):
        return
    began = time.monotonic()
    async with connected(database_url) as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM (ANALYZE)"))
    say(f"vacuumed supervision's database after the pre-load in {time.monotonic() - began:.0f}s")


async def count_rows(database_url: str, table: str) -> int:
    async with connected(database_url) as connection:
        return int(await connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


# ---------------------------------------------------------------------------------- one run


async def wait_until_idle(monitor: Monitor, timeout: float) -> tuple[bool, float]:
    """Until every service reports no consumer lag and an empty outbox twice in a row (from the
    monitor's samples); whether it settled, and how long it took."""
    began = time.monotonic()
    quiet = 0
    seen = {name: len(samples) for name, samples in monitor.health.items()}
    while time.monotonic() - began < timeout:
        await asyncio.sleep(1.0)
        fresh = {name: samples[seen[name] :] for name, samples in monitor.health.items()}
        if not all(fresh.values()):
            continue
        seen = {name: len(samples) for name, samples in monitor.health.items()}
        latest = [samples[-1] for samples in fresh.values()]
        busy = any(s.consumer_lag is None or s.consumer_lag > 0 or (s.outbox_pending or 0) > 0 for s in latest)
        quiet = 0 if busy else quiet + 1
        if quiet >= 2:
            return True, time.monotonic() - began
    return False, time.monotonic() - began


@dataclass
class Phases:
    t0: float
    monitor: Monitor
    spans: list[dict[str, Any]] = field(default_factory=list)
    #: Each phase's CPU at its start and at its end, unrounded.
    cpu: dict[str, tuple[CpuSnapshot, CpuSnapshot]] = field(default_factory=dict)

    async def run(self, name: str, work: Awaitable[Any]) -> Any:
        start = self.monitor.cpu()
        say(f"{name} ...")
        try:
            return await work
        finally:
            end = self.monitor.cpu()
            self.cpu[name] = (start, end)
            self.spans.append(
                {"name": name, "start": round(start.at, 1), "end": round(end.at, 1), "cpu": cpu_between(start, end)}
            )


def _profile_top(path: Path, out: Path, entries: int = 30) -> dict[str, Any]:
    import pstats

    with open(out, "w") as stream:
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats("tottime").print_stats(entries)
        stats.sort_stats("cumulative").print_stats(entries)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(value[2] for value in table.values())

    def entry(key: tuple[str, int, str], value: tuple[Any, ...]) -> dict[str, Any]:
        file, line, name = key
        where = file.split("/src/", 1)[1] if "/src/caseloop_" in file else Path(file).name
        return {
            "function": f"{where}:{line}({name})",
            "calls": value[1],
            "own_seconds": round(value[2], 3),
            "cumulative_seconds": round(value[3], 3),
        }

    by_own = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:entries]
    # The project's own functions by the time spent in them and below: which work costs what.
    ours = sorted(
        ((key, value) for key, value in table.items() if "/src/caseloop_" in key[0]),
        key=lambda item: item[1][3],
        reverse=True,
    )[:entries]
    return {
        "clock": "wall time of the service's main thread (time waiting for the CPU or the GIL included)",
        "total_seconds": round(total, 2),
        "top_by_own_time": [entry(key, value) for key, value in by_own],
        "caseloop_top_by_cumulative_time": [entry(key, value) for key, value in ours],
        "text": str(out),
    }


async def run_kind(kind: DatabaseKind, options: BenchOptions, out_dir: Path, rng: random.Random) -> dict[str, Any]:
    """One whole run on one kind of database; its section of the report."""
    tag = uuid.uuid4().hex[:8]
    data_dir = out_dir / f"data-{kind.value}"
    urls = database_urls(kind, data_dir, options.postgres_url, tag)
    shadows = {name: sibling_url(url, "shadow") for name, url in urls.items()}
    profile_path = (
        out_dir / f"profile-{kind.value}-{options.profile_service}.pstats" if options.profile_service else None
    )
    stack = BenchStack(
        data_dir,
        ports={name: free_port() for name in SERVICE_NAMES},
        database_urls=urls,
        extra_env={"CASELOOP_PROFILE": "development", "CASELOOP_RATE_LIMIT_PER_SECOND": "0"},
        profiled=options.profile_service,
        profile_path=profile_path,
    )
    run: dict[str, Any] = {"database": kind.value}
    began = time.monotonic()
    for url in urls.values():
        await recreate_database(url)
    t0 = time.monotonic()
    tail: LogTail | None = None
    monitor = Monitor(stack, t0)
    counters = Counters()
    failed = False
    try:
        await asyncio.to_thread(stack.start)
        assert stack.broker is not None
        kafka = KafkaSettings(kafka_bootstrap_servers=stack.broker.bootstrap_servers, kafka_idempotent_producer=True)
        api = Api.of(stack)
        tail = LogTail(stack.broker.bootstrap_servers, [kafka.topic_of(p) for p in Producer])
        await tail.start()
        async with new_session(connections=4) as session:
            grids = await all_grids(session, api)
        cases = CaseFactory(grids, SOURCE_SYSTEMS[: max(options.source_systems, 1)], tag)

        # warm-up, templates
        say(f"{kind}: warm-up, {options.warmup_cases} cases round the loop")
        warm = LoopDriver(api, tail, cases, counters, t0, concurrency=options.warmup_cases)
        try:
            await warm.run_count(options.warmup_cases, concurrency=options.warmup_cases)
        finally:
            await warm.close()
        if not warm.results.closed_ids:
            raise RuntimeError(f"no warm-up case closed: {warm.results.failures}; see {data_dir / 'logs'}")
        monitor.start()
        await wait_until_idle(monitor, options.settle_timeout)
        async with new_session(connections=4) as session:
            templates = await case_templates(session, api, warm.results.closed_ids)
        await monitor.stop()

        # pre-load supervision's case log
        preload = PreloadResult()
        if options.stored_events > 0 and templates:
            say(f"{kind}: pre-loading {options.stored_events:,} events into supervision's database")
            # The tail would poll the broker all along in this very process: stopped meanwhile, and
            # read again from the start afterwards.
            await tail.stop()
            await asyncio.to_thread(stack.stop_service, "supervision")
            preload = await preload_supervision(urls["supervision"], kafka, templates, options.stored_events, rng)
            say(f"{kind}: pre-loaded {preload.events:,} events in {preload.seconds:.0f}s")
            await vacuum_after_bulk_load(urls["supervision"])
            stack.start_service("supervision")
            await asyncio.to_thread(stack.wait_healthy, 120.0, ("supervision",))
            tail = LogTail(stack.broker.bootstrap_servers, [kafka.topic_of(p) for p in Producer])
            await tail.start()
        run["preload"] = {
            "cases": preload.cases,
            "events": preload.events,
            "seconds": round(preload.seconds, 1),
            "events_per_second": round(preload.events / preload.seconds) if preload.seconds else 0,
            "templates": len(templates),
        }

        # the measured phases
        monitor.start()
        phases = Phases(t0, monitor)
        window_start = monitor.cpu()
        driver = LoopDriver(api, tail, cases, counters, t0, concurrency=options.loop_concurrency)
        # The services' counters read right at the loop's edges (a periodic answer may be a second off).
        await monitor.sample_health()
        log_reader_requests = BrokerRequests.sent
        loop_began = time.monotonic()
        try:
            await phases.run("loop", driver.run_for(options.loop_seconds, options.loop_concurrency))
        finally:
            await driver.close()
        log_reader_requests = BrokerRequests.sent - log_reader_requests
        await monitor.sample_health()
        loop = driver.results
        loop_cpu = phases.cpu["loop"]
        loop_window = (loop_began - t0, loop_began - t0 + options.loop_seconds)
        steady_from = loop_window[0] + options.loop_seconds * 0.2
        in_window = [c for c in loop.closures if c.at < loop_window[1]]
        steady = [c for c in in_window if c.at >= steady_from]
        run["loop"] = {
            "seconds": options.loop_seconds,
            "concurrency": options.loop_concurrency,
            "source_systems": list(SOURCE_SYSTEMS[: max(options.source_systems, 1)]),
            "started": loop.started,
            "closed": loop.closed,
            "closed_in_window": len(in_window),
            "failed": loop.failed,
            "not_accepted": loop.not_accepted,
            "failures": loop.failures,
            "closed_per_second": round(len(in_window) / options.loop_seconds, 2),
            "closed_per_second_steady": round(len(steady) / (loop_window[1] - steady_from), 2),
            "latency_ms": {
                "post": latency_summary([t.seconds for t in loop.posts]),
                "post_to_assignment": latency_summary([t.seconds for t in loop.assignments]),
                "post_to_closure": latency_summary([t.seconds for t in loop.closures]),
            },
            "per_closed_case": per_closed_case(
                loop.closed,
                loop_cpu,
                monitor.health_nearest(loop_cpu[0].at),
                monitor.health_nearest(loop_cpu[1].at),
                log_reader_requests,
            ),
        }

        settled, waited = await phases.run("settle", wait_until_idle(monitor, options.settle_timeout))
        run["settle"] = {"settled": settled, "seconds": round(waited, 1)}

        stored = await count_rows(urls["supervision"], "case_events")
        supervision_cases = await count_rows(urls["supervision"], "cases")
        timeline_ids = preload.timeline_ids + loop.closed_ids or warm.results.closed_ids
        towns = sorted({grid[:9] for grid in grids})
        filters: list[dict[str, Any]] = [
            {"limit": 50},
            {"status": "closed", "limit": 50},
            {"town_code": rng.choice(towns), "limit": 50},
            {"status": "closed", "town_code": rng.choice(towns), "limit": 50, "offset": 500},
            {"returned_more_than_once": "true", "limit": 50},
            {"overdue": "true", "limit": 50},
        ]
        run["queries"] = await phases.run(
            "queries", measure_queries(api, timeline_ids, filters, options.query_requests, rng)
        )
        run["queries"]["stored_events"] = stored

        fixed = await phases.run(
            "intake_fixed_rate",
            intake_fixed_rate(api, cases, options.intake_rate, options.intake_seconds, counters, t0),
        )
        saturated = await phases.run(
            "intake_saturation",
            intake_saturation(api, cases, options.saturation_seconds, options.saturation_concurrency, counters, t0),
        )
        run["intake"] = {
            "fixed_rate": intake_report(fixed, options.intake_rate, None),
            "saturation": intake_report(saturated, None, options.saturation_concurrency),
        }
        window_end = monitor.cpu()
        await monitor.stop()
        records = await tail.records_on_topics()
        run["stored_events"] = {
            "requested": options.stored_events,
            "preloaded_into_supervision": preload.events,
            "supervision_case_log": stored,
            "supervision_cases": supervision_cases,
            "log_records": records,
            "note": "pre-loaded events are in supervision's case log and case list (what the queries read), "
            "not on the topics; log_records counts the four service topics",
        }

        # resources over the measured phases
        used = cpu_between(window_start, window_end)
        peaks = monitor.peak_rss_mb()
        resources: dict[str, Any] = {
            name: {
                "cpu_seconds": used["processes"].get(name),
                "cpu_percent_of_one_core": round(100 * used["processes"].get(name, 0.0) / used["seconds"], 1),
                "peak_rss_mb": peaks.get(name),
            }
            for name in (*SERVICE_NAMES, "broker", "bench")
        }
        resources["postgresql"] = {
            "cpu_seconds": used["postgresql"],
            "cpu_percent_of_one_core": round(100 * used["postgresql"] / used["seconds"], 1),
            "peak_rss_mb": peaks.get("postgresql"),
            "note": "every process of the PostgreSQL server (all databases), largest single RSS",
        }
        resources["machine"] = {
            "seconds": used["seconds"],
            "cores": psutil.cpu_count(),
            "busy_percent": used["machine_busy_percent"],
            "other_processes_cpu_seconds": used["other_processes_cpu_seconds"],
        }
        run["resources"] = resources
        run["phases"] = phases.spans
        run["consumer_lag"] = {
            name: {
                "max": max((s.consumer_lag for s in samples if s.consumer_lag is not None), default=None),
                "mean": round(
                    sum(s.consumer_lag for s in samples if s.consumer_lag is not None) / max(len(samples), 1), 1
                ),
                "samples": [[s.at, s.consumer_lag, s.outbox_pending] for s in samples],
            }
            for name, samples in monitor.health.items()
        }
        end = monitor.cpu().at
        run["series"] = {
            "closure": per_second(loop.closures, 0.0, end),
            "assignment": per_second(loop.assignments, 0.0, end),
            "intake": per_second([*loop.posts, *fixed.latencies, *saturated.latencies], 0.0, end),
        }
        run["http_statuses"] = dict(sorted(counters.statuses.items()))
    except BaseException:
        failed = True
        raise
    finally:
        if tail is not None:
            await tail.stop()
        await monitor.stop()
        await asyncio.to_thread(_stop_services, stack)
        # A run that failed midway never reaches the rebuild's clean-up below: its broker would
        # be left running and its databases on the server.
        if failed:
            await _discard_run(stack, urls, shadows, data_dir, options.keep_data)

    try:
        if profile_path is not None and profile_path.exists():
            run["profile"] = {
                "service": options.profile_service,
                **_profile_top(profile_path, profile_path.with_suffix(".txt")),
            }
        run["rebuild"] = await rebuild_all(stack, urls, shadows)
    finally:
        await _discard_run(stack, urls, shadows, data_dir, options.keep_data)
    run["wall_seconds"] = round(time.monotonic() - began, 1)
    return run


async def _discard_run(
    stack: LocalStack, urls: Mapping[str, str], shadows: Mapping[str, str], data_dir: Path, keep_data: bool
) -> None:
    """Stop the broker and, unless asked to keep them, drop the run's databases and remove its files."""
    stack.stop()
    if keep_data:
        return
    for url in (*urls.values(), *shadows.values()):
        try:
            await drop_database(url)
        except Exception as error:  # one left behind must not hide why the run ended
            say(f"could not drop {url}: {error}")
    shutil.rmtree(data_dir, ignore_errors=True)


def _stop_services(stack: LocalStack) -> None:
    for name in reversed(SERVICE_NAMES):
        stack.stop_service(name, timeout=60.0)


async def rebuild_all(stack: LocalStack, urls: Mapping[str, str], shadows: Mapping[str, str]) -> dict[str, Any]:
    """A full replay of each service from the topics into a fresh shadow database (the services are
    stopped: nothing else runs), as ``caseloop replay --service NAME`` does."""
    assert stack.broker is not None
    kafka = KafkaSettings(kafka_bootstrap_servers=stack.broker.bootstrap_servers, kafka_idempotent_producer=True)
    results: dict[str, Any] = {}
    for name in SERVICE_NAMES:
        say(f"rebuild {name} ...")
        await recreate_database(shadows[name])
        report = await replay_service(service_spec(name), kafka, shadows[name])
        results[name] = {
            "records": report.records,
            "handled": report.handled,
            "skipped": len(report.skipped),
            "seconds": round(report.seconds, 2),
            "events_per_second": round(report.events_per_second),
            "workers": report.workers,
        }
        await drop_database(shadows[name])
    return results


# ------------------------------------------------------------------------------------- the bench


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "cpu": model,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


async def run_bench(options: BenchOptions) -> tuple[dict[str, Any], Path]:
    """Every run of ``options``; the report, also written with its plot under the output folder."""
    # The replay and the pre-load build each service's app in this process: the development profile.
    os.environ.setdefault("CASELOOP_PROFILE", "development")
    # The bench's own requests to the broker (its log reader), reported apart from the services'.
    BrokerRequests.count()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = (options.output_dir / stamp).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(options.seed)
    began = time.monotonic()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": {
            key: (
                str(value)
                if isinstance(value, Path)
                else [str(v) for v in value]
                if isinstance(value, tuple)
                else value
            )
            for key, value in vars(options).items()
        },
        "runs": {},
    }
    for kind in options.databases:
        say(f"--- {kind.value} ---")
        report["runs"][kind.value] = await run_kind(kind, options, out_dir, rng)
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["wall_seconds"] = round(time.monotonic() - began, 1)
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report["targets"] = evaluate_targets(report["runs"])
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    draw_plot(report, out_dir / "bench.png")
    return report, out_dir


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command()
def main(
    databases: Annotated[
        list[DatabaseKind] | None, typer.Option("--database", "-d", help="database kind to run on; repeat for both")
    ] = None,
    output_dir: Annotated[Path, typer.Option(help="where bench-results/<timestamp>/ goes")] = Path("bench-results"),
    warmup_cases: Annotated[int, typer.Option(help="cases round the loop before measuring")] = 6,
    stored_events: Annotated[
        int, typer.Option(help="events pre-loaded into supervision's case log before the queries")
    ] = 20_000,
    loop_seconds: Annotated[float, typer.Option(help="how long the whole loop is driven")] = 60.0,
    loop_concurrency: Annotated[int, typer.Option(help="cases in flight in the loop")] = 160,
    intake_rate: Annotated[float, typer.Option(help="offered cases/s of the fixed-rate intake phase")] = 50.0,
    intake_seconds: Annotated[float, typer.Option(help="length of the fixed-rate intake phase")] = 15.0,
    saturation_seconds: Annotated[float, typer.Option(help="length of the intake saturation phase")] = 10.0,
    saturation_concurrency: Annotated[int, typer.Option(help="clients posting back to back at saturation")] = 16,
    query_requests: Annotated[int, typer.Option(help="timeline requests, and as many case-list requests")] = 200,
    settle_timeout: Annotated[float, typer.Option(help="longest wait for the consumers to catch up")] = 30.0,
    source_systems: Annotated[int, typer.Option(help="simulated source systems reporting cases")] = 4,
    postgres_url: Annotated[str, typer.Option(help="a PostgreSQL server to create the run's databases on")] = (
        DEFAULT_POSTGRES_URL
    ),
    profile: Annotated[
        str | None, typer.Option(help="run this service under cProfile (slows it) and report its top functions")
    ] = None,
    keep_data: Annotated[bool, typer.Option(help="keep the databases and broker data after the run")] = False,
    seed: Annotated[int, typer.Option(help="random seed (which cases are queried, pre-load times)")] = 7,
) -> None:
    """Start the broker and the four services, drive cases through the HTTP APIs, and write
    bench-results/<timestamp>/report.json, bench.png and a short table."""
    if profile is not None and profile not in SERVICE_NAMES:
        raise typer.BadParameter(f"--profile takes one of {', '.join(SERVICE_NAMES)}")
    options = BenchOptions(
        databases=tuple(dict.fromkeys(databases)) if databases else BenchOptions.databases,
        output_dir=output_dir,
        warmup_cases=warmup_cases,
        stored_events=stored_events,
        loop_seconds=loop_seconds,
        loop_concurrency=loop_concurrency,
        intake_rate=intake_rate,
        intake_seconds=intake_seconds,
        saturation_seconds=saturation_seconds,
        saturation_concurrency=saturation_concurrency,
        query_requests=query_requests,
        settle_timeout=settle_timeout,
        source_systems=source_systems,
        postgres_url=postgres_url,
        profile_service=profile,
        keep_data=keep_data,
        seed=seed,
    )
    # Ctrl-C or SIGTERM: the finally blocks stop the processes and drop the databases.
    signal.signal(signal.SIGTERM, _interrupt)
    report, out_dir = asyncio.run(run_bench(options))
    print(render_table(report))
    print(
        f"\nwall time {report['wall_seconds']:.0f}s; report: {out_dir / 'report.json'}; plot: {out_dir / 'bench.png'}"
    )


if __name__ == "__main__":
    app()
