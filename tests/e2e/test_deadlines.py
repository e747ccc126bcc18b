"""Deadlines that bite, through the four service processes and a real broker, on a controlled clock.

Every service of this stack runs on a :class:`ShiftedClock`: the test moves the time of all four
forward by writing an offset into one file, so a seven-day deadline, its warning and its yellow and
red notices pass in seconds — with the real timers, the real consumers and the real broker.
Time only moves forward, so each test reads "now" from the same clock and works relative to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.contracts.clock import CLOCK_OFFSET_FILE_ENV, REGION_TIMEZONE, ShiftedClock
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.testing.broker import BrokerKind, free_port
from tests.e2e.loop_driver import Endpoints, new_client, poll

pytestmark = pytest.mark.e2e

REFERENCE = load_reference_data(default_reference_dir())
DISTRICT = REFERENCE.district.code


@pytest.fixture(scope="module")
def offset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "offset-seconds"
    path.write_text("0")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, offset_file: Path) -> Iterator[LocalStack]:
    ports = {name: free_port() for name in SERVICES}
    env = {CLOCK_OFFSET_FILE_ENV: str(offset_file), "SUPERVISION_TIMER_INTERVAL": "0.2"}
    data = tmp_path_factory.mktemp("deadlines")
    with LocalStack(data, broker_kind=BrokerKind.NOIDA, ports=ports, extra_env=env) as running:
        yield running


class Clock:
    """The services' clock, moved by the test."""

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self.reader = ShiftedClock(offset_file)

    def now(self) -> datetime:
        return self.reader.now()

    def advance_to(self, moment: datetime) -> None:
        """Move every service's clock to ``moment`` (and a little past it), never backwards."""
        shift = moment - self.now() + timedelta(seconds=1)
        if shift > timedelta(0):
            current = float(self.offset_file.read_text() or 0)
            self.offset_file.write_text(str(current + shift.total_seconds()))

    def advance(self, by: timedelta) -> None:
        self.advance_to(self.now() + by)


class Desk:
    """The four APIs, as the command centre, the units and the supervisors use them."""

    def __init__(self, client: httpx.AsyncClient, api: Endpoints, clock: Clock, town: str) -> None:
        self.client, self.api, self.clock, self.town = client, api, clock, town
        self.grids = [g for g, place in REFERENCE.grids.items() if place.town_code == town]
        self.numbers = iter(range(10_000))

    async def report(self, category: str = "sanitation", title: str = "小区垃圾堆积") -> str:
        n = next(self.numbers)
        body = {
            "source_system": "hotline-12345",
            "external_id": f"DL-{self.town}-{n:04d}",
            "title": title,
            "description": f"垃圾桶满溢多日无人清运，第{n}号楼",
            "category": category,
            "location": {"grid_code": self.grids[n]},
        }
        response = await self.client.post(f"{self.api.intake}/v1/cases", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["case_id"])

    async def case(self, case_id: str, ready: Any = None, timeout: float = 60.0) -> dict[str, Any]:
        response = await poll(
            lambda: self.client.get(f"{self.api.supervision}/v1/cases/{case_id}"),
            lambda r: r.status_code == 200 and (ready is None or ready(r.json())),
            timeout=timeout,
        )
        view: dict[str, Any] = response.json()
        return view

    async def unit_of(self, case_id: str) -> str:
        response = await poll(
            lambda: self.client.get(f"{self.api.dispatch}/v1/cases/{case_id}/assignment"),
            lambda r: r.status_code == 200,
        )
        unit: str = response.json()["unit_id"]
        return unit

    async def dispatch(self, case_id: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(f"{self.api.dispatch}/v1/cases/{case_id}/{command}", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def supervise(self, case_id: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(f"{self.api.supervision}/v1/cases/{case_id}/{command}", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def listed(self, case_id: str, **filters: str) -> bool:
        page = (await self.client.get(f"{self.api.supervision}/v1/cases", params={**filters, "limit": 500})).json()
        return any(item["case_id"] == case_id for item in page["items"])

    async def timeline(self, case_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"{self.api.supervision}/v1/cases/{case_id}/timeline")
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def close(self, case_id: str, unit: str) -> dict[str, Any]:
        await self.dispatch(case_id, "result", {"unit_id": unit, "by": "handler-1", "summary": "已清运"})
        await self.case(case_id, lambda c: c["status"] == "result_reported")
        await self.supervise(case_id, "verification", {"passed": True, "by": "supervisor-1"})
        return await self.supervise(case_id, "evaluation", {"rating": "satisfied"})


def notices_of(view: dict[str, Any], clock: str) -> list[tuple[str, str, str]]:
    return [(n["rung"], n["level"], n["addressed_to"]) for n in view["notices"] if n["clock"] == clock]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
async def desks(stack: LocalStack, offset_file: Path) -> AsyncIterator[tuple[Clock, httpx.AsyncClient, Endpoints]]:
    async with new_client() as client:
        yield Clock(offset_file), client, Endpoints.of(stack)


async def test_a_late_case_is_warned_overdue_yellow_red_up_the_hierarchy_then_extended_and_finished(
    desks: tuple[Clock, httpx.AsyncClient, Endpoints],
) -> None:
    clock, client, api = desks
    town = REFERENCE.towns[0]
    desk = Desk(client, api, clock, town.code)
    case_id = await desk.report()
    unit = await desk.unit_of(case_id)
    view = await desk.case(case_id, lambda c: c["deadline"] is not None)
    ack = view["deadline"]
    assert (ack["clock"], ack["sla_tier"], ack["sla_profile"]) == ("acknowledgement", "general", "normal")
    assert at(ack["due_at"]) - at(ack["started_at"]) == timedelta(hours=24)
    place = REFERENCE.grids[view["grid_code"]]

    # Acknowledged late: the acknowledgement clock is warned and goes overdue first.
    clock.advance_to(at(ack["due_at"]) + timedelta(minutes=5))
    view = await desk.case(case_id, lambda c: len(notices_of(c, "acknowledgement")) == 2)
    assert notices_of(view, "acknowledgement") == [
        ("warning", "grid", place.grid_code),
        ("overdue", "village", place.village_code),
    ]
    assert await desk.listed(case_id, overdue="true", town_code=town.code)
    assert await desk.listed(case_id, notice="overdue", level="village")
    await desk.dispatch(case_id, "acknowledge", {"unit_id": unit, "by": "handler-1"})
    view = await desk.case(case_id, lambda c: c["deadline"] is not None and c["deadline"]["clock"] == "handling")
    [ack_clock] = [c for c in view["clocks"] if c["clock"] == "acknowledgement"]
    assert (ack_clock["stop_reason"], ack_clock["on_time"]) == ("acknowledged", False)
    handling = view["deadline"]
    started, due = at(handling["started_at"]), at(handling["due_at"])
    assert due - started == timedelta(days=7)
    assert not await desk.listed(case_id, overdue="true", town_code=town.code)

    # The handling clock climbs the ladder: each rung one level further up.
    expected = [
        (0.8, ("warning", "grid", place.grid_code)),
        (1.0, ("overdue", "village", place.village_code)),
        (1.5, ("yellow", "town", place.town_code)),
        (2.0, ("red", "district", place.district_code)),
    ]
    for n, (share, notice) in enumerate(expected, start=1):
        clock.advance_to(started + (due - started) * share)
        view = await desk.case(case_id, lambda c, n=n: len(notices_of(c, "handling")) == n)
        assert notices_of(view, "handling")[-1] == notice
        assert view["notice"]["rung"] == notice[0]
    assert view["deadline"]["overdue_seconds"] > 0
    assert await desk.listed(case_id, overdue="true", notice="red", level="district")
    urged = await desk.supervise(case_id, "urge", {"by": "supervisor-1", "note": "红牌督办，限期办结"})
    assert urged["urgings"][0]["unit_id"] == unit

    # The unit asks for three more days; the supervisor approves: the deadline moves, the notices reset.
    wanted = clock.now() + timedelta(days=3)
    await desk.dispatch(
        case_id, "extension", {"unit_id": unit, "by": "handler-1", "reason": "需协调物业", "due_at": wanted.isoformat()}
    )
    await desk.case(case_id, lambda c: c["extensions"] and c["extensions"][-1]["state"] == "pending")
    extended = await desk.supervise(
        case_id, "extension/decision", {"approved": True, "by": "supervisor-1", "note": "同意延期"}
    )
    assert at(extended["deadline"]["due_at"]) == wanted
    assert extended["deadline"]["overdue_seconds"] is None
    assert extended["notice"] is None
    assert extended["extensions"][-1]["state"] == "approved"
    assert not await desk.listed(case_id, overdue="true", town_code=town.code)

    closed = await desk.close(case_id, unit)
    assert closed["status"] == "closed"
    view = await desk.case(case_id, lambda c: all(k["stopped_at"] for k in c["clocks"]))
    [handling_clock] = [c for c in view["clocks"] if c["clock"] == "handling"]
    assert (handling_clock["stop_reason"], handling_clock["on_time"]) == ("result_reported", True)
    types = [e["type"] for e in await desk.timeline(case_id)]
    assert types.count("case.supervision_notice_issued") == 6
    for expected_type in ("case.extension_requested", "case.extension_decided", "case.urged", "case.clock_stopped"):
        assert expected_type in types


async def test_emergency_mode_switched_on_midway_holds_open_cases_to_the_emergency_profile(
    desks: tuple[Clock, httpx.AsyncClient, Endpoints],
) -> None:
    clock, client, api = desks
    town = REFERENCE.towns[1]
    desk = Desk(client, api, clock, town.code)
    case_id = await desk.report()
    unit = await desk.unit_of(case_id)
    await desk.case(case_id, lambda c: c["deadline"] is not None)
    await desk.dispatch(case_id, "acknowledge", {"unit_id": unit, "by": "handler-1"})
    view = await desk.case(case_id, lambda c: c["deadline"] is not None and c["deadline"]["clock"] == "handling")
    started = at(view["deadline"]["started_at"])
    assert at(view["deadline"]["due_at"]) - started == timedelta(days=7)

    clock.advance(timedelta(hours=3))
    switched = await client.post(
        f"{api.supervision}/v1/regions/{town.code}/mode",
        json={"mode": "emergency", "by": "commander-1", "reason": "防汛Ⅰ级应急响应"},
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["mode"] == "emergency"
    assert switched.json()["cases_affected"] >= 1
    view = await desk.case(case_id)
    assert view["sla_profile"] == "emergency"
    assert at(view["deadline"]["due_at"]) - started == timedelta(hours=24), "general in emergency mode: 24 hours"
    types = [e["type"] for e in await desk.timeline(case_id)]
    assert "case.sla_profile_changed" in types

    # A case reported now starts on the emergency profile: two hours to acknowledge.
    newcomer = await desk.report()
    fresh = await desk.case(newcomer, lambda c: c["deadline"] is not None)
    assert fresh["deadline"]["sla_profile"] == "emergency"
    assert at(fresh["deadline"]["due_at"]) - at(fresh["deadline"]["started_at"]) == timedelta(hours=2)

    clock.advance_to(started + timedelta(hours=24 * 2))
    view = await desk.case(case_id, lambda c: len(notices_of(c, "handling")) == 4)
    assert [rung for rung, _, _ in notices_of(view, "handling")] == ["warning", "overdue", "yellow", "red"]
    levels = [level for _, level, _ in notices_of(view, "handling")]
    assert levels == ["grid", "village", "town", "district"]
    wanted = clock.now() + timedelta(hours=12)
    await desk.dispatch(
        case_id, "extension", {"unit_id": unit, "by": "handler-1", "reason": "水位未退", "due_at": wanted.isoformat()}
    )
    await desk.case(case_id, lambda c: c["extensions"] and c["extensions"][-1]["state"] == "pending")
    extended = await desk.supervise(case_id, "extension/decision", {"approved": True, "by": "commander-1"})
    assert at(extended["deadline"]["due_at"]) == wanted
    assert (await desk.close(case_id, unit))["status"] == "closed"
    [handling] = [c for c in (await desk.case(case_id))["clocks"] if c["clock"] == "handling"]
    assert (handling["sla_profile"], handling["on_time"]) == ("emergency", True)

    back = await client.post(
        f"{api.supervision}/v1/regions/{town.code}/mode", json={"mode": "normal", "by": "commander-1", "reason": "解除"}
    )
    assert back.json()["mode"] == "normal"
    view = await desk.case(newcomer)
    assert view["sla_profile"] == "normal"
    assert at(view["deadline"]["due_at"]) - at(view["deadline"]["started_at"]) == timedelta(hours=24)
    unknown = await client.post(
        f"{api.supervision}/v1/regions/999999999/mode", json={"mode": "normal", "by": "c", "reason": "x"}
    )
    assert unknown.status_code == 404


async def test_restarting_supervision_mid_clock_loses_no_deadline_and_issues_no_notice_twice(
    stack: LocalStack, desks: tuple[Clock, httpx.AsyncClient, Endpoints]
) -> None:
    clock, client, api = desks
    desk = Desk(client, api, clock, REFERENCE.towns[2].code)
    case_id = await desk.report()
    unit = await desk.unit_of(case_id)
    await desk.case(case_id, lambda c: c["deadline"] is not None)
    await desk.dispatch(case_id, "acknowledge", {"unit_id": unit, "by": "handler-1"})
    before = await desk.case(case_id, lambda c: c["deadline"] is not None and c["deadline"]["clock"] == "handling")
    started, due = at(before["deadline"]["started_at"]), at(before["deadline"]["due_at"])

    clock.advance_to(started + (due - started) * 0.9)
    await desk.case(case_id, lambda c: len(notices_of(c, "handling")) == 1)
    stack.stop_service("supervision", kill=True)
    clock.advance_to(started + (due - started) * 1.6)  # overdue and yellow pass while it is down
    stack.start_service("supervision")
    stack.wait_healthy(names=("supervision",))
    view = await desk.case(case_id, lambda c: len(notices_of(c, "handling")) == 3)
    assert at(view["deadline"]["due_at"]) == due, "the deadline survives the restart"

    stack.stop_service("supervision")
    stack.start_service("supervision")
    stack.wait_healthy(names=("supervision",))
    await asyncio.sleep(1.5)  # several timer rounds after the second restart
    view = await desk.case(case_id)
    assert [rung for rung, _, _ in notices_of(view, "handling")] == ["warning", "overdue", "yellow"]
    types = [e["type"] for e in await desk.timeline(case_id)]
    assert types.count("case.supervision_notice_issued") == 3
    assert types.count("case.deadline_set") == 2, "one acknowledgement clock and one handling clock"


async def test_the_daily_report_for_yesterday_is_the_same_before_and_after_new_cases_arrive(
    desks: tuple[Clock, httpx.AsyncClient, Endpoints],
) -> None:
    clock, client, api = desks
    town = REFERENCE.towns[3]
    desk = Desk(client, api, clock, town.code)
    # Start a fresh region day, so all of this happens on one day.
    today = clock.now().astimezone(REGION_TIMEZONE).date()
    clock.advance_to(datetime.combine(today + timedelta(days=1), datetime.min.time(), REGION_TIMEZONE))
    day: date = clock.now().astimezone(REGION_TIMEZONE).date()
    first, second = await desk.report(), await desk.report()
    unit = await desk.unit_of(first)
    await desk.case(first, lambda c: c["deadline"] is not None)
    await desk.dispatch(first, "acknowledge", {"unit_id": unit, "by": "handler-1"})
    await desk.case(first, lambda c: c["deadline"] is not None and c["deadline"]["clock"] == "handling")
    await desk.close(first, unit)
    await desk.case(second, lambda c: c["deadline"] is not None)

    clock.advance(timedelta(days=1))  # the day is over: it is yesterday now
    params = {"date": day.isoformat(), "town_code": town.code}
    first_answer = (await client.get(f"{api.supervision}/v1/reports/daily", params=params)).json()
    assert first_answer["complete"] is True
    assert (first_answer["new_cases"], first_answer["closed"], first_answer["closed_on_time"]) == (2, 1, 1)
    assert first_answer["satisfaction_rate"] == 1.0

    # New cases today, and yesterday's open case handled today: yesterday's report does not move.
    await desk.report()
    unit_two = await desk.unit_of(second)
    await desk.dispatch(second, "acknowledge", {"unit_id": unit_two, "by": "handler-1"})
    await desk.case(second, lambda c: c["deadline"] is not None and c["deadline"]["clock"] == "handling")
    second_answer = (await client.get(f"{api.supervision}/v1/reports/daily", params=params)).json()
    assert second_answer == first_answer
    bad = await client.get(f"{api.supervision}/v1/reports/daily", params={"date": "2026-13-01"})
    assert bad.status_code == 422
