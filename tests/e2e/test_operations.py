"""The log is the truth: an operator's verbs on a system that has lived.

A module stack (noida-db, the four services on SQLite) takes a couple of hundred cases down every
path the project has; then the `caseloop` command line — run as an operator runs it, as a process
— verifies, replays, diffs, promotes, prints timelines from the topics, and restores every topic
after the broker lost its data.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from caseloop_deploy.services import service_spec
from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.testing.broker import BrokerKind, free_port
from caseloop_events.testing.fixtures import DevelopmentCaller
from tests.e2e.loop_driver import Endpoints, grid_codes, new_client, poll

pytestmark = pytest.mark.e2e

CASES = 200
CASELOOP = str(Path(sys.executable).parent / "caseloop")
TOWN = "330110001"


@dataclass
class Lived:
    """What the module's system went through, for the tests to check against."""

    stack: LocalStack
    case_ids: list[str] = field(default_factory=list)
    #: (case id, the moment, the case view then, the timeline then): what the API said during the run.
    snapshots: list[tuple[str, datetime, dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def caseloop(stack: LocalStack, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The operator's command line, with what stands in for `make run`'s defaults (this stack's broker,
    data folder and ports) and nothing more: no CASELOOP_PROFILE, which the test fixtures export for
    the services, since next to `make run` the verbs must need no exported setting."""
    inherited = {name: value for name, value in os.environ.items() if name != "CASELOOP_PROFILE"}
    env = {**inherited, **stack.broker_environment(), "CASELOOP_DATA_DIR": str(stack.data_dir)}
    for name, service in stack.services.items():
        env[f"{name.upper()}_PORT"] = str(service.port)
    return subprocess.run([CASELOOP, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


class Driver:
    def __init__(self, client: httpx.AsyncClient, api: Endpoints) -> None:
        self.client, self.api = client, api

    async def json(self, method: str, url: str, body: dict[str, Any] | None = None, expect: int = 200) -> Any:
        response = await self.client.request(method, url, json=body)
        assert response.status_code == expect, f"{method} {url}: {response.status_code} {response.text}"
        return response.json()

    async def case(self, case_id: str, ready: Any) -> dict[str, Any]:
        response = await poll(
            lambda: self.client.get(f"{self.api.supervision}/v1/cases/{case_id}"),
            lambda r: r.status_code == 200 and ready(r.json()),
        )
        view: dict[str, Any] = response.json()
        return view

    async def unit(self, case_id: str, not_this: str | None = None) -> str:
        response = await poll(
            lambda: self.client.get(f"{self.api.dispatch}/v1/cases/{case_id}/assignment"),
            lambda r: r.status_code == 200 and r.json()["unit_id"] != not_this and r.json()["status"] == "assigned",
        )
        unit: str = response.json()["unit_id"]
        return unit

    async def acknowledge(self, case_id: str, unit: str) -> None:
        await self.json("POST", f"{self.api.dispatch}/v1/cases/{case_id}/acknowledge", {"unit_id": unit, "by": "h"})

    async def result(self, case_id: str, unit: str) -> None:
        body = {"unit_id": unit, "by": "h", "summary": "已处理"}
        await self.json("POST", f"{self.api.dispatch}/v1/cases/{case_id}/result", body)
        await self.case(case_id, lambda c: c["status"] == "result_reported")

    async def verify(self, case_id: str, passed: bool = True) -> None:
        body = {"passed": passed, "by": "supervisor-1"}
        await self.json("POST", f"{self.api.supervision}/v1/cases/{case_id}/verification", body)

    async def evaluate(self, case_id: str, rating: str) -> dict[str, Any]:
        url = f"{self.api.supervision}/v1/cases/{case_id}/evaluation"
        answer: dict[str, Any] = await self.json("POST", url, {"rating": rating})
        return answer

    async def settled_view(self, case_id: str) -> tuple[datetime, dict[str, Any], dict[str, Any]]:
        """The case view and timeline once nothing changes any more, and a moment after both."""
        previous = None
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            view = (await self.client.get(f"{self.api.supervision}/v1/cases/{case_id}")).json()
            if previous is not None and without_time_left(view) == without_time_left(previous):
                timeline = (await self.client.get(f"{self.api.supervision}/v1/cases/{case_id}/timeline")).json()
                await asyncio.sleep(0.05)
                return datetime.now(UTC), view, timeline
            assert asyncio.get_running_loop().time() < deadline, f"case {case_id} keeps changing"
            previous = view
            await asyncio.sleep(0.4)


async def one_case(driver: Driver, lived: Lived, n: int, grid: str) -> None:
    """Case ``n`` down path ``n % 8``."""
    api = driver.api
    body = {
        "source_system": "hotline-12345",
        "external_id": f"OPS-{n:05d}",
        "title": "路灯不亮",
        "description": f"柳岸路第{n}号路灯晚上不亮",
        "category": "streetlight",
        "location": {"grid_code": grid},
    }
    path = n % 8
    if path == 7:
        body |= {"title": "测试", "description": "测试测试 test"}
    created = await driver.json("POST", f"{api.intake}/v1/cases", body, expect=201)
    case_id = created["case_id"]
    lived.case_ids.append(case_id)
    if path == 7:
        return  # rejected at screening
    unit = await driver.unit(case_id)
    if path == 1:  # returned once, handled by the next unit
        returned = {"unit_id": unit, "by": "h", "reason": "非本单位"}
        await driver.json("POST", f"{api.dispatch}/v1/cases/{case_id}/return", returned)
        unit = await driver.unit(case_id, not_this=unit)
    await driver.acknowledge(case_id, unit)
    if path == 0 and n % 40 == 0:
        await driver.case(case_id, lambda c: c["deadline"] is not None and c["deadline"]["clock"] == "handling")
        lived.snapshots.append((case_id, *await driver.settled_view(case_id)))
    if path == 5:  # left open: urged, and given more time
        due = (datetime.now(UTC) + timedelta(days=20)).isoformat()
        await driver.case(case_id, lambda c: c["status"] == "acknowledged")
        await driver.json("POST", f"{api.supervision}/v1/cases/{case_id}/urge", {"by": "s", "note": "加快"})
        asked = {"unit_id": unit, "by": "h", "reason": "缺件", "due_at": due}
        await driver.json("POST", f"{api.dispatch}/v1/cases/{case_id}/extension", asked)
        await driver.case(case_id, lambda c: bool(c["extensions"]))
        decision = {"approved": True, "by": "s"}
        await driver.json("POST", f"{api.supervision}/v1/cases/{case_id}/extension/decision", decision)
        return
    if path == 6:  # a second report of the same thing: linked as a duplicate, closes with this one
        again = {**body, "external_id": f"OPS-{n:05d}-DUP", "source_system": "grid-app"}
        duplicate = await driver.json("POST", f"{api.intake}/v1/cases", again, expect=201)
        assert duplicate["status"] == "duplicate"
        lived.case_ids.append(duplicate["case_id"])
    await driver.result(case_id, unit)
    if path == 3:  # rework
        await driver.verify(case_id, passed=False)
        await poll(  # dispatch must have read the failed verification before the unit reports again
            lambda: driver.client.get(f"{api.dispatch}/v1/cases/{case_id}/assignment"),
            lambda r: r.json()["status"] == "acknowledged",
        )
        await driver.result(case_id, unit)
    await driver.verify(case_id)
    if path == 4:  # the citizen is not satisfied: reopened, handled again
        await driver.case(case_id, lambda c: c["status"] == "verified")
        await driver.evaluate(case_id, "unsatisfied")
        unit = await driver.unit(case_id)
        await driver.acknowledge(case_id, unit)
        await driver.result(case_id, unit)
        await driver.verify(case_id)
    await driver.evaluate(case_id, "satisfied")


@pytest.fixture(scope="module")
def lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lived]:
    ports = {name: free_port() for name in SERVICES}
    with LocalStack(tmp_path_factory.mktemp("operations"), broker_kind=BrokerKind.NOIDA, ports=ports) as stack:
        lived = Lived(stack)
        asyncio.run(_live(lived))
        yield lived


async def _live(lived: Lived) -> None:
    api = Endpoints.of(lived.stack)
    # Idle connections dropped before uvicorn's 5 s keep-alive ends them: otherwise a request can
    # meet a connection the server is closing ("Server disconnected without sending a response").
    async with new_client() as client:
        driver = Driver(client, api)
        grids = await grid_codes(client, api, CASES)
        limit = asyncio.Semaphore(10)

        async def limited(n: int) -> None:
            async with limit:
                await one_case(driver, lived, n, grids[n])

        await asyncio.gather(*(limited(n) for n in range(CASES // 2)))
        # Emergency mode for a town and back, half-way: its open cases are re-timed twice.
        for mode in ("emergency", "normal"):
            switch = {"mode": mode, "by": "c", "reason": "演练"}
            await driver.json("POST", f"{api.supervision}/v1/regions/{TOWN}/mode", switch)
        await asyncio.gather(*(limited(n) for n in range(CASES // 2, CASES)))
        await _quiet(client, api)


async def _quiet(client: httpx.AsyncClient, api: Endpoints) -> None:
    """Until every consumer has read everything and every outbox is empty, twice in a row."""
    quiet_rounds = 0
    deadline = asyncio.get_running_loop().time() + 120
    while quiet_rounds < 2:
        assert asyncio.get_running_loop().time() < deadline, "the services do not settle"
        urls = (api.intake, api.triage, api.dispatch, api.supervision)
        healths = [(await client.get(f"{url}/healthz")).json() for url in urls]
        busy = any(h.get("consumer_lag", 0) or h.get("outbox_pending", 0) for h in healths)
        quiet_rounds = 0 if busy else quiet_rounds + 1
        await asyncio.sleep(1.0)


def test_verify_rebuilds_every_projection_from_offset_zero_and_finds_them_identical(lived: Lived) -> None:
    verified = caseloop(lived.stack, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for name in SERVICES:
        assert f"{name}: replayed" in verified.stdout
        assert "projections identical" in verified.stdout
    assert "events/s" in verified.stdout


def test_a_shadow_replay_of_each_service_equals_the_live_projections_and_a_corrupted_row_is_found(
    lived: Lived,
) -> None:
    for name in SERVICES:
        replayed = caseloop(lived.stack, "replay", "--service", name)
        assert replayed.returncode == 0, replayed.stderr
        assert "shadow:" in replayed.stdout
        same = caseloop(lived.stack, "diff", "--service", name)
        assert same.returncode == 0, same.stdout + same.stderr

    victim = lived.case_ids[0]
    with sqlite3.connect(lived.stack.data_dir / "dispatch.db") as db:
        db.execute("UPDATE assignments SET unit_id = 'U-NOBODY' WHERE case_id = ?", (victim,))
    found = caseloop(lived.stack, "diff", "--service", "dispatch")
    assert found.returncode == 1
    assert f"assignments [case_id={victim}]: unit_id: live 'U-NOBODY' / shadow" in found.stdout
    assert "1 difference(s)" in found.stderr

    # The repair: promote the shadow (the service stopped), and the projection is right again.
    refused = caseloop(lived.stack, "promote", "--service", "dispatch", "--yes")
    assert refused.returncode == 2
    assert "stop it before promoting" in refused.stderr
    lived.stack.stop_service("dispatch")
    promoted = caseloop(lived.stack, "promote", "--service", "dispatch", "--yes")
    assert promoted.returncode == 0, promoted.stderr
    assert "carried over outbox" in promoted.stdout
    lived.stack.start_service("dispatch")
    lived.stack.wait_healthy(names=("dispatch",))
    assert caseloop(lived.stack, "verify", "--service", "dispatch").returncode == 0


def test_the_timeline_from_the_topics_is_the_chain_the_supervision_api_shows(lived: Lived) -> None:
    api = Endpoints.of(lived.stack)
    for case_id in lived.case_ids[:: len(lived.case_ids) // 6]:
        printed = caseloop(lived.stack, "timeline", case_id, "--format", "json")
        assert printed.returncode == 0, printed.stderr
        from_topics = httpx.Response(200, content=printed.stdout).json()
        from_api = httpx.get(f"{api.supervision}/v1/cases/{case_id}/timeline", auth=DevelopmentCaller()).json()
        chain = [(e["event_id"], e["type"], e["causation_id"], e["depth"]) for e in from_api["events"]]
        assert [(e["event_id"], e["type"], e["causation_id"], e["depth"]) for e in from_topics["events"]] == chain
        assert from_topics["stages"] == from_api["stages"]
        text = caseloop(lived.stack, "timeline", case_id)
        assert text.stdout.splitlines()[0].startswith(f"case {from_api['case_no']}")
    unknown = caseloop(lived.stack, "timeline", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1


def test_as_of_answers_match_what_the_api_said_at_that_time(lived: Lived) -> None:
    api = Endpoints.of(lived.stack)
    assert lived.snapshots, "the run recorded snapshots"
    for case_id, moment, view_then, timeline_then in lived.snapshots:
        params = {"as_of": moment.isoformat()}
        view = httpx.get(f"{api.supervision}/v1/cases/{case_id}", params=params, auth=DevelopmentCaller()).json()
        timeline = httpx.get(
            f"{api.supervision}/v1/cases/{case_id}/timeline", params=params, auth=DevelopmentCaller()
        ).json()
        assert without_time_left(view) == without_time_left(view_then)
        assert timeline == timeline_then


def without_time_left(view: dict[str, Any]) -> dict[str, Any]:
    """Time left is computed when the view is read: a moment later, it is a moment less."""
    clocks = [{**c, "time_left_seconds": None, "overdue_seconds": None} for c in view["clocks"]]
    deadline = view["deadline"] and {**view["deadline"], "time_left_seconds": None, "overdue_seconds": None}
    return {**view, "clocks": clocks, "deadline": deadline}


def test_after_the_broker_loses_its_data_republish_restores_every_topic_and_nothing_is_processed_twice(
    lived: Lived,
) -> None:
    stack = lived.stack
    outbox_before = outbox_counts(stack)
    for name in reversed(SERVICES):
        stack.stop_service(name)
    assert stack.broker is not None
    stack.broker.stop()
    shutil.rmtree(stack.data_dir / "broker")
    stack.start_broker()
    for name in SERVICES:
        stack.start_service(name)
    stack.wait_healthy()

    restored = caseloop(stack, "republish", *(arg for name in SERVICES for arg in ("--service", name)))
    assert restored.returncode == 0, restored.stderr
    for name in SERVICES:
        # Each relay restores, by itself, what it published in the last minute and the broker lost
        # (ADR 0010): how much it put back before the command ran depends on timing. Between them,
        # every event of the outbox is on the topic again.
        found = re.search(
            rf"{name}: ([\d,]+) events in the outbox, ([\d,]+) already on the topic, ([\d,]+) republished",
            restored.stdout,
        )
        assert found is not None, restored.stdout
        in_outbox, already, republished = (int(n.replace(",", "")) for n in found.groups())
        assert in_outbox == outbox_before[name]
        assert already + republished == in_outbox
    again = caseloop(stack, "republish", "--service", "dispatch")
    assert f"{outbox_before['dispatch']:,} already on the topic, 0 republished" in again.stdout

    api = Endpoints.of(stack)
    asyncio.run(_caught_up(api))
    for name, url in zip(SERVICES, (api.intake, api.triage, api.dispatch, api.supervision), strict=True):
        health = httpx.get(f"{url}/healthz").json()
        assert health["handled"] == 0, f"{name} handled {health['handled']} events a second time"
    assert outbox_counts(stack) == outbox_before, "no service decided anything anew"
    verified = caseloop(stack, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def _caught_up(api: Endpoints) -> None:
    async with new_client(timeout=10.0) as client:
        await _quiet(client, api)


def outbox_counts(stack: LocalStack) -> dict[str, int]:
    counts = {}
    for name in SERVICES:
        with sqlite3.connect(stack.data_dir / f"{name}.db") as db:
            counts[name] = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return counts


def test_operator_verbs_say_clearly_when_the_broker_cannot_be_reached(lived: Lived, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "CASELOOP_DATA_DIR": str(tmp_path)}
    for args in (["timeline", "00000000-0000-0000-0000-000000000000"], ["deadletter", "list"]):
        run = subprocess.run([CASELOOP, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 2
        assert "cannot reach the Kafka broker" in run.stderr
    nowhere = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    no_database = caseloop(lived.stack, "diff", "--service", "triage", "--shadow-url", nowhere)
    assert no_database.returncode == 2
    assert "no shadow database" in no_database.stderr
    helped = subprocess.run([CASELOOP, "replay", "--help"], capture_output=True, text=True, check=False)
    assert "--from" in helped.stdout
    assert "--service" in helped.stdout


def test_migrate_next_to_make_run_finds_every_database_the_services_made_at_head(lived: Lived) -> None:
    migrated = caseloop(lived.stack, "migrate")

    assert migrated.returncode == 0, migrated.stderr
    heads = [f"{name}: at {service_spec(name).migrations.head} already" for name in SERVICES]
    assert migrated.stdout.splitlines() == heads
