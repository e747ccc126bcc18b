"""intake against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from caseloop_events.contracts.intake import CaseAccepted
from caseloop_events.envelope import Producer
from caseloop_events.kafka import KafkaSettings
from caseloop_events.testing import read_events
from caseloop_intake.app import create_app
from caseloop_intake.config import IntakeSettings

GRID = "3301100010010101"


def a_report(external_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_system": "hotline-12345",
        "external_id": external_id,
        "title": "小区门口垃圾堆积",
        "description": "垃圾三天没人清运，气味很大",
        "location": {"grid_code": GRID, "address": "柳岸社区3号楼"},
        "reporter": {"name": "张三", "phone": "13800000000"},
    }
    body.update(overrides)
    return body


@pytest.fixture
async def intake(database_url: str, kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(IntakeSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path), kafka_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client


async def test_an_accepted_case_is_published_on_the_intake_topic(
    intake: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    response = await intake.post("/v1/cases", json=a_report("INT-PUB-1"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "accepted"
    assert created["case_no"].startswith("CL")

    events = await read_events(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.topic_of(Producer.INTAKE),
        until=lambda evs: any(str(e.case_id) == created["case_id"] for e in evs),
    )
    mine = [e for e in events if str(e.case_id) == created["case_id"]]
    assert len(mine) == 1
    assert isinstance(mine[0].payload, CaseAccepted)
    assert mine[0].payload.location.town_code == GRID[:9]
    assert mine[0].payload.case_no == created["case_no"]


async def test_the_same_external_id_sent_concurrently_gives_one_case(intake: httpx.AsyncClient) -> None:
    report = a_report("INT-DUP-1")
    responses = await asyncio.gather(*(intake.post("/v1/cases", json=report) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["case_id"] for r in responses}) == 1
    assert len({r.json()["case_no"] for r in responses}) == 1


async def test_what_intake_holds_is_readable_by_case_id(intake: httpx.AsyncClient) -> None:
    created = (await intake.post("/v1/cases", json=a_report("INT-READ-1"))).json()
    case = (await intake.get(f"/v1/cases/{created['case_id']}")).json()
    assert case["case_no"] == created["case_no"]
    assert case["location"]["grid_code"] == GRID
    assert case["reporter"]["phone"] == "13800000000"


async def test_an_unknown_grid_code_is_bad_input_naming_the_field(intake: httpx.AsyncClient) -> None:
    response = await intake.post("/v1/cases", json=a_report("INT-BAD-1", location={"grid_code": "9999999999999999"}))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["location.grid_code"]


async def test_missing_and_malformed_fields_are_each_reported(intake: httpx.AsyncClient) -> None:
    body = a_report("INT-BAD-2", title="", attachments=["not a url"])
    del body["description"]
    response = await intake.post("/v1/cases", json=body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.title", "body.description", "body.attachments.0"} <= fields


async def test_an_unknown_case_is_404(intake: httpx.AsyncClient) -> None:
    response = await intake.get("/v1/cases/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404


async def test_grids_can_be_found_by_town_and_name(intake: httpx.AsyncClient) -> None:
    page = (await intake.get("/v1/grids", params={"town_code": GRID[:9], "limit": 5})).json()
    assert page["total"] > 5
    assert len(page["items"]) == 5
    assert all(item["town_code"] == GRID[:9] for item in page["items"])
    assert page["items"][0]["district_code"] == GRID[:6]


async def test_control_characters_in_text_are_bad_input_not_a_server_error(intake: httpx.AsyncClient) -> None:
    response = await intake.post("/v1/cases", json=a_report("INT-NUL-1", title="a\u0000b"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.title"]


async def test_unknown_fields_are_refused(intake: httpx.AsyncClient) -> None:
    response = await intake.post("/v1/cases", json=a_report("INT-EXTRA-1", priority="high"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.priority"]
