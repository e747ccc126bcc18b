"""Drives cases round the whole loop over the services' real HTTP APIs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from caseloop_deploy.samples import REPORTS
from caseloop_deploy.stack import LocalStack
from caseloop_events.testing.fixtures import DevelopmentCaller

HAPPY_PATH = [
    "case.accepted",
    "case.judged",
    "case.assigned",
    "case.acknowledged",
    "case.result_reported",
    "case.verified",
    "case.evaluated",
    "case.closed",
]

#: What supervision's clocks add to the happy path: the acknowledgement clock started at the
#: assignment and stopped at the acknowledgement, the handling clock started there and stopped at
#: the result (in the timeline among the events that caused them).
HAPPY_PATH_CLOCKS = {"case.deadline_set": 2, "case.clock_stopped": 2}


def new_client(timeout: float = 30.0) -> httpx.AsyncClient:
    """The one way the end-to-end tests talk to the services.

    Idle connections expire after 2 s, before uvicorn's 5 s keep-alive closes them under a request."""
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(keepalive_expiry=2.0), auth=DevelopmentCaller())


@dataclass(frozen=True)
class Endpoints:
    intake: str
    triage: str
    dispatch: str
    supervision: str

    @classmethod
    def of(cls, stack: LocalStack) -> Endpoints:
        return cls(*(stack.services[name].url for name in ("intake", "triage", "dispatch", "supervision")))


async def poll(
    fetch: Callable[[], Awaitable[httpx.Response]],
    ready: Callable[[httpx.Response], bool],
    timeout: float = 60.0,
    interval: float = 0.1,
) -> httpx.Response:
    """Ask every ``interval`` seconds until the answer is ready; fail with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = await fetch()
        if ready(response):
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout}s: {response.status_code} {response.text[:300]}")
        await asyncio.sleep(interval)


#: Answers that say the service is down, restarting or overloaded, not that the request was wrong.
OUTAGE_STATUSES = frozenset({429, 500, 502, 503, 504})


async def send_through_outages(
    client: httpx.AsyncClient, method: str, url: str, *, timeout: float = 180.0, **request: Any
) -> httpx.Response:
    """Send the request until an answer comes that is not an outage: a refused, dropped or timed-out
    connection, 429 or a 5xx is tried again with back-off (``Retry-After`` honoured) for up to
    ``timeout`` seconds. A command tried again may have succeeded before its answer was lost, so
    the caller must expect what a repeated command gets (most answer 409) and check the state."""
    deadline = time.monotonic() + timeout
    backoff = 0.1
    while True:
        retry_after: str | None = None
        try:
            response = await client.request(method, url, **request)
        except httpx.TransportError as error:
            why = repr(error)
        else:
            if response.status_code not in OUTAGE_STATUSES:
                return response
            why, retry_after = f"{response.status_code} {response.text[:300]}", response.headers.get("Retry-After")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{method} {url}: no answer but outages for {timeout}s; the last: {why}")
        await asyncio.sleep(float(retry_after) if retry_after and retry_after.isdecimal() else backoff)
        backoff = min(backoff * 2, 2.0)


async def wait_until_idle(client: httpx.AsyncClient, api: Endpoints, timeout: float = 120.0) -> None:
    """Until every service is healthy, has read everything and published its whole outbox, twice in a row."""
    quiet_rounds = 0
    deadline = time.monotonic() + timeout
    while quiet_rounds < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the services did not settle within {timeout}s")
        healths = [
            await send_through_outages(client, "GET", f"{url}/healthz")
            for url in (api.intake, api.triage, api.dispatch, api.supervision)
        ]
        busy = any(h.json().get("consumer_lag", 0) or h.json().get("outbox_pending", 0) for h in healths)
        quiet_rounds = 0 if busy else quiet_rounds + 1
        await asyncio.sleep(1.0)


async def grid_codes(client: httpx.AsyncClient, api: Endpoints, count: int, offset: int = 0) -> list[str]:
    """Grid codes spread over every town of the region; another ``offset`` gives other grids, so that
    reports driven into the same stack twice are not screened as duplicates of each other."""
    page = (await client.get(f"{api.intake}/v1/grids", params={"limit": 1000})).json()
    items = page["items"]
    step = max(len(items) // count, 1)
    return [item["grid_code"] for item in items[offset::step]][:count]


def report_body(external_id: str, grid: str, n: int) -> dict[str, Any]:
    """The body of POST /v1/cases for the ``n``-th of the sample reports (they repeat after six)."""
    title, description, category = REPORTS[n % len(REPORTS)]
    body: dict[str, Any] = {
        "source_system": "hotline-12345",
        "external_id": external_id,
        "title": title,
        "description": description,
        "location": {"grid_code": grid},
        "reporter": {"name": "王五", "phone": "13900000000"},
    }
    if category:
        body["category"] = category
    return body


async def report_case(client: httpx.AsyncClient, api: Endpoints, external_id: str, grid: str, n: int) -> dict[str, Any]:
    response = await client.post(f"{api.intake}/v1/cases", json=report_body(external_id, grid, n))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def close_case(client: httpx.AsyncClient, api: Endpoints, case_id: str) -> None:
    """Take one accepted case through assignment, handling, verification and evaluation."""
    assignment = (
        await poll(lambda: client.get(f"{api.dispatch}/v1/cases/{case_id}/assignment"), lambda r: r.status_code == 200)
    ).json()
    unit = assignment["unit_id"]
    ack = await client.post(f"{api.dispatch}/v1/cases/{case_id}/acknowledge", json={"unit_id": unit, "by": "handler-1"})
    assert ack.status_code == 200, ack.text
    result = await client.post(
        f"{api.dispatch}/v1/cases/{case_id}/result",
        json={
            "unit_id": unit,
            "by": "handler-1",
            "summary": "已到现场处理完毕",
            "evidence": ["https://files.example/p1.jpg"],
        },
    )
    assert result.status_code == 200, result.text
    await poll(
        lambda: client.get(f"{api.supervision}/v1/cases/{case_id}"),
        lambda r: r.status_code == 200 and r.json()["status"] == "result_reported",
    )
    verified = await client.post(
        f"{api.supervision}/v1/cases/{case_id}/verification",
        json={"passed": True, "by": "supervisor-1", "note": "现场核查属实"},
    )
    assert verified.status_code == 200, verified.text
    evaluated = await client.post(f"{api.supervision}/v1/cases/{case_id}/evaluation", json={"rating": "satisfied"})
    assert evaluated.status_code == 200, evaluated.text
    assert evaluated.json()["status"] == "closed"


async def drive_cases_round_the_loop(
    api: Endpoints, count: int, prefix: str, concurrency: int = 10, grid_offset: int = 0
) -> list[str]:
    """Report ``count`` cases, one per grid, and close each; returns their case ids."""
    limit = asyncio.Semaphore(concurrency)
    async with new_client() as client:
        grids = await grid_codes(client, api, count, grid_offset)

        async def one(n: int, grid: str) -> str:
            async with limit:
                created = await report_case(client, api, f"{prefix}-{n:05d}", grid, n)
                await close_case(client, api, created["case_id"])
                return str(created["case_id"])

        return list(await asyncio.gather(*(one(n, grid) for n, grid in zip(range(count), itertools.cycle(grids)))))


async def settled_timeline(client: httpx.AsyncClient, api: Endpoints, case_id: str) -> dict[str, Any]:
    """The case's timeline once supervision has read every topic up to the closure.

    Supervision reads four topics independently; the judgment can still be on its way
    when the closure is already in.
    """
    response = await poll(
        lambda: client.get(f"{api.supervision}/v1/cases/{case_id}/timeline"),
        lambda r: r.status_code == 200 and len(r.json()["events"]) >= len(HAPPY_PATH) + sum(HAPPY_PATH_CLOCKS.values()),
        timeout=30.0,
    )
    timeline: dict[str, Any] = response.json()
    return timeline


def assert_timeline_is_the_closed_loop(timeline: dict[str, Any]) -> None:
    """Exactly the happy path's events, each caused by the one before, never earlier than it, and
    the clocks each of them started and stopped, each after its cause."""
    every = timeline["events"]
    events = [e for e in every if e["type"] not in HAPPY_PATH_CLOCKS]
    clocks = [e for e in every if e["type"] in HAPPY_PATH_CLOCKS]
    assert {t: sum(e["type"] == t for e in clocks) for t in HAPPY_PATH_CLOCKS} == HAPPY_PATH_CLOCKS
    position = {e["event_id"]: n for n, e in enumerate(every)}
    for clock_event in clocks:
        assert position[clock_event["causation_id"]] < position[clock_event["event_id"]], clock_event["type"]
    assert [e["type"] for e in events] == HAPPY_PATH, [e["type"] for e in events]
    assert events[0]["causation_id"] is None
    for cause, effect in itertools.pairwise(events):
        assert effect["causation_id"] == cause["event_id"], (cause["type"], effect["type"])
        assert effect["occurred_at"] >= cause["occurred_at"]
    assert [e["producer"] for e in events] == [
        "intake", "triage", "dispatch", "dispatch", "dispatch", "supervision", "supervision", "supervision"
    ]  # fmt: skip
