"""What the hot HTTP commands cost in round trips to PostgreSQL, counted (issue 16: at most three
each, the commit included). Each service is composed on its own database and asked over HTTP, not
started: no relay, consumer or timer makes round trips of its own while one is counted. The events
a command acts on are handed to the service as its consumer would hand them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from caseloop_dispatch.app import create_app as dispatch_app
from caseloop_dispatch.config import DispatchSettings
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.envelope import Envelope, EventPayload
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.consumer import Incoming
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import Service
from caseloop_events.testing.fixtures import causal_chain, create_postgres_database, drop_postgres_database
from caseloop_intake.app import create_app as intake_app
from caseloop_intake.config import IntakeSettings
from caseloop_supervision.app import create_app as supervision_app
from caseloop_supervision.config import SupervisionSettings

pytestmark = pytest.mark.postgres

#: The most a hot command may cost, its commit included.
AT_MOST = 3
GRID = "3301100010010101"
LOCATION = CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6])


class Composed:
    """A service's app on a database of its own, and a way to count what a request costs."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.service: Service[Any, Any, Any] = app.state.service
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")

    async def round_trips_of(self, method: str, path: str, key: str, **kwargs: Any) -> tuple[int, httpx.Response]:
        before = self.service.database.round_trips
        response = await self.client.request(
            method, path, headers={"X-API-Key": key, **kwargs.pop("headers", {})}, **kwargs
        )
        return self.service.database.round_trips - before, response

    async def take(self, *events: Envelope) -> None:
        """The events as one poll of the service's consumer (those of types it reads)."""
        wanted = [
            Incoming("log", 0, n, e, e.model_dump_json()) for n, e in enumerate(events) if self.service.wants(e.type)
        ]
        await self.service.take(wanted, [])


@pytest.fixture
async def on_postgresql(postgres_admin_url: str, tmp_path: Path) -> AsyncIterator[list[str]]:
    """Three fresh PostgreSQL databases, dropped afterwards."""
    urls = [await create_postgres_database(postgres_admin_url, "caseloop_trips") for _ in range(3)]
    try:
        yield urls
    finally:
        for url in urls:
            await drop_postgres_database(postgres_admin_url, url)


@pytest.fixture
async def services(on_postgresql: list[str], tmp_path: Path) -> AsyncIterator[dict[str, Composed]]:
    kafka = KafkaSettings(caseloop_topic_namespace=f"test-{uuid.uuid4().hex[:12]}")
    intake_url, dispatch_url, supervision_url = on_postgresql
    composed = {
        "intake": Composed(intake_app(IntakeSettings(database_url=intake_url, CASELOOP_DATA_DIR=tmp_path), kafka)),
        "dispatch": Composed(
            dispatch_app(DispatchSettings(database_url=dispatch_url, CASELOOP_DATA_DIR=tmp_path), kafka)
        ),
        "supervision": Composed(
            supervision_app(SupervisionSettings(database_url=supervision_url, CASELOOP_DATA_DIR=tmp_path), kafka)
        ),
    }
    for service in composed.values():
        await service.service.database.create_schema()
    try:
        yield composed
    finally:
        for service in composed.values():
            await service.client.aclose()
            await service.service.database.dispose()


def a_report(external_id: str) -> dict[str, Any]:
    return {
        "source_system": "hotline-12345",
        "external_id": external_id,
        "title": f"路灯不亮 {external_id}",
        "description": f"整条路的路灯都不亮，{external_id}",
        "location": {"grid_code": GRID},
    }


def a_case_up_to(*payloads: EventPayload) -> list[Envelope]:
    accepted = CaseAccepted(
        case_no=f"CL20261204{uuid.uuid4().int % 10**7:07d}",
        source_system="hotline-12345",
        external_id=str(uuid.uuid4()),
        title="路灯不亮",
        description="整条路的路灯都不亮",
        location=LOCATION,
        accepted_at=datetime.now(UTC),
    )
    judged = CaseJudged(
        category="streetlight",
        risk_level=2,
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        judged_by=JudgedBy.RULES,
        confidence=0.9,
    )
    start = datetime.now(UTC) - timedelta(minutes=10)
    return causal_chain(uuid.uuid4(), [accepted, judged, *payloads], start, timedelta(seconds=30))


ASSIGNED = CaseAssigned(
    unit_id="U-STREETLIGHT",
    unit_name="路灯所",
    town_code=GRID[:9],
    route=AssignmentRoute.RESPONSIBILITY_LIST,
    reason="r",
)


async def test_a_report_is_two_round_trips_and_three_with_an_idempotency_key(services: dict[str, Composed]) -> None:
    intake = services["intake"]
    key = "dev:source_system:hotline-12345"
    await intake.round_trips_of("POST", "/v1/cases", key, json=a_report("WARM-1"))  # prepares the statements

    trips, response = await intake.round_trips_of("POST", "/v1/cases", key, json=a_report("TRIPS-1"))
    assert response.status_code == 201, response.text
    assert trips == 2, "what screening reads (streams, open cases of the grid, the number), then the write"

    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    trips, response = await intake.round_trips_of("POST", "/v1/cases", key, json=a_report("TRIPS-2"), headers=headers)
    assert response.status_code == 201, response.text
    assert trips <= AT_MOST, "the key is claimed with the read; its answer stored after the write"


async def test_a_units_acknowledgement_and_result_are_at_most_three_round_trips_each(
    services: dict[str, Composed],
) -> None:
    dispatch = services["dispatch"]
    events = a_case_up_to()
    await dispatch.take(*events)
    case_id = events[0].case_id
    assignment = await dispatch.client.get(f"/v1/cases/{case_id}/assignment", headers={"X-API-Key": "dev:supervisor"})
    unit = assignment.json()["unit_id"]
    key = f"dev:unit:{unit}"

    trips, response = await dispatch.round_trips_of(
        "POST", f"/v1/cases/{case_id}/acknowledge", key, json={"unit_id": unit, "by": "wang.wei"}
    )
    assert response.status_code == 200, response.text
    assert trips <= AT_MOST
    trips, response = await dispatch.round_trips_of(
        "POST", f"/v1/cases/{case_id}/result", key, json={"unit_id": unit, "by": "wang.wei", "summary": "修好了"}
    )
    assert response.status_code == 200, response.text
    assert trips <= AT_MOST


async def test_a_verification_and_an_evaluation_are_at_most_three_round_trips_each(
    services: dict[str, Composed],
) -> None:
    supervision = services["supervision"]
    events = a_case_up_to(
        ASSIGNED,
        CaseAcknowledged(unit_id=ASSIGNED.unit_id, acknowledged_by="wang.wei"),
        CaseResultReported(unit_id=ASSIGNED.unit_id, reported_by="wang.wei", summary="修好了"),
    )
    await supervision.take(*events)
    case_id = events[0].case_id
    key = "dev:supervisor"

    trips, response = await supervision.round_trips_of(
        "POST", f"/v1/cases/{case_id}/verification", key, json={"passed": True, "by": "li.na"}
    )
    assert response.status_code == 200, response.text
    assert trips <= AT_MOST
    trips, response = await supervision.round_trips_of(
        "POST", f"/v1/cases/{case_id}/evaluation", key, json={"rating": "satisfied"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "closed"
    assert trips <= AT_MOST, "the cases that follow it read, then the write"
