"""supervision against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.envelope import Envelope, EventPayload, Producer
from caseloop_events.kafka import KafkaSettings
from caseloop_events.testing import causal_chain, eventually, publish, read_events
from caseloop_supervision.app import create_app
from caseloop_supervision.config import SupervisionSettings


@pytest.fixture
async def supervision(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        SupervisionSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path), kafka_settings
    )
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        yield client


def a_handled_case() -> list[Envelope]:
    """One case's events up to the unit's reported result, each caused by the one before."""
    case_id, start = uuid.uuid4(), datetime.now(UTC)
    payloads: list[EventPayload] = [
        CaseAccepted(
            case_no=f"CL20261127{uuid.uuid4().int % 10**7:07d}",
            source_system="hotline-12345",
            external_id=str(case_id),
            title="路灯不亮",
            description="整条路的路灯都不亮",
            location=CaseLocation(
                grid_code="3301100010010101", village_code="330110001001", town_code="330110001", district_code="330110"
            ),
            accepted_at=start,
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
        return response.status_code == 200 and response.json()["event_count"] == len(events)

    await eventually(every_event_seen)
    case = (await supervision.get(f"/v1/cases/{case_id}")).json()
    assert case["status"] == "result_reported"
    assert case["holder"] == {"kind": "service", "id": "supervision", "name": "verification"}
    assert case["unit_id"] == "U-X"

    verified = await supervision.post(f"/v1/cases/{case_id}/verification", json={"passed": True, "by": "sup-1"})
    assert verified.json()["status"] == "verified"
    closed = await supervision.post(f"/v1/cases/{case_id}/evaluation", json={"rating": "basically_satisfied"})
    assert closed.json()["status"] == "closed"

    timeline = (await supervision.get(f"/v1/cases/{case_id}/timeline")).json()
    types = [e["type"] for e in timeline["events"]]
    assert types == [e.type for e in events] + ["case.verified", "case.evaluated", "case.closed"]

    published = await read_events(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_of(Producer.SUPERVISION),
        until=lambda evs: sum(e.case_id == case_id for e in evs) >= 3,
    )
    assert [e.type for e in published if e.case_id == case_id] == ["case.verified", "case.evaluated", "case.closed"]


async def test_the_case_list_filters_by_status_town_and_unit(
    supervision: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    events = a_handled_case()
    await publish_to_their_topics(kafka_settings, events)

    async def listed() -> bool:
        page = (
            await supervision.get("/v1/cases", params={"status": "result_reported", "town_code": "330110001"})
        ).json()
        return any(item["case_id"] == str(events[0].case_id) for item in page["items"])

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
