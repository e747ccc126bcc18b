"""triage against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from caseloop_events.clock import ManualClock
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.envelope import Actor, ActorRole, Envelope, Producer, new_event
from caseloop_events.kafka import KafkaSettings
from caseloop_events.runtime import ServiceRuntime
from caseloop_events.testing import eventually, publish, read_events, read_topic
from caseloop_triage.app import create_app
from caseloop_triage.config import TriageSettings

GRID = "3301100010010101"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Triage:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    kafka: KafkaSettings

    async def accept(self, *events: Envelope, raw: bytes | None = None) -> None:
        await publish(self.kafka.kafka_bootstrap_servers, self.kafka.topic_of(Producer.INTAKE), *events, raw=raw)

    async def judgments_of(self, case_id: uuid.UUID) -> list[Envelope]:
        """The triage topic's judgments of the case, once it holds at least one."""
        events = await read_events(
            self.kafka.kafka_bootstrap_servers,
            self.kafka.topic_of(Producer.TRIAGE),
            until=lambda evs: any(_judges(e, case_id) for e in evs),
        )
        return [e for e in events if _judges(e, case_id)]

    def consumed(self, producer: Producer) -> int:
        """Records of the producer's topic the consumer has passed."""
        assert self.runtime.consumer is not None
        topic = self.kafka.topic_of(producer)
        return sum(offset for tp, offset in self.runtime.consumer.positions.items() if tp.topic == topic)

    async def all_published(self) -> bool:
        return self.runtime.relay is not None and await self.runtime.relay.pending() == 0


def _judges(event: Envelope, case_id: uuid.UUID) -> bool:
    return event.case_id == case_id and isinstance(event.payload, CaseJudged)


def an_accepted_case(title: str = "小区门口垃圾堆积", description: str = "垃圾三天没人清运，气味很大") -> Envelope:
    case_id = uuid.uuid4()
    return new_event(
        CaseAccepted(
            case_no="CL202603020000001",
            source_system="hotline-12345",
            external_id=f"HL-{case_id.hex[:8]}",
            title=title,
            description=description,
            location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
            accepted_at=NOW,
        ),
        case_id=case_id,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


@pytest.fixture
async def triage(database_url: str, kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[Triage]:
    app: FastAPI = create_app(
        TriageSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path), kafka_settings, ManualClock(NOW)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://triage") as client:
            yield Triage(client, app.state.runtime, kafka_settings)


async def test_an_accepted_case_is_judged_on_the_triage_topic(triage: Triage) -> None:
    accepted = an_accepted_case()
    await triage.accept(accepted)

    [judged] = await triage.judgments_of(accepted.case_id)

    assert judged.causation_id == accepted.event_id
    assert judged.correlation_id == accepted.correlation_id
    assert judged.producer is Producer.TRIAGE
    assert isinstance(judged.payload, CaseJudged)
    assert judged.payload.category == "sanitation"


async def test_the_judgment_of_a_case_is_readable_by_case_id(triage: Triage) -> None:
    accepted = an_accepted_case("楼下垃圾堆着火了", "火势不大")
    await triage.accept(accepted)
    [judged] = await triage.judgments_of(accepted.case_id)

    response = await triage.client.get(f"/v1/cases/{accepted.case_id}/judgment")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "case_id": str(accepted.case_id),
        "category": "sanitation",
        "category_name": "环境卫生",
        "risk_level": 1,
        "campaign_ids": [],
        "handling_level": "grid",
        "sla_tier": "emergency",
        "rules_fired": [
            {"rule_id": "R-ESC-FIRE", "reason": "明火或冒烟一律按紧急处置"},
            {"rule_id": "R-KW-SANITATION", "reason": "关键词判定为环境卫生"},
        ],
        "judged_by": "rules",
        "confidence": 0.8,
        "judged_at": NOW.isoformat().replace("+00:00", "Z"),
        "event_id": str(judged.event_id),
    }


async def test_a_case_triage_has_not_judged_is_404(triage: Triage) -> None:
    response = await triage.client.get(f"/v1/cases/{uuid.uuid4()}/judgment")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_same_accepted_event_delivered_twice_is_judged_once(triage: Triage) -> None:
    accepted = an_accepted_case()

    await triage.accept(accepted, accepted)
    await eventually(lambda: triage.consumed(Producer.INTAKE) >= 2)
    await eventually(triage.all_published)

    assert len(await triage.judgments_of(accepted.case_id)) == 1


async def test_a_poison_message_is_dead_lettered_and_later_cases_are_still_judged(triage: Triage) -> None:
    kafka = triage.kafka
    await triage.accept(raw=b"not json")

    [letter] = await read_topic(
        kafka.kafka_bootstrap_servers, kafka.deadletter_topic, until=lambda values: len(values) >= 1
    )
    dead = json.loads(letter)
    assert dead["origin"]["topic"] == kafka.topic_of(Producer.INTAKE)
    assert base64.b64decode(dead["value_b64"]) == b"not json"
    assert dead["error"].startswith("undecodable event")

    accepted = an_accepted_case()
    await triage.accept(accepted)
    assert len(await triage.judgments_of(accepted.case_id)) == 1
