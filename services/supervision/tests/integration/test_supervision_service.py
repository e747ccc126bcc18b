"""supervision against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
)
from caseloop_events.contracts.envelope import Envelope, EventPayload, Producer, deterministic_id, event_answering
from caseloop_events.contracts.intake import CaseAccepted, CaseLinkedAsDuplicate, CaseLocation
from caseloop_events.contracts.supervision import CLOCK_AND_NOTICE_EVENTS, FeedbackDelivered, FeedbackFailed
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.testing.fixtures import DevelopmentCaller, causal_chain, eventually, publish, read_events
from caseloop_supervision.app import create_app
from caseloop_supervision.config import SupervisionSettings


@pytest.fixture
async def supervision(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = SupervisionSettings(
        database_url=database_url, CASELOOP_DATA_DIR=tmp_path, timer_interval=0.1, feedback_backoff=0.3
    )
    async with serving(create_app(settings, kafka_settings)) as client:
        yield client


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app running (consumer, relay, background jobs) and a client for its API."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, auth=DevelopmentCaller(), base_url="http://s") as client,
    ):
        yield client


CLOCK_TYPES = {payload.event_type for payload in CLOCK_AND_NOTICE_EVENTS}

LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
)


def a_handled_case(callback_url: str | None = None) -> list[Envelope]:
    """One case's events up to the unit's reported result, each caused by the one before."""
    case_id, start = uuid.uuid4(), datetime.now(UTC)
    payloads: list[EventPayload] = [
        CaseAccepted(
            case_no=f"CL20261127{uuid.uuid4().int % 10**7:07d}",
            source_system="hotline-12345",
            external_id=str(case_id),
            title="路灯不亮",
            description="整条路的路灯都不亮",
            location=LOCATION,
            accepted_at=start,
            callback_url=callback_url,
        ),
        CaseJudged(
            category="streetlight",
            risk_level=4,
            handling_level=HandlingLevel.TOWN,
            sla_tier=SlaTierName.GENERAL,
            judged_by=JudgedBy.RULES,
            confidence=0.8,
        ),
        CaseAssigned(
            unit_id="U-X",
            unit_name="路灯所",
            town_code="330110001",
            route=AssignmentRoute.RESPONSIBILITY_LIST,
            reason="r",
        ),
        CaseAcknowledged(unit_id="U-X", acknowledged_by="h"),
        CaseResultReported(unit_id="U-X", reported_by="h", summary="已修复"),
    ]
    return causal_chain(case_id, payloads, start, timedelta(seconds=1))


async def publish_to_their_topics(kafka: KafkaSettings, events: list[Envelope]) -> None:
    # Newest first, each on its producer's topic: supervision must not depend on arrival order.
    for event in reversed(events):
        await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(event.producer), event)


async def test_a_handled_case_is_verified_evaluated_and_closed_with_its_whole_timeline(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    case_id = events[0].case_id
    await publish_to_their_topics(kafka_settings, events)

    async def every_event_seen() -> bool:
        response = await supervision.get(f"/v1/cases/{case_id}")
        # The case's events, and the four clock events supervision decides once it knows the tier.
        return response.status_code == 200 and response.json()["event_count"] == len(events) + 4

    await eventually(every_event_seen)
    case = (await supervision.get(f"/v1/cases/{case_id}")).json()
    assert case["status"] == "result_reported"
    assert case["holder"] == {"kind": "service", "id": "supervision", "name": "verification"}
    assert case["unit_id"] == "U-X"
    # Read newest first, the judgment last: the clocks still start and stop when the case did.
    ack, handling = case["clocks"]
    assert (ack["clock"], ack["started_at"], ack["stop_reason"], ack["on_time"]) == (
        "acknowledgement",
        events[2].occurred_at.isoformat().replace("+00:00", "Z"),
        "acknowledged",
        True,
    )
    assert (handling["clock"], handling["stopped_at"], handling["stop_reason"], handling["on_time"]) == (
        "handling",
        events[4].occurred_at.isoformat().replace("+00:00", "Z"),
        "result_reported",
        True,
    )

    verified = await supervision.post(f"/v1/cases/{case_id}/verification", json={"passed": True, "by": "sup-1"})
    assert verified.json()["status"] == "verified"
    closed = await supervision.post(f"/v1/cases/{case_id}/evaluation", json={"rating": "basically_satisfied"})
    assert closed.json()["status"] == "closed"

    timeline = (await supervision.get(f"/v1/cases/{case_id}/timeline")).json()
    types = [e["type"] for e in timeline["events"] if e["type"] not in CLOCK_TYPES]
    assert types == [e.type for e in events] + ["case.verified", "case.evaluated", "case.closed"]

    published = await read_events(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_of(Producer.SUPERVISION),
        until=lambda evs: sum(e.case_id == case_id and e.type not in CLOCK_TYPES for e in evs) >= 3,
    )
    lifecycle = [e.type for e in published if e.case_id == case_id and e.type not in CLOCK_TYPES]
    assert lifecycle == ["case.verified", "case.evaluated", "case.closed"]


async def test_the_case_list_filters_by_status_town_and_unit(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    await publish_to_their_topics(kafka_settings, events)

    async def listed() -> bool:
        page = (
            await supervision.get("/v1/cases", params={"status": "result_reported", "town_code": "330110001"})
        ).json()
        # The topics arrive in any order, and the unit comes with the assignment.
        return any(item["case_id"] == str(events[0].case_id) and item["unit_id"] for item in page["items"])

    await eventually(listed)
    assert (await supervision.get("/v1/cases", params={"unit_id": "U-X"})).json()["total"] >= 1
    assert (await supervision.get("/v1/cases", params={"unit_id": "U-NOBODY"})).json()["total"] == 0


async def test_evaluating_a_case_not_yet_verified_is_409_naming_the_rule(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    await publish_to_their_topics(kafka_settings, events)
    case_id = events[0].case_id
    await eventually(lambda: _known(supervision, case_id))
    response = await supervision.post(f"/v1/cases/{case_id}/evaluation", json={"rating": "satisfied"})
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["rule"] == "NotAwaitingEvaluation"


async def _known(client: httpx.AsyncClient, case_id: uuid.UUID) -> bool:
    return (await client.get(f"/v1/cases/{case_id}")).status_code == 200


async def test_an_unknown_case_is_404_and_a_bad_rating_422(supervision: httpx.AsyncClient) -> None:
    unknown = uuid.uuid4()
    assert (await supervision.get(f"/v1/cases/{unknown}/timeline")).status_code == 404
    assert (
        await supervision.post(f"/v1/cases/{unknown}/verification", json={"passed": True, "by": "s"})
    ).status_code == 404
    bad = await supervision.post(f"/v1/cases/{unknown}/evaluation", json={"rating": "meh"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.rating"


async def test_a_page_offset_beyond_any_list_is_bad_input(supervision: httpx.AsyncClient) -> None:
    response = await supervision.get("/v1/cases", params={"offset": 10**19})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.offset"


async def settled(client: httpx.AsyncClient, events: list[Envelope]) -> None:
    """Wait until supervision has read every one of the case's events."""

    async def every_event_seen() -> bool:
        response = await client.get(f"/v1/cases/{events[0].case_id}/timeline")
        if response.status_code != 200:
            return False
        seen = {e["event_id"] for e in response.json()["events"]}
        return all(str(e.event_id) in seen for e in events)

    await eventually(every_event_seen)


async def test_an_unsatisfied_citizen_reopens_the_case_for_dispatch_to_assign_again(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    case_id = events[0].case_id
    await publish_to_their_topics(kafka_settings, events)
    await settled(supervision, events)
    await supervision.post(f"/v1/cases/{case_id}/verification", json={"passed": True, "by": "sup-1"})
    reopened = await supervision.post(
        f"/v1/cases/{case_id}/evaluation", json={"rating": "unsatisfied", "comment": "灯还是不亮"}
    )
    assert reopened.status_code == 200
    view = reopened.json()
    assert (view["status"], view["reopen_count"], view["rating"]) == ("reopened", 1, "unsatisfied")
    assert view["holder"] == {"kind": "service", "id": "dispatch", "name": "reassignment"}

    published = await read_events(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_of(Producer.SUPERVISION),
        until=lambda evs: any(e.case_id == case_id and e.type == "case.reopened" for e in evs),
    )
    evaluated, reopening = [e for e in published if e.case_id == case_id and e.type not in CLOCK_TYPES][1:]
    assert reopening.causation_id == evaluated.event_id
    assert reopening.payload.model_dump() == {"reason": "灯还是不亮", "reopen_count": 1}


async def test_a_case_returned_twice_is_found_by_campaign_by_returns_and_by_its_assisting_unit(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    case_id, start = uuid.uuid4(), datetime.now(UTC)
    campaign = f"C-{uuid.uuid4().hex[:8]}"
    accepted = a_handled_case()[0].payload

    def returned(unit_id: str) -> CaseReturned:
        return CaseReturned(unit_id=unit_id, returned_by="h", reason="不归我们管")

    def assigned(unit_id: str, assisting: tuple[str, ...] = ()) -> CaseAssigned:
        return CaseAssigned(
            unit_id=unit_id,
            unit_name=unit_id,
            town_code="330110001",
            route=AssignmentRoute.RESPONSIBILITY_LIST,
            reason="r",
            assisting_unit_ids=assisting,
            fallback_owner=unit_id.startswith("T-"),
        )

    judged = CaseJudged(
        category="streetlight",
        risk_level=4,
        campaign_ids=(campaign,),
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        judged_by=JudgedBy.RULES,
        confidence=0.8,
    )
    assisting = f"U-{uuid.uuid4().hex[:8]}"
    payloads = [
        accepted,
        judged,
        assigned("U-A"),
        returned("U-A"),
        assigned("U-B"),
        returned("U-B"),
        assigned("T-1", (assisting,)),
    ]
    events = causal_chain(case_id, payloads, start, timedelta(seconds=1))
    await publish_to_their_topics(kafka_settings, events)
    await settled(supervision, events)

    for params in (
        {"campaign_id": campaign},
        {"campaign_id": campaign, "returned_more_than_once": "true"},
        {"unit_id": assisting},
    ):
        page = (await supervision.get("/v1/cases", params=params)).json()
        assert [item["case_id"] for item in page["items"]] == [str(case_id)], params
    none = await supervision.get("/v1/cases", params={"campaign_id": campaign, "returned_more_than_once": "false"})
    assert none.json()["total"] == 0
    view = (await supervision.get(f"/v1/cases/{case_id}")).json()
    assert (view["returns"], view["unit_id"], view["assisting_unit_ids"]) == (2, "T-1", [assisting])
    assert (view["fallback_owner"], view["route"], view["campaign_ids"]) == (True, "responsibility_list", [campaign])


async def test_a_duplicate_is_closed_with_its_original(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    original = a_handled_case()
    original_id, report = original[0].case_id, original[0].payload
    assert isinstance(report, CaseAccepted)
    duplicate_id = uuid.uuid4()
    linked = CaseLinkedAsDuplicate(
        **report.model_dump(exclude={"accepted_at", "case_no", "external_id"}),
        case_no=f"{report.case_no}D",
        external_id=f"{report.external_id}-again",
        original_case_id=original_id,
        original_case_no=report.case_no,
        similarity=0.9,
        reason="同一路段",
    )
    duplicate = causal_chain(duplicate_id, [linked], datetime.now(UTC), timedelta(seconds=1))
    await publish_to_their_topics(kafka_settings, [*original, *duplicate])
    await settled(supervision, original)
    await settled(supervision, duplicate)
    following = (await supervision.get(f"/v1/cases/{duplicate_id}")).json()
    assert following["status"] == "duplicate"
    assert following["duplicate_of"] == {"case_id": str(original_id), "case_no": report.case_no}
    assert following["holder"] == {"kind": "case", "id": str(original_id), "name": report.case_no}

    await supervision.post(f"/v1/cases/{original_id}/verification", json={"passed": True, "by": "sup-1"})
    await supervision.post(f"/v1/cases/{original_id}/evaluation", json={"rating": "satisfied"})

    closed = (await supervision.get(f"/v1/cases/{duplicate_id}")).json()
    assert (closed["status"], closed["closure_reason"]) == ("closed", "with_original_case")
    assert closed["closed_with_case_id"] == str(original_id)
    published = await read_events(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_of(Producer.SUPERVISION),
        until=lambda evs: any(e.case_id == duplicate_id for e in evs),
    )
    [closure] = [e for e in published if e.case_id == duplicate_id]
    original_closure = next(e for e in published if e.case_id == original_id and e.type == "case.closed")
    assert closure.causation_id == original_closure.event_id


@dataclass(frozen=True)
class Callback:
    idempotency_key: str | None
    event_type: str | None
    body: dict[str, Any]


@contextmanager
def a_source_system_that_fails_once() -> Iterator[tuple[str, list[Callback]]]:
    """A real HTTP callback on 127.0.0.1: 503 to the first POST, 200 to the others; keeps what it got."""
    received: list[Callback] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                received.append(
                    Callback(self.headers.get("Idempotency-Key"), self.headers.get("X-Caseloop-Event-Type"), body)
                )
                status = 503 if len(received) == 1 else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="source-system", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/caseloop/feedback", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_the_verified_result_reaches_the_source_system_after_a_failed_attempt(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    with a_source_system_that_fails_once() as (callback_url, received):
        events = a_handled_case(callback_url)
        case_id = events[0].case_id
        await publish_to_their_topics(kafka_settings, events)
        await settled(supervision, events)
        verified = await supervision.post(f"/v1/cases/{case_id}/verification", json={"passed": True, "by": "sup-1"})
        assert [f["state"] for f in verified.json()["feedback"]] == ["pending"]
        published = await read_events(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_of(Producer.SUPERVISION),
            until=lambda evs: any(e.case_id == case_id and e.type == "case.feedback_delivered" for e in evs),
        )

    feedback = [e for e in published if e.case_id == case_id and e.type.startswith("case.feedback_")]
    assert [e.type for e in feedback] == ["case.feedback_failed", "case.feedback_delivered"]
    failed, delivered = (e.payload for e in feedback)
    assert isinstance(failed, FeedbackFailed)
    assert isinstance(delivered, FeedbackDelivered)
    assert (failed.attempt, failed.error, failed.gave_up) == (1, "HTTP 503", False)
    assert (delivered.attempt, delivered.status_code, delivered.url) == (2, 200, callback_url)
    [verification] = [e for e in published if e.case_id == case_id and e.type == "case.verified"]
    assert len(received) == 2
    assert {r.idempotency_key for r in received} == {str(deterministic_id(verification.event_id, "feedback"))}
    assert {r.event_type for r in received} == {"case.verified"}
    assert received[1].body["status"] == "verified"
    assert received[1].body["result_summary"] == "已修复"
    view = (await supervision.get(f"/v1/cases/{case_id}")).json()
    assert [(f["state"], f["attempts"]) for f in view["feedback"]] == [("delivered", 2)]


async def test_the_service_closes_a_verified_case_nobody_evaluated_once_its_clock_passes_the_window(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    clock = ManualClock(datetime.now(UTC))
    settings = SupervisionSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path, timer_interval=0.1)
    async with serving(create_app(settings, kafka_settings, clock)) as supervision:
        events = a_handled_case()
        case_id = events[0].case_id
        await publish_to_their_topics(kafka_settings, events)
        await settled(supervision, events)
        await supervision.post(f"/v1/cases/{case_id}/verification", json={"passed": True, "by": "sup-1"})
        await asyncio.sleep(0.5)  # several rounds of the timer
        assert (await supervision.get(f"/v1/cases/{case_id}")).json()["status"] == "verified"

        clock.advance(settings.evaluation_window + timedelta(minutes=1))

        async def closed() -> bool:
            status: str = (await supervision.get(f"/v1/cases/{case_id}")).json()["status"]
            return status == "closed"

        await eventually(closed)
        assert (await supervision.get(f"/v1/cases/{case_id}")).json()["closure_reason"] == "no_evaluation_in_time"


async def test_supervision_commands_answer_404_409_and_422_naming_the_rule_or_the_field(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    unknown = uuid.uuid4()
    assert (await supervision.post(f"/v1/cases/{unknown}/urge", json={"by": "s", "note": "n"})).status_code == 404
    missing_note = await supervision.post(f"/v1/cases/{unknown}/urge", json={"by": "s"})
    assert missing_note.status_code == 422
    assert [e["field"] for e in missing_note.json()["errors"]] == ["body.note"]

    events = a_handled_case()
    case_id = events[0].case_id
    await publish_to_their_topics(kafka_settings, events)
    await settled(supervision, events)
    undecidable = await supervision.post(
        f"/v1/cases/{case_id}/extension/decision", json={"approved": True, "by": "sup-1"}
    )
    assert undecidable.status_code == 409
    assert undecidable.json()["rule"] == "NoExtensionPending"
    await supervision.post(f"/v1/cases/{case_id}/verification", json={"passed": True, "by": "sup-1"})
    await supervision.post(f"/v1/cases/{case_id}/evaluation", json={"rating": "satisfied"})
    too_late = await supervision.post(f"/v1/cases/{case_id}/urge", json={"by": "sup-1", "note": "快"})
    assert (too_late.status_code, too_late.json()["rule"]) == (409, "CaseNotOpen")

    body = {"mode": "emergency", "by": "c", "reason": "flood"}
    assert (await supervision.post("/v1/regions/999999999/mode", json=body)).status_code == 404
    assert (await supervision.post("/v1/regions/abc/mode", json=body)).status_code == 422
    wrong_mode = await supervision.post("/v1/regions/330110001/mode", json={**body, "mode": "war"})
    assert [e["field"] for e in wrong_mode.json()["errors"]] == ["body.mode"]
    current = (await supervision.get("/v1/regions/330110001/mode")).json()
    assert (current["mode"], current["region_level"]) == ("normal", "town")

    assert (await supervision.get("/v1/reports/daily")).status_code == 422
    today = (await supervision.get("/v1/reports/daily", params={"date": "2026-01-01"})).json()
    assert today["complete"] is True
    assert (await supervision.get("/v1/cases", params={"level": "galaxy"})).status_code == 422


async def test_a_daily_report_of_a_day_out_of_reach_is_bad_input_not_a_server_error(
    supervision: httpx.AsyncClient,
) -> None:
    # Found by Schemathesis: 9999-12-31 has no next day to end the report, and midnight of
    # 0001-01-01 in region time is before UTC's year 1 — both were 500s. A number was 1970-01-01.
    for day in ("9999-12-31", "0001-01-01", "0"):
        response = await supervision.get("/v1/reports/daily", params={"date": day})
        assert response.status_code == 422, (day, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == ["query.date"]
    assert (await supervision.get("/v1/reports/daily", params={"date": "2999-12-31"})).status_code == 200


async def timeline_of(client: httpx.AsyncClient, case_id: uuid.UUID, **params: str) -> dict[str, Any]:
    response = await client.get(f"/v1/cases/{case_id}/timeline", params=params)
    assert response.status_code == 200, response.text
    timeline: dict[str, Any] = response.json()
    return timeline


async def test_the_timeline_as_text_has_a_header_then_one_line_per_event_indented_by_its_cause(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    case_id, accepted = events[0].case_id, events[0].payload
    assert isinstance(accepted, CaseAccepted)
    await publish_to_their_topics(kafka_settings, events)

    async def every_event_and_clock_seen() -> bool:
        response = await supervision.get(f"/v1/cases/{case_id}/timeline")
        return response.status_code == 200 and len(response.json()["events"]) == len(events) + 4

    await eventually(every_event_and_clock_seen)
    timeline = await timeline_of(supervision, case_id)
    response = await supervision.get(f"/v1/cases/{case_id}/timeline", params={"format": "text"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    header, *lines = response.text.splitlines()
    assert header == f"case {accepted.case_no}  id {case_id}  status result_reported"
    for entry, line in zip(timeline["events"], lines, strict=False):
        at = datetime.fromisoformat(entry["occurred_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        indent = "  " * min(entry["depth"], 8)
        actor = f"{entry['actor']['id']}/{entry['actor']['role']}"
        assert line.startswith(
            f"{at}  {indent}{entry['type']}  {entry['producer']}  {actor}  {entry['event_id'][:8]}"
        ), line
    assert lines[len(timeline["events"])] == "stages"
    assert lines[-2].split() == ["verification", "open", "since", lines[-2].split()[-1]]
    assert lines[-1].startswith("  total")
    assert [s["stage"] for s in timeline["stages"]] == [
        "screening", "judgment", "assignment", "acknowledgement", "handling", "verification", "total"
    ]  # fmt: skip


async def test_as_of_a_time_the_case_and_its_timeline_are_as_its_events_had_made_them(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    # Dated an hour back, so every clock event supervision decides on reading them is later than
    # all of them: up to the acknowledgement, then the result once the clocks it set are in.
    payloads = [e.payload for e in a_handled_case()]
    up_to_acknowledgement = causal_chain(
        uuid.uuid4(), payloads[:4], datetime.now(UTC) - timedelta(hours=1), timedelta(minutes=10)
    )
    case_id, acknowledged = up_to_acknowledgement[0].case_id, up_to_acknowledgement[-1]
    await publish_to_their_topics(kafka_settings, up_to_acknowledgement)

    async def handling_clock_set() -> bool:
        response = await supervision.get(f"/v1/cases/{case_id}/timeline")
        return response.status_code == 200 and any(
            e["type"] == "case.deadline_set" and e["payload"]["clock"] == "handling" for e in response.json()["events"]
        )

    await eventually(handling_clock_set)
    midway = datetime.now(UTC)
    result = event_answering(
        acknowledged,
        payloads[4],
        actor=acknowledged.actor,
        occurred_at=midway + timedelta(seconds=1),
        correlation_id=uuid.uuid4(),
    )
    await publish_to_their_topics(kafka_settings, [result])
    await settled(supervision, [result])

    then = await timeline_of(supervision, case_id, as_of=midway.isoformat())
    assert then["status"] == "acknowledged"
    assert all(datetime.fromisoformat(e["occurred_at"]) <= midway for e in then["events"])
    assert [e["type"] for e in then["events"] if e["type"] not in CLOCK_TYPES] == [
        "case.accepted", "case.judged", "case.assigned", "case.acknowledged"
    ]  # fmt: skip
    now = await timeline_of(supervision, case_id)
    assert now["status"] == "result_reported"
    assert [e["event_id"] for e in now["events"] if datetime.fromisoformat(e["occurred_at"]) <= midway] == [
        e["event_id"] for e in then["events"]
    ]

    view = (await supervision.get(f"/v1/cases/{case_id}", params={"as_of": midway.isoformat()})).json()
    assert (view["status"], view["event_count"], view["result_summary"]) == ("acknowledged", len(then["events"]), None)
    deadline = view["deadline"]
    assert (deadline["clock"], deadline["counting"]) == ("handling", True)
    time_left = (datetime.fromisoformat(deadline["due_at"]) - midway).total_seconds()
    assert deadline["time_left_seconds"] == pytest.approx(time_left, abs=0.001)
    assert (await supervision.get(f"/v1/cases/{case_id}")).json()["status"] == "result_reported"


async def test_as_of_before_a_case_began_is_404_and_a_time_that_is_not_one_422_naming_it(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    case_id = events[0].case_id
    await publish_to_their_topics(kafka_settings, events)
    await settled(supervision, events)
    before = (events[0].occurred_at - timedelta(seconds=1)).isoformat()
    for path in (f"/v1/cases/{case_id}", f"/v1/cases/{case_id}/timeline"):
        assert (await supervision.get(path, params={"as_of": before})).status_code == 404, path
        for bad in ("not-a-time", "2026-11-27T09:00:00"):  # the second has no offset: which zone is it in?
            response = await supervision.get(path, params={"as_of": bad})
            assert response.status_code == 422, (path, bad)
            assert [e["field"] for e in response.json()["errors"]] == ["query.as_of"]
    wrong_format = await supervision.get(f"/v1/cases/{case_id}/timeline", params={"format": "xml"})
    assert [e["field"] for e in wrong_format.json()["errors"]] == ["query.format"]
