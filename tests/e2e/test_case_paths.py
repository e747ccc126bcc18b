"""Every path a real case can take, through the four service processes and a real broker.

One stack serves the module; each test works in grids of its own, so no test's reports are
screened as duplicates of another's. Auto-closure and feedback retries are configured to take
seconds here instead of days.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.contracts.supervision import CLOCK_AND_NOTICE_EVENTS
from caseloop_events.testing.broker import BrokerKind, free_port
from tests.e2e.loop_driver import Endpoints, new_client, poll

pytestmark = pytest.mark.e2e

CLOCK_TYPES = {payload.event_type for payload in CLOCK_AND_NOTICE_EVENTS}

TOWN = "330110001"
TOWN_GOVERNMENT = f"U-TOWN-{TOWN}"
EVALUATION_WINDOW_SECONDS = 4

# Settings that make days-long waits seconds long in this stack.
FAST_TIMERS = {
    "SUPERVISION_EVALUATION_WINDOW": f"PT{EVALUATION_WINDOW_SECONDS}S",
    "SUPERVISION_TIMER_INTERVAL": "0.5",
    "SUPERVISION_FEEDBACK_BACKOFF": "1",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    ports = {name: free_port() for name in SERVICES}
    with LocalStack(
        tmp_path_factory.mktemp("paths"), broker_kind=BrokerKind.NOIDA, ports=ports, extra_env=FAST_TIMERS
    ) as running:
        yield running


MODULE_NUMBERS = itertools.count()
MODULE_GRIDS = itertools.count()


@dataclass
class Loop:
    """The four APIs, and a case-by-case way round them."""

    client: httpx.AsyncClient
    api: Endpoints
    grids: list[str]
    # One count for the whole module: every test gets grids and external ids of its own.
    numbers: Iterator[int] = field(default_factory=lambda: MODULE_NUMBERS)

    def grid(self) -> str:
        """A grid of the town no other report of this module uses."""
        return self.grids[next(MODULE_GRIDS)]

    async def report(self, title: str, description: str, grid: str, **extra: Any) -> dict[str, Any]:
        body = {
            "source_system": extra.pop("source_system", "hotline-12345"),
            "external_id": extra.pop("external_id", f"PATH-{next(self.numbers):05d}"),
            "title": title,
            "description": description,
            "location": {"grid_code": grid},
            **extra,
        }
        response = await self.client.post(f"{self.api.intake}/v1/cases", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def sanitation_case(self, grid: str | None = None) -> str:
        """A case three departments of the town answer for."""
        created = await self.report(
            "小区垃圾堆积", f"垃圾桶满溢多日无人清运 {next(self.numbers)}", grid or self.grid(), category="sanitation"
        )
        return str(created["case_id"])

    async def case(self, case_id: str, ready: Any = None) -> dict[str, Any]:
        """Supervision's view of the case, once ``ready`` holds for it."""
        response = await poll(
            lambda: self.client.get(f"{self.api.supervision}/v1/cases/{case_id}"),
            lambda r: r.status_code == 200 and (ready is None or ready(r.json())),
            timeout=60.0,
        )
        view: dict[str, Any] = response.json()
        return view

    async def assignment(self, case_id: str, ready: Any = None) -> dict[str, Any]:
        response = await poll(
            lambda: self.client.get(f"{self.api.dispatch}/v1/cases/{case_id}/assignment"),
            lambda r: r.status_code == 200 and (ready is None or ready(r.json())),
            timeout=60.0,
        )
        view: dict[str, Any] = response.json()
        return view

    async def timeline_types(self, case_id: str, ready: Any) -> list[str]:
        """The event types of the case's timeline, once ``ready`` holds for them; clock and notice
        events left out (tests/e2e/test_deadlines.py is about those)."""

        def types(response: httpx.Response) -> list[str]:
            return [e["type"] for e in response.json()["events"] if e["type"] not in CLOCK_TYPES]

        response = await poll(
            lambda: self.client.get(f"{self.api.supervision}/v1/cases/{case_id}/timeline"),
            lambda r: r.status_code == 200 and ready(types(r)),
            timeout=60.0,
        )
        return types(response)

    async def dispatch(self, case_id: str, command: str, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
        response = await self.client.post(f"{self.api.dispatch}/v1/cases/{case_id}/{command}", json=body)
        assert response.status_code == expect, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def supervise(self, case_id: str, command: str, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
        response = await self.client.post(f"{self.api.supervision}/v1/cases/{case_id}/{command}", json=body)
        assert response.status_code == expect, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def handle(self, case_id: str, unit: str, *, acknowledge: bool = True) -> None:
        """The lead unit signs for the case (unless it has) and reports it handled; supervision sees the result."""
        if acknowledge:
            await self.dispatch(case_id, "acknowledge", {"unit_id": unit, "by": "handler-1"})
        await self.dispatch(case_id, "result", {"unit_id": unit, "by": "handler-1", "summary": "已处理"})
        await self.case(case_id, lambda c: c["status"] == "result_reported")

    async def verify(self, case_id: str, *, passed: bool = True) -> dict[str, Any]:
        return await self.supervise(case_id, "verification", {"passed": passed, "by": "supervisor-1", "note": "核查"})

    async def evaluate(self, case_id: str, rating: str) -> dict[str, Any]:
        return await self.supervise(case_id, "evaluation", {"rating": rating, "comment": "回访"})


@pytest.fixture
async def loop(stack: LocalStack) -> AsyncIterator[Loop]:
    api = Endpoints.of(stack)
    async with new_client() as client:
        page = (await client.get(f"{api.intake}/v1/grids", params={"town_code": TOWN, "limit": 1000})).json()
        yield Loop(client, api, [item["grid_code"] for item in page["items"]])


def answering(category: str) -> list[str]:
    from caseloop_events.contracts.reference import default_reference_dir, load_reference_data

    reference = load_reference_data(default_reference_dir())
    return [unit.unit_id for unit in reference.units_answering(category, TOWN)]


# --- screening ---------------------------------------------------------------------------


async def test_a_probable_duplicate_is_linked_to_the_open_case_and_never_judged_or_assigned(loop: Loop) -> None:
    grid = loop.grid()
    original = await loop.report("路灯不亮", "柳岸路整条路的路灯晚上都不亮，行人看不清", grid)
    second = (
        await loop.client.post(
            f"{loop.api.intake}/v1/cases",
            json={
                "source_system": "grid-app",
                "external_id": "GA-DUP-1",
                "title": "路灯不亮",
                "description": "柳岸路整条路的路灯晚上都不亮，行人看不清楚",
                "location": {"grid_code": grid},
            },
        )
    ).json()

    assert second["status"] == "duplicate"
    view = await loop.case(second["case_id"], lambda c: c["status"] == "duplicate")
    assert view["duplicate_of"]["case_id"] == original["case_id"]
    assert await loop.timeline_types(second["case_id"], bool) == ["case.duplicate_linked"]
    await asyncio.sleep(1.0)  # time for triage and dispatch to (wrongly) act on it
    judged = await loop.client.get(f"{loop.api.triage}/v1/cases/{second['case_id']}/judgment")
    assert judged.status_code == 404
    assert (await loop.client.get(f"{loop.api.dispatch}/v1/cases/{second['case_id']}/assignment")).status_code == 404


async def test_a_duplicate_unmerged_goes_round_the_loop_and_a_merge_freezes_a_case_until_unmerged(loop: Loop) -> None:
    grid = loop.grid()
    original = await loop.sanitation_case(grid)
    duplicate = await loop.report(
        "小区垃圾堆积", "垃圾桶满溢多日无人清运 again", grid, category="sanitation", source_system="grid-app"
    )
    assert duplicate["status"] == "duplicate"
    unmerge = await loop.client.post(
        f"{loop.api.intake}/v1/cases/{duplicate['case_id']}/unmerge", json={"by": "supervisor-1", "reason": "不同楼栋"}
    )
    assert unmerge.status_code == 200, unmerge.text
    assigned = await loop.assignment(duplicate["case_id"])
    assert assigned["unit_id"] == answering("sanitation")[0]

    merge = await loop.client.post(
        f"{loop.api.intake}/v1/cases/{duplicate['case_id']}/merge",
        json={"into_case_id": original, "by": "supervisor-1", "reason": "同一事项"},
    )
    assert merge.status_code == 200, merge.text
    await loop.case(duplicate["case_id"], lambda c: c["status"] == "merged")
    await loop.assignment(duplicate["case_id"], lambda a: a["status"] == "merged")
    frozen = await loop.client.post(
        f"{loop.api.dispatch}/v1/cases/{duplicate['case_id']}/acknowledge",
        json={"unit_id": assigned["unit_id"], "by": "handler-1"},
    )
    assert frozen.status_code == 409
    assert frozen.json()["rule"] == "CaseFollowsAnother"

    again = await loop.client.post(
        f"{loop.api.intake}/v1/cases/{duplicate['case_id']}/unmerge", json={"by": "supervisor-1", "reason": "撤销合并"}
    )
    assert again.status_code == 200, again.text
    await loop.case(duplicate["case_id"], lambda c: c["status"] == "assigned")
    types = await loop.timeline_types(duplicate["case_id"], lambda ts: ts.count("case.unmerged") == 2)
    assert types[:5] == ["case.duplicate_linked", "case.unmerged", "case.accepted", "case.judged", "case.assigned"]
    assert types[5:] == ["case.merged", "case.unmerged"]


async def test_a_test_report_is_rejected_with_its_reason_and_kept(loop: Loop) -> None:
    created = await loop.report("测试", "系统联调测试，请忽略", loop.grid())

    assert created["status"] == "rejected"
    view = await loop.case(created["case_id"], lambda c: c["status"] == "rejected")
    assert view["case_no"] == created["case_no"]
    assert await loop.timeline_types(created["case_id"], bool) == ["case.rejected"]
    intake_view = (await loop.client.get(f"{loop.api.intake}/v1/cases/{created['case_id']}")).json()
    assert intake_view["status"] == "rejected"


# --- judgment ----------------------------------------------------------------------------


async def test_a_case_no_rule_can_judge_waits_in_the_review_queue_until_an_officer_judges_it(loop: Loop) -> None:
    created = await loop.report("情况反映", "有件事情想反映一下，请联系我", loop.grid())
    case_id = created["case_id"]
    queue = await poll(
        lambda: loop.client.get(f"{loop.api.triage}/v1/review-queue", params={"limit": 200}),
        lambda r: case_id in [item["case_id"] for item in r.json()["items"]],
    )
    assert queue.status_code == 200
    await loop.case(case_id, lambda c: c["status"] == "pending_review")

    judged = await loop.client.post(
        f"{loop.api.triage}/v1/cases/{case_id}/judgment", json={"by": "officer-1", "category": "streetlight"}
    )

    assert judged.status_code in (200, 201), judged.text
    assert judged.json()["judged_by"] == "officer"
    assigned = await loop.assignment(case_id)
    assert assigned["unit_id"] == answering("streetlight")[0]
    remaining = (await loop.client.get(f"{loop.api.triage}/v1/review-queue", params={"limit": 200})).json()
    assert case_id not in [item["case_id"] for item in remaining["items"]]
    types = await loop.timeline_types(case_id, lambda ts: "case.assigned" in ts)
    assert types == ["case.accepted", "case.review_requested", "case.judged", "case.assigned"]


async def test_a_rejudged_case_moves_to_the_unit_of_its_new_category(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    first = await loop.assignment(case_id)

    missing_reason = await loop.client.post(
        f"{loop.api.triage}/v1/cases/{case_id}/judgment", json={"by": "officer-1", "category": "streetlight"}
    )
    assert missing_reason.status_code == 422
    assert "reason" in missing_reason.text
    rejudged = await loop.client.post(
        f"{loop.api.triage}/v1/cases/{case_id}/judgment",
        json={"by": "officer-1", "category": "streetlight", "reason": "实为路灯故障"},
    )
    assert rejudged.status_code in (200, 201), rejudged.text

    moved = await loop.assignment(case_id, lambda a: a["unit_id"] != first["unit_id"])
    assert moved["unit_id"] == answering("streetlight")[0]
    assert "re-judged" in moved["reason"]
    types = await loop.timeline_types(case_id, lambda ts: ts.count("case.assigned") == 2)
    assert types == ["case.accepted", "case.judged", "case.assigned", "case.judged", "case.assigned"]


async def test_a_campaign_case_is_tagged_with_its_campaign_and_listed_by_it(loop: Loop) -> None:
    created = await loop.report(
        "楼道堆放杂物", "高层住宅楼道堆满纸箱，消防通道被堵", loop.grid(), category="high_rise_fire"
    )
    view = await loop.case(created["case_id"], lambda c: c["campaign_ids"])
    campaign = view["campaign_ids"][0]

    listed = (await loop.client.get(f"{loop.api.supervision}/v1/cases", params={"campaign_id": campaign})).json()

    assert created["case_id"] in [c["case_id"] for c in listed["items"]]
    assert all(campaign in c["campaign_ids"] for c in listed["items"])


# --- assignment disputes -----------------------------------------------------------------


async def test_a_returned_case_is_rerouted_to_another_unit_never_back(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    first, second, _third = answering("sanitation")
    await loop.assignment(case_id, lambda a: a["unit_id"] == first)

    rerouted = await loop.dispatch(case_id, "return", {"unit_id": first, "by": "handler-1", "reason": "不属于本单位"})

    assert rerouted["unit_id"] == second
    assert rerouted["returned_by"] == [first]
    view = await loop.case(case_id, lambda c: c["unit_id"] == second)
    assert view["returns"] == 1
    types = await loop.timeline_types(case_id, lambda ts: "case.returned" in ts and ts.count("case.assigned") == 2)
    assert types == ["case.accepted", "case.judged", "case.assigned", "case.returned", "case.assigned"]


async def test_the_return_limit_hands_the_case_to_the_town_government_which_cannot_return_it(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    first, second, _third = answering("sanitation")
    await loop.assignment(case_id)
    await loop.dispatch(case_id, "return", {"unit_id": first, "by": "h", "reason": "不属于本单位"})

    fallback = await loop.dispatch(case_id, "return", {"unit_id": second, "by": "h", "reason": "也不属于本单位"})

    assert fallback["unit_id"] == TOWN_GOVERNMENT
    assert fallback["fallback_owner"] is True
    refused = await loop.client.post(
        f"{loop.api.dispatch}/v1/cases/{case_id}/return", json={"unit_id": TOWN_GOVERNMENT, "by": "h", "reason": "x"}
    )
    assert refused.status_code == 409
    assert refused.json()["rule"] == "FallbackOwnerCannotReturn"
    assert (await loop.assignment(case_id)) == fallback
    await loop.case(case_id, lambda c: c["returns"] == 2)
    listed = (
        await loop.client.get(
            f"{loop.api.supervision}/v1/cases", params={"returned_more_than_once": "true", "limit": 500}
        )
    ).json()
    assert case_id in [c["case_id"] for c in listed["items"]]
    assert all(c["returns"] >= 2 for c in listed["items"])


async def test_a_unit_transfers_a_case_to_a_named_unit(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    first = (await loop.assignment(case_id))["unit_id"]

    moved = await loop.dispatch(
        case_id, "transfer", {"unit_id": first, "by": "h", "to_unit_id": "U-HOUSING", "reason": "涉及房屋维修"}
    )

    assert moved["unit_id"] == "U-HOUSING"
    assert moved["route"] == "transfer"
    await loop.case(case_id, lambda c: c["unit_id"] == "U-HOUSING")
    types = await loop.timeline_types(case_id, lambda ts: "case.transferred" in ts and ts.count("case.assigned") == 2)
    assert types[-2:] == ["case.transferred", "case.assigned"]


async def test_a_dispatcher_assigns_units_jointly_and_only_the_lead_answers(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    first, second, third = answering("sanitation")
    await loop.assignment(case_id)

    joint = await loop.dispatch(
        case_id,
        "assignment",
        {"lead_unit_id": first, "assisting_unit_ids": [second, third], "by": "dispatcher-1", "reason": "联合整治"},
    )

    assert joint["assisting_unit_ids"] == [second, third]
    inbox = (await loop.client.get(f"{loop.api.dispatch}/v1/units/{third}/cases", params={"limit": 200})).json()
    assert case_id in [item["case_id"] for item in inbox["items"]]
    refused = await loop.client.post(
        f"{loop.api.dispatch}/v1/cases/{case_id}/acknowledge", json={"unit_id": second, "by": "h"}
    )
    assert refused.status_code == 409
    assert refused.json()["rule"] == "NotAssignedToThisUnit"
    view = await loop.case(case_id, lambda c: c["assisting_unit_ids"] == [second, third])
    assert view["unit_id"] == first


# --- rework, reopening, closure ----------------------------------------------------------


async def test_a_failed_verification_sends_the_case_back_to_the_same_unit_for_rework(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    unit = (await loop.assignment(case_id))["unit_id"]
    await loop.handle(case_id, unit)

    failed = await loop.verify(case_id, passed=False)

    assert failed["status"] == "acknowledged"
    await loop.assignment(case_id, lambda a: a["status"] == "acknowledged" and a["unit_id"] == unit)
    await loop.handle(case_id, unit, acknowledge=False)
    await loop.verify(case_id)
    closed = await loop.evaluate(case_id, "satisfied")
    assert closed["status"] == "closed"
    types = await loop.timeline_types(case_id, lambda ts: "case.closed" in ts and "case.acknowledged" in ts)
    assert types[4:] == [
        "case.result_reported",
        "case.verification_failed",
        "case.result_reported",
        "case.verified",
        "case.evaluated",
        "case.closed",
    ]


async def test_an_unsatisfied_citizen_reopens_the_case_back_to_its_unit(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    unit = (await loop.assignment(case_id))["unit_id"]
    await loop.handle(case_id, unit)
    await loop.verify(case_id)

    reopened = await loop.evaluate(case_id, "unsatisfied")

    assert reopened["status"] == "reopened"
    again = await loop.assignment(case_id, lambda a: a["route"] == "reopened")
    assert again["unit_id"] == unit
    assert again["status"] == "assigned"
    await loop.case(case_id, lambda c: c["status"] == "assigned")
    await loop.handle(case_id, unit)
    await loop.verify(case_id)
    assert (await loop.evaluate(case_id, "satisfied"))["status"] == "closed"
    types = await loop.timeline_types(case_id, lambda ts: "case.closed" in ts and ts.count("case.acknowledged") == 2)
    reopening = types.index("case.reopened")
    assert types[reopening - 1 : reopening + 3] == [
        "case.evaluated",
        "case.reopened",
        "case.assigned",
        "case.acknowledged",
    ]


async def test_a_verified_case_nobody_evaluates_closes_by_itself(loop: Loop) -> None:
    case_id = await loop.sanitation_case()
    unit = (await loop.assignment(case_id))["unit_id"]
    await loop.handle(case_id, unit)
    await loop.verify(case_id)

    closed = await loop.case(case_id, lambda c: c["status"] == "closed")

    timeline = (await loop.client.get(f"{loop.api.supervision}/v1/cases/{case_id}/timeline")).json()["events"]
    assert timeline[-1]["type"] == "case.closed"
    assert timeline[-1]["payload"]["reason"] == "no_evaluation_in_time"
    assert timeline[-1]["causation_id"] == timeline[-2]["event_id"]
    assert closed["rating"] is None


# --- feedback ----------------------------------------------------------------------------


class FlakyFeedbackReceiver(BaseHTTPRequestHandler):
    """A source system's callback that answers 503 to its first request, then 200."""

    received: ClassVar[list[dict[str, Any]]] = []
    keys: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).keys.append(self.headers.get("Idempotency-Key", ""))
        first = len(type(self).keys) == 1
        if not first:
            type(self).received.append(body)
        self.send_response(503 if first else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def feedback_receiver() -> Iterator[str]:
    FlakyFeedbackReceiver.received, FlakyFeedbackReceiver.keys = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyFeedbackReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/feedback"
    server.shutdown()
    server.server_close()


async def test_the_source_system_gets_the_result_and_the_closure_on_its_callback_retried_after_a_failure(
    loop: Loop, feedback_receiver: str
) -> None:
    created = await loop.report(
        "小区垃圾堆积",
        "垃圾桶满溢多日无人清运 callback",
        loop.grid(),
        category="sanitation",
        callback_url=feedback_receiver,
    )
    case_id = created["case_id"]
    unit = (await loop.assignment(case_id))["unit_id"]
    await loop.handle(case_id, unit)
    await loop.verify(case_id)
    await loop.evaluate(case_id, "satisfied")

    types = await loop.timeline_types(case_id, lambda ts: ts.count("case.feedback_delivered") == 2)

    assert types.count("case.feedback_failed") == 1
    assert sorted(body["type"] for body in FlakyFeedbackReceiver.received) == ["case.closed", "case.verified"]
    assert {body["case_id"] for body in FlakyFeedbackReceiver.received} == {case_id}
    # The retry of the failed delivery carried the same key: the receiver can tell it is the same message.
    assert len(FlakyFeedbackReceiver.keys) == 3
    assert len(set(FlakyFeedbackReceiver.keys)) == 2
