"""Crash safety: while hundreds of cases go round the whole loop, each of the four services and the
broker is killed with SIGKILL at random moments and started again. Afterwards every case is closed
exactly once, no projection holds a row twice, every timeline is the closed loop and `caseloop
verify` finds every projection to be what the log says.

Every service keeps its own PostgreSQL database (fresh for the run, dropped afterwards); the
broker is noida-db. The moments, the victims and the downtimes come from a seeded random
generator: ``CASELOOP_CRASH_SEED`` repeats a run's schedule (the seed is printed), and
``CASELOOP_CRASH_CASES`` (default 500) drives more cases for a longer run. The client is an
honest one: it waits out refused connections, 5xx and 429 and sends the same request again —
``POST /v1/cases`` under the same ``Idempotency-Key`` and ``external_id`` — and when a command it
sent again answers 409, it reads the case to see that the first one went through.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from caseloop_deploy.logread import log_reader, partitions_of, read_all
from caseloop_deploy.services import service_spec
from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.contracts.envelope import Producer
from caseloop_events.runtime.topics import topic_of
from caseloop_events.testing.broker import BrokerKind, free_port
from caseloop_events.testing.fixtures import create_postgres_database, drop_postgres_database
from tests.e2e.loop_driver import (
    HAPPY_PATH,
    HAPPY_PATH_CLOCKS,
    Endpoints,
    assert_timeline_is_the_closed_loop,
    grid_codes,
    new_client,
    poll,
    report_body,
    send_through_outages,
    settled_timeline,
    wait_until_idle,
)

CASES = int(os.environ.get("CASELOOP_CRASH_CASES", "500"))

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(max(900, 2 * CASES))]

SEED = int(os.environ.get("CASELOOP_CRASH_SEED") or random.SystemRandom().randrange(1_000_000))
#: Cases on their way round the loop at once, and how often each asks whether its next step is ready:
#: hundreds of polls a second would take the two cores from the services.
CONCURRENCY = int(os.environ.get("CASELOOP_CRASH_CONCURRENCY", "32"))
POLL_INTERVAL = 0.3
BROKER = "broker"
VICTIMS = (*SERVICES, BROKER)
CASELOOP = str(Path(sys.executable).parent / "caseloop")
#: How long a case may take to reach its next step while processes die around it.
STEP_TIMEOUT = 240.0

#: Where a case may stand once its unit reported the result.
AFTER_THE_RESULT = ("result_reported", "verified", "closed")

#: Which service emits each event of the closed loop, and how often per case.
EMITTED_BY: dict[str, dict[str, int]] = {
    "intake": {"case.accepted": 1},
    "triage": {"case.judged": 1},
    "dispatch": {"case.assigned": 1, "case.acknowledged": 1, "case.result_reported": 1},
    "supervision": {"case.verified": 1, "case.evaluated": 1, "case.closed": 1, **HAPPY_PATH_CLOCKS},
}


@dataclass
class Chaos:
    """Kills one process at a time at seeded random moments, keeps it down a while, starts it again."""

    stack: LocalStack
    rng: random.Random
    kills: list[tuple[float, str, float]] = field(default_factory=list)
    #: Set once each victim has been killed and started again; the cases keep coming until then.
    every_victim_killed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event, began: float) -> None:
        # Every victim once first, in a random order, so that each is killed while cases flow.
        first = list(VICTIMS)
        self.rng.shuffle(first)
        while True:
            pause, downtime = self.rng.uniform(2.0, 8.0), self.rng.uniform(0.2, 3.0)
            victim = first.pop() if first else self.rng.choice(VICTIMS)
            try:
                await asyncio.wait_for(stop.wait(), pause)
                return
            except TimeoutError:
                pass
            self.kills.append((round(time.monotonic() - began, 1), victim, round(downtime, 1)))
            if victim == BROKER:
                self.stack.stop_broker(kill=True)
                await asyncio.sleep(downtime)
                await asyncio.to_thread(self.stack.start_broker)
            else:
                self.stack.stop_service(victim, kill=True)
                await asyncio.sleep(downtime)
                self.stack.start_service(victim)
                await asyncio.to_thread(self.stack.wait_healthy, 120.0, (victim,))
            if not first:
                self.every_victim_killed.set()


@dataclass
class Client:
    """The cases' side of the loop: HTTP through every outage, each step checked."""

    http: httpx.AsyncClient
    api: Endpoints

    async def send(self, method: str, url: str, **request: Any) -> httpx.Response:
        return await send_through_outages(self.http, method, url, timeout=STEP_TIMEOUT, **request)

    async def until(self, url: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        response = await poll(
            lambda: self.send("GET", url),
            lambda r: r.status_code == 200 and ready(r.json()),
            timeout=STEP_TIMEOUT,
            interval=POLL_INTERVAL,
        )
        found: dict[str, Any] = response.json()
        return found

    async def command(self, url: str, body: dict[str, Any], done: Callable[[], Awaitable[bool]]) -> httpx.Response:
        """A command that may have gone through before its answer was lost: a 409 to it is only
        right when ``done`` says the case is where the command took it."""
        response = await self.send("POST", url, json=body)
        if response.status_code == 409:
            assert await done(), f"POST {url}: {response.text}"
        else:
            assert response.status_code == 200, f"POST {url}: {response.status_code} {response.text}"
        return response

    async def report(self, body: dict[str, Any], key: str) -> str:
        """POST /v1/cases under an Idempotency-Key: the same answer however often it is sent."""
        url = f"{self.api.intake}/v1/cases"
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            response = await self.send("POST", url, json=body, headers={"Idempotency-Key": key})
            if response.status_code in (200, 201):
                assert response.json()["status"] == "accepted", response.text
                return str(response.json()["case_id"])
            # The first request under the key died with intake: the key is free again after a while.
            assert response.status_code == 409, f"POST {url}: {response.status_code} {response.text}"
            assert response.json()["rule"] == "IdempotencyKeyInFlight", response.text
            assert time.monotonic() < deadline, f"POST {url}: key {key} still in flight"
            await asyncio.sleep(1.0)

    async def supervision_status(self, case_id: str) -> str:
        status: str = (await self.until(f"{self.api.supervision}/v1/cases/{case_id}", lambda _: True))["status"]
        return status

    async def round_the_loop(self, body: dict[str, Any], key: str) -> str:
        api = self.api
        case_id = await self.report(body, key)
        assignment_url = f"{api.dispatch}/v1/cases/{case_id}/assignment"
        unit = (await self.until(assignment_url, lambda _: True))["unit_id"]

        async def dispatch_status_is(*statuses: str) -> bool:
            return (await self.until(assignment_url, lambda _: True))["status"] in statuses

        async def supervision_status_is(*statuses: str) -> bool:
            return await self.supervision_status(case_id) in statuses

        await self.command(
            f"{api.dispatch}/v1/cases/{case_id}/acknowledge",
            {"unit_id": unit, "by": "handler-1"},
            lambda: dispatch_status_is("acknowledged", *AFTER_THE_RESULT),
        )
        await self.command(
            f"{api.dispatch}/v1/cases/{case_id}/result",
            {"unit_id": unit, "by": "handler-1", "summary": "已到现场处理完毕"},
            lambda: dispatch_status_is(*AFTER_THE_RESULT),
        )
        await self.until(f"{api.supervision}/v1/cases/{case_id}", lambda c: c["status"] in AFTER_THE_RESULT)
        await self.command(
            f"{api.supervision}/v1/cases/{case_id}/verification",
            {"passed": True, "by": "supervisor-1", "note": "现场核查属实"},
            lambda: supervision_status_is("verified", "closed"),
        )
        evaluated = await self.command(
            f"{api.supervision}/v1/cases/{case_id}/evaluation",
            {"rating": "satisfied"},
            lambda: supervision_status_is("closed"),
        )
        if evaluated.status_code == 200:
            assert evaluated.json()["status"] == "closed", evaluated.text
        return case_id


@pytest.fixture
async def stack_on_postgresql(tmp_path: Path, postgres_admin_url: str) -> AsyncIterator[LocalStack]:
    """The broker and the four services, each on a fresh PostgreSQL database dropped afterwards."""
    urls = {name: await create_postgres_database(postgres_admin_url, f"caseloop_crash_{name}") for name in SERVICES}
    stack = LocalStack(
        tmp_path,
        broker_kind=BrokerKind.NOIDA,
        ports={name: free_port() for name in SERVICES},
        database_urls=urls,
        # The client here is one caller sending hundreds of requests a second: no per-client limit.
        extra_env={"CASELOOP_RATE_LIMIT_PER_SECOND": "0"},
    )
    try:
        await asyncio.to_thread(stack.start)
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)
        for url in urls.values():
            await drop_postgres_database(postgres_admin_url, url)


async def test_killing_every_service_and_the_broker_at_random_loses_and_doubles_no_case(
    stack_on_postgresql: LocalStack,
) -> None:
    stack = stack_on_postgresql
    print(f"crash test: {CASES} cases, seed {SEED} (CASELOOP_CRASH_SEED={SEED} repeats the schedule)")
    rng = random.Random(SEED)
    api = Endpoints.of(stack)
    chaos = Chaos(stack, random.Random(rng.random()))
    began = time.monotonic()
    async with new_client() as http:
        client = Client(http, api)
        grids = await grid_codes(http, api, CASES)
        limit = asyncio.Semaphore(CONCURRENCY)
        run = f"CRASH-{SEED}"

        async def one(n: int) -> str:
            # A grid's second case gets another text, or screening would link it to the first.
            grid, text_no = grids[n % len(grids)], n + n // len(grids)
            async with limit:
                return await client.round_the_loop(report_body(f"{run}-{n:05d}", grid, text_no), f"{run}-{n}")

        stop = asyncio.Event()

        async def drive() -> list[str]:
            # A loop faster than the chaos schedule would finish before the last victim died: more
            # cases follow, a batch at a time, until every process has been killed while cases flow.
            try:
                case_ids = list(await asyncio.gather(*(one(n) for n in range(CASES))))
                while not chaos.every_victim_killed.is_set():
                    more = range(len(case_ids), len(case_ids) + CONCURRENCY)
                    case_ids += await asyncio.gather(*(one(n) for n in more))
                return case_ids
            finally:
                stop.set()

        try:
            # A process that does not come back fails the test at once, not after every case timed out.
            async with asyncio.TaskGroup() as group:
                group.create_task(chaos.run(stop, began))
                driving = group.create_task(drive())
        finally:
            print(f"kills (seconds in, victim, seconds down): {chaos.kills}")
        case_ids = driving.result()
        driven = time.monotonic() - began
        assert {victim for _, victim, _ in chaos.kills} == set(VICTIMS), "not every process was killed"
        assert len(set(case_ids)) == len(case_ids) >= CASES

        await asyncio.to_thread(stack.wait_healthy, 120.0)
        await wait_until_idle(http, api, timeout=300.0)
        for case_id in case_ids:
            assert_timeline_is_the_closed_loop(await settled_timeline(http, api, case_id))

    assert stack.broker is not None
    await assert_each_event_of_the_loop_once_per_case(stack.broker.bootstrap_servers, set(case_ids))
    await assert_no_projection_holds_a_case_twice(stack, set(case_ids))
    verified = caseloop(stack, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    checked = time.monotonic() - began - driven
    print(f"crash test: {len(case_ids)} cases driven in {driven:.0f}s, checked in {checked:.0f}s")


async def assert_each_event_of_the_loop_once_per_case(bootstrap_servers: str, case_ids: set[str]) -> None:
    """On every topic, each case has each event of the loop under one event id: none lost, none
    decided twice. (A record sent again after a crash carries the same event id: that is the outbox
    relay's at-least-once, which every consumer absorbs.)"""
    for name, expected in EMITTED_BY.items():
        topic = topic_of(Producer(name))
        ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        async with log_reader(bootstrap_servers) as consumer:
            async for batch in read_all(consumer, await partitions_of(consumer, [topic])):
                for _tp, record in batch:
                    event = httpx.Response(200, content=record.value).json()
                    ids[(event["case_id"], event["type"])].add(event["event_id"])
        for case_id in case_ids:
            found = {event_type: len(ids.get((case_id, event_type), ())) for event_type in expected}
            assert found == expected, f"{topic}: case {case_id} has {found}"
        assert {case_id for case_id, _ in ids} == case_ids, f"{topic} holds events of cases nobody reported"


async def assert_no_projection_holds_a_case_twice(stack: LocalStack, case_ids: set[str]) -> None:
    """Each service's database: one row per case where there is one per case, every case closed, each
    of its own events once in its outbox and each event of the loop once in its case log."""
    one_row_per_case = {
        "intake": ("cases", "closed_at IS NOT NULL"),
        "triage": ("judgments", "TRUE"),
        "dispatch": ("assignments", "status = 'closed'"),
        "supervision": ("cases", "status = 'closed'"),
    }
    loop_types = set(HAPPY_PATH)
    for name in SERVICES:
        engine = create_async_engine(stack.database_urls[name])
        try:
            async with engine.connect() as db:
                table, done = one_row_per_case[name]
                rows = (await db.execute(text(f"SELECT case_id, {done} FROM {table}"))).all()
                assert Counter(case_id for case_id, _ in rows) == Counter(case_ids), f"{name}.{table}"
                assert all(is_done for _, is_done in rows), f"{name}.{table}: a case not where the loop ends"

                outbox = Counter((c, t) for c, t in (await db.execute(text("SELECT case_id, type FROM outbox"))).all())
                expected = Counter({(c, t): k for c in case_ids for t, k in EMITTED_BY[name].items()})
                assert outbox == expected, f"{name}.outbox: {outbox - expected} too many, {expected - outbox} missing"

                logged = (await db.execute(text("SELECT case_id, type, event_id FROM case_events"))).all()
                twice = Counter((c, t) for c, t, _ in logged if t in loop_types)
                assert all(k == 1 for k in twice.values()), (
                    f"{name}.case_events: {[k for k, v in twice.items() if v > 1]}"
                )
                # The case log is also the record of what was handled: each event of the loop the service
                # reads (or wrote) is in it, once, for every case.
                kept = loop_types & service_spec(name).definition.event_types
                assert set(twice) == {(c, t) for c in case_ids for t in kept}, f"{name}.case_events: an event missing"
        finally:
            await engine.dispose()


def caseloop(stack: LocalStack, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The operator's command line with the environment of the stack's services (their databases too)."""
    env = {**os.environ, **stack.broker_environment(), "CASELOOP_DATA_DIR": str(stack.data_dir)}
    for name, service in stack.services.items():
        env[f"{name.upper()}_PORT"] = str(service.port)
    for name, url in stack.database_urls.items():
        env[f"{name.upper()}_DATABASE_URL"] = url
    return subprocess.run([CASELOOP, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
