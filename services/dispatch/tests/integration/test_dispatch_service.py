"""dispatch against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from caseloop_dispatch.app import create_app
from caseloop_dispatch.config import DispatchSettings
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
)
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    Producer,
    deterministic_id,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.supervision import CaseReopened
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.testing.fixtures import DevelopmentCaller, publish, read_events

GRID = "3301100010010101"
TOWN = GRID[:9]
UNIT = "U-TRANSPORT"


def a_case_accepted(external_id: str) -> Envelope:
    case_id = uuid.uuid4()
    payload = CaseAccepted(
        case_no=f"CL20260302{uuid.uuid4().int % 10_000_000:07d}",
        source_system="hotline-12345",
        external_id=external_id,
        title="人行道塌陷",
        description="柳岸社区门口人行道塌了一个坑",
        location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=TOWN, district_code=GRID[:6]),
        accepted_at=datetime.now(UTC),
    )
    return new_event(
        payload,
        case_id=case_id,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        event_id=deterministic_id(case_id, "accepted"),
    )


def judged_as(accepted: Envelope, category: str) -> Envelope:
    payload = CaseJudged(
        category=category,
        risk_level=3,
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        judged_by=JudgedBy.RULES,
        confidence=0.95,
    )
    return event_caused_by(
        accepted,
        payload,
        actor=Actor.system(Producer.TRIAGE),
        occurred_at=accepted.occurred_at + timedelta(seconds=1),
        decision="judged",
    )


@pytest.fixture
async def dispatch(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(DispatchSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path), kafka_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, auth=DevelopmentCaller(), base_url="http://dispatch"
        ) as client:
            yield client


async def events_of(kafka: KafkaSettings, case_id: uuid.UUID, *types: type) -> list[Envelope]:
    """The case's events on the dispatch topic, once one of each of ``types`` is there."""

    def of_case(events: list[Envelope]) -> list[Envelope]:
        return [e for e in events if e.case_id == case_id]

    events = await read_events(
        kafka.kafka_bootstrap_servers,
        kafka.topic_of(Producer.DISPATCH),
        until=lambda evs: all(any(isinstance(e.payload, t) for e in of_case(evs)) for t in types),
    )
    return of_case(events)


async def a_road_damage_case_assigned(kafka: KafkaSettings, external_id: str) -> tuple[Envelope, Envelope, Envelope]:
    """A road-damage case in 白川街道, accepted by intake, judged by triage, assigned by dispatch."""
    accepted = a_case_accepted(external_id)
    judged = judged_as(accepted, "road_damage")
    await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(Producer.INTAKE), accepted)
    await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(Producer.TRIAGE), judged)
    [assigned] = await events_of(kafka, accepted.case_id, CaseAssigned)
    return accepted, judged, assigned


async def test_a_judged_case_is_assigned_by_the_responsibility_list_because_of_its_judgment(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, judged, assigned = await a_road_damage_case_assigned(kafka_settings, "DSP-ASSIGN-1")

    assert isinstance(assigned.payload, CaseAssigned)
    assert assigned.payload.unit_id == UNIT
    assert assigned.payload.route is AssignmentRoute.RESPONSIBILITY_LIST
    assert assigned.causation_id == judged.event_id
    assert assigned.correlation_id == accepted.correlation_id

    view = (await dispatch.get(f"/v1/cases/{accepted.case_id}/assignment")).json()
    assert view["unit_id"] == UNIT
    assert view["status"] == "assigned"
    assert isinstance(accepted.payload, CaseAccepted)
    assert view["case_no"] == accepted.payload.case_no
    assert view["category"] == "road_damage"


async def test_a_judgment_read_before_its_case_still_gives_the_one_assignment(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted = a_case_accepted("DSP-ORDER-1")
    judged = judged_as(accepted, "community_governance")
    await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(Producer.TRIAGE), judged)
    await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(Producer.INTAKE), accepted)

    [assigned] = await events_of(kafka_settings, accepted.case_id, CaseAssigned)

    assert assigned.event_id == deterministic_id(judged.event_id, "assigned")
    assert isinstance(assigned.payload, CaseAssigned)
    assert assigned.payload.unit_id == f"U-TOWN-{TOWN}"
    assert assigned.payload.route is AssignmentRoute.TOWN_FALLBACK


async def test_the_assigned_unit_acknowledges_and_reports_the_result_over_http(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _, assigned = await a_road_damage_case_assigned(kafka_settings, "DSP-LOOP-1")
    case_id = accepted.case_id
    request_id = uuid.uuid4()

    acknowledged = await dispatch.post(
        f"/v1/cases/{case_id}/acknowledge",
        json={"unit_id": UNIT, "by": "wang.wei"},
        headers={"X-Correlation-ID": str(request_id)},
    )
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["status"] == "acknowledged"
    assert acknowledged.json()["acknowledged_at"] is not None

    reported = await dispatch.post(
        f"/v1/cases/{case_id}/result",
        json={"unit_id": UNIT, "by": "wang.wei", "summary": "坑已填平", "evidence": ["https://e.example/after.jpg"]},
    )
    assert reported.status_code == 200, reported.text
    assert reported.json()["status"] == "result_reported"

    events = await events_of(kafka_settings, case_id, CaseAcknowledged, CaseResultReported)
    [acknowledgement] = [e for e in events if isinstance(e.payload, CaseAcknowledged)]
    [result] = [e for e in events if isinstance(e.payload, CaseResultReported)]
    assert acknowledgement.causation_id == assigned.event_id
    assert acknowledgement.correlation_id == request_id
    assert acknowledgement.actor == Actor(id="wang.wei", role=ActorRole.UNIT, unit_id=UNIT, subject=f"dev:unit:{UNIT}")
    assert result.causation_id == acknowledgement.event_id
    assert isinstance(result.payload, CaseResultReported)
    assert result.payload.evidence == ("https://e.example/after.jpg",)


async def test_another_unit_acknowledging_is_forbidden_with_a_problem_naming_the_unit(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _, _ = await a_road_damage_case_assigned(kafka_settings, "DSP-WRONG-1")

    response = await dispatch.post(
        f"/v1/cases/{accepted.case_id}/acknowledge", json={"unit_id": "U-POLICE", "by": "zhao.lei"}
    )

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "U-POLICE" in response.json()["detail"]
    assert (await dispatch.get(f"/v1/cases/{accepted.case_id}/assignment")).json()["status"] == "assigned"


async def test_a_result_before_acknowledgement_gets_a_409(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _, _ = await a_road_damage_case_assigned(kafka_settings, "DSP-EARLY-1")

    response = await dispatch.post(
        f"/v1/cases/{accepted.case_id}/result", json={"unit_id": UNIT, "by": "wang.wei", "summary": "已处理"}
    )

    assert response.status_code == 409
    assert response.json()["rule"] == "NotAcknowledged"


async def test_the_units_inbox_lists_the_case_by_status(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _, _ = await a_road_damage_case_assigned(kafka_settings, "DSP-INBOX-1")

    inbox = (await dispatch.get(f"/v1/units/{UNIT}/cases")).json()
    awaiting = (await dispatch.get(f"/v1/units/{UNIT}/cases", params={"status": "assigned"})).json()
    signed = (await dispatch.get(f"/v1/units/{UNIT}/cases", params={"status": "acknowledged"})).json()

    assert [item["case_id"] for item in inbox["items"]] == [str(accepted.case_id)]
    assert inbox["total"] == 1
    assert awaiting["total"] == 1
    assert signed["total"] == 0


async def test_unknown_units_and_cases_are_named_in_the_error(dispatch: httpx.AsyncClient) -> None:
    unknown_inbox = await dispatch.get("/v1/units/U-NOBODY/cases")
    unknown_actor = await dispatch.post(
        f"/v1/cases/{uuid.uuid4()}/acknowledge", json={"unit_id": "U-NOBODY", "by": "wang.wei"}
    )
    unknown_case = await dispatch.post(
        f"/v1/cases/{uuid.uuid4()}/acknowledge", json={"unit_id": UNIT, "by": "wang.wei"}
    )
    no_assignment = await dispatch.get(f"/v1/cases/{uuid.uuid4()}/assignment")

    assert unknown_inbox.status_code == 404
    # A unit acts only on cases assigned to it: for a case dispatch does not know, that is a 404
    # whatever unit asks.
    assert unknown_actor.status_code == 404
    assert unknown_case.status_code == 404
    assert no_assignment.status_code == 404


async def test_command_bodies_are_checked_field_by_field(dispatch: httpx.AsyncClient) -> None:
    response = await dispatch.post(
        f"/v1/cases/{uuid.uuid4()}/result",
        json={"unit_id": UNIT, "by": "", "summary": "x" * 5001, "evidence": ["e"] * 21, "extra": 1},
    )

    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.by", "body.summary", "body.evidence", "body.extra"} <= fields


async def test_the_units_and_their_responsibility_lists_are_listed(dispatch: httpx.AsyncClient) -> None:
    units = {unit["unit_id"]: unit for unit in (await dispatch.get("/v1/units")).json()}

    assert units[UNIT]["area_towns"] == "all"
    assert "road_damage" in units[UNIT]["categories"]
    assert units[f"U-TOWN-{TOWN}"]["area_towns"] == [TOWN]
    assert units[f"U-TOWN-{TOWN}"]["kind"] == "town_government"


async def test_a_returned_case_is_rerouted_then_the_fallback_owner_cannot_return_it_and_409_changes_nothing(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _judged, _assigned = await a_road_damage_case_assigned(kafka_settings, "DSP-RETURN-1")
    case = accepted.case_id

    returned = await dispatch.post(
        f"/v1/cases/{case}/return", json={"unit_id": UNIT, "by": "wang.wei", "reason": "不属于本单位职责"}
    )
    assert returned.status_code == 200, returned.text
    view = returned.json()
    # Only one department answers for road damage here: the town government takes it at once.
    assert view["unit_id"] == f"U-TOWN-{TOWN}"
    assert view["fallback_owner"] is True
    assert view["returns"] == 1
    assert view["returned_by"] == [UNIT]

    refused = await dispatch.post(
        f"/v1/cases/{case}/return", json={"unit_id": f"U-TOWN-{TOWN}", "by": "zhao", "reason": "也不归我们"}
    )
    assert refused.status_code == 409
    assert refused.json()["rule"] == "FallbackOwnerCannotReturn"
    assert (await dispatch.get(f"/v1/cases/{case}/assignment")).json() == view

    events = await events_of(kafka_settings, case, CaseReturned)
    assert [type(e.payload).__name__ for e in events] == ["CaseAssigned", "CaseReturned", "CaseAssigned"]
    assert events[2].causation_id == events[1].event_id


async def test_a_transfer_and_a_joint_assignment_over_http_show_in_the_inboxes(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _judged, _assigned = await a_road_damage_case_assigned(kafka_settings, "DSP-TRANSFER-1")
    case = accepted.case_id

    transferred = await dispatch.post(
        f"/v1/cases/{case}/transfer",
        json={"unit_id": UNIT, "by": "wang.wei", "to_unit_id": "U-HOUSING", "reason": "房屋结构问题"},
    )
    assert transferred.status_code == 200, transferred.text
    assert transferred.json()["unit_id"] == "U-HOUSING"
    assert transferred.json()["route"] == "transfer"

    joint = await dispatch.post(
        f"/v1/cases/{case}/assignment",
        json={"lead_unit_id": "U-HOUSING", "assisting_unit_ids": [UNIT], "by": "dispatcher-1", "reason": "联合处置"},
    )
    assert joint.status_code == 200, joint.text
    assert joint.json()["assisting_unit_ids"] == [UNIT]
    assisting_inbox = (await dispatch.get(f"/v1/units/{UNIT}/cases")).json()
    assert str(case) in [item["case_id"] for item in assisting_inbox["items"]]

    to_itself = await dispatch.post(
        f"/v1/cases/{case}/transfer",
        json={"unit_id": "U-HOUSING", "by": "li", "to_unit_id": "U-HOUSING", "reason": "x"},
    )
    assert to_itself.status_code == 409
    assert to_itself.json()["rule"] == "TransferTargetRefused"
    unknown = await dispatch.post(
        f"/v1/cases/{case}/transfer",
        json={"unit_id": "U-HOUSING", "by": "li", "to_unit_id": "U-NOWHERE", "reason": "x"},
    )
    assert unknown.status_code == 422
    assert "to_unit_id" in unknown.text


async def test_a_reopened_case_read_from_supervision_goes_back_to_its_unit(
    dispatch: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    accepted, _judged, assigned = await a_road_damage_case_assigned(kafka_settings, "DSP-REOPEN-1")
    reopened = event_caused_by(
        assigned,
        CaseReopened(reason="市民不满意", reopen_count=1),
        actor=Actor.system(Producer.SUPERVISION),
        occurred_at=datetime.now(UTC),
        decision="reopened",
    )
    await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(Producer.SUPERVISION), reopened)

    events = [
        e
        for e in await read_events(
            kafka_settings.kafka_bootstrap_servers,
            kafka_settings.topic_of(Producer.DISPATCH),
            until=lambda evs: sum(1 for e in evs if e.case_id == accepted.case_id) >= 2,
        )
        if e.case_id == accepted.case_id
    ]
    again = events[-1]
    assert isinstance(again.payload, CaseAssigned)
    assert again.payload.route is AssignmentRoute.REOPENED
    assert again.payload.unit_id == UNIT
    assert again.causation_id == reopened.event_id
