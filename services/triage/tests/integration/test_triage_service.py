"""triage against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    EventPayload,
    Producer,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CaseRejected,
    CaseReport,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
)
from caseloop_events.contracts.supervision import CaseClosed, CaseVerified, ClosureReason
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import Service
from caseloop_events.testing.fixtures import DevelopmentCaller, eventually, publish, read_events, read_topic
from caseloop_triage.app import create_app
from caseloop_triage.config import TriageSettings

GRID = "3301100010010101"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Triage:
    client: httpx.AsyncClient
    runtime: Service[Any, Any, Any]
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

    async def supervision_says(self, *events: Envelope) -> None:
        await publish(self.kafka.kafka_bootstrap_servers, self.kafka.topic_of(Producer.SUPERVISION), *events)

    async def triage_events_of(self, case_id: uuid.UUID, at_least: int = 1) -> list[Envelope]:
        """The triage topic's events of the case, once every event triage emitted is published."""
        await eventually(self.all_published)
        events = await read_events(
            self.kafka.kafka_bootstrap_servers,
            self.kafka.topic_of(Producer.TRIAGE),
            until=lambda evs: sum(e.case_id == case_id for e in evs) >= at_least,
        )
        return [e for e in events if e.case_id == case_id]

    async def queue(self, **params: Any) -> dict[str, Any]:
        response = await self.client.get("/v1/review-queue", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    async def queued(self, *cases: Envelope) -> None:
        """Wait until each case is in the review queue."""
        wanted = {str(case.case_id) for case in cases}

        async def all_there() -> bool:
            return wanted <= {item["case_id"] for item in (await self.queue(limit=200))["items"]}

        await eventually(all_there)

    async def judge(self, case_id: uuid.UUID, **body: Any) -> httpx.Response:
        return await self.client.post(f"/v1/cases/{case_id}/judgment", json={"by": "zhao.lei", **body})

    async def recorded_types(self, case_id: uuid.UUID) -> list[str]:
        table = self.runtime.database.tables.case_events
        async with self.runtime.database.reading() as session:
            rows = await session.execute(select(table.c.type).where(table.c.case_id == str(case_id)))
            return sorted(row.type for row in rows)


def _judges(event: Envelope, case_id: uuid.UUID) -> bool:
    return event.case_id == case_id and isinstance(event.payload, CaseJudged)


def an_accepted_case(
    title: str = "小区门口垃圾堆积", description: str = "垃圾三天没人清运，气味很大", at: datetime = NOW
) -> Envelope:
    case_id = uuid.uuid4()
    return new_event(
        CaseAccepted(
            case_no="CL202603020000001",
            source_system="hotline-12345",
            external_id=f"HL-{case_id.hex[:8]}",
            title=title,
            description=description,
            location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
            accepted_at=at,
        ),
        case_id=case_id,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=at,
        correlation_id=uuid.uuid4(),
    )


UNCLEAR = ("水管漏了", "楼下水管一直在漏")


def an_unclear_case(at: datetime = NOW) -> Envelope:
    """A report no rule names a category for: it goes to the review queue."""
    return an_accepted_case(*UNCLEAR, at=at)


def after(cause: Envelope, payload: EventPayload, minutes: int = 5) -> Envelope:
    return event_caused_by(
        cause,
        payload,
        actor=Actor.system(payload.producer),
        occurred_at=cause.occurred_at + timedelta(minutes=minutes),
        decision=payload.event_type,
    )


@pytest.fixture
async def triage(database_url: str, kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[Triage]:
    app: FastAPI = create_app(
        TriageSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path), kafka_settings, ManualClock(NOW)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, auth=DevelopmentCaller(), base_url="http://triage") as client:
            triage = Triage(client, app.state.service, kafka_settings)
            yield triage
            # Stop only once the relay is idle: on Python 3.11 its asyncio.wait_for swallows a
            # cancellation that lands just after a commit woke it, and the shutdown never ends.
            await eventually(triage.all_published)


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
        "judged_by_id": "caseloop-triage",
        "confidence": 0.8,
        "judged_at": NOW.isoformat().replace("+00:00", "Z"),
        "event_id": str(judged.event_id),
        "supersedes_event_id": None,
        "rejudgment_reason": None,
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


# The review queue


async def test_a_case_the_rules_cannot_judge_waits_for_an_officer_instead_of_being_judged(triage: Triage) -> None:
    accepted = an_unclear_case()
    await triage.accept(accepted)

    [queued] = await triage.triage_events_of(accepted.case_id)

    assert isinstance(queued.payload, CaseQueuedForReview)
    assert queued.causation_id == accepted.event_id
    await triage.queued(accepted)
    [item] = (await triage.queue())["items"]
    assert item["case_id"] == str(accepted.case_id)
    assert item["case_no"] == "CL202603020000001"
    assert (item["title"], item["description"]) == UNCLEAR
    assert (item["grid_code"], item["town_code"]) == (GRID, GRID[:9])
    assert item["reason"] == queued.payload.reason
    assert "water_supply" in item["candidate_categories"]
    assert item["queued_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert (await triage.client.get(f"/v1/cases/{accepted.case_id}/judgment")).status_code == 404


async def test_the_review_queue_lists_the_longest_waiting_first_a_page_at_a_time(triage: Triage) -> None:
    cases = [an_unclear_case(at=NOW + timedelta(minutes=n)) for n in range(3)]
    await triage.accept(*reversed(cases))
    await triage.queued(*cases)

    page = await triage.queue(limit=2, offset=1)

    assert page["total"] == 3
    assert (page["limit"], page["offset"]) == (2, 1)
    assert [item["case_id"] for item in page["items"]] == [str(c.case_id) for c in cases[1:]]
    assert (await triage.client.get("/v1/review-queue", params={"offset": -1})).status_code == 422


# An officer's judgment


async def test_an_officer_judges_a_queued_case_and_it_leaves_the_queue(triage: Triage) -> None:
    accepted = an_unclear_case()
    await triage.accept(accepted)
    await triage.queued(accepted)

    response = await triage.judge(accepted.case_id, category="water_supply", reason="楼内供水管漏水")

    assert response.status_code == 200, response.text
    judgment = response.json()
    assert judgment["category"] == "water_supply"
    assert judgment["judged_by"] == "officer"
    assert judgment["judged_by_id"] == "zhao.lei"
    assert judgment["confidence"] == 1.0
    assert (judgment["risk_level"], judgment["sla_tier"], judgment["handling_level"]) == (2, "urgent", "district")
    assert judgment["rules_fired"][0] == {"rule_id": "OFFICER", "reason": "楼内供水管漏水"}
    assert (await triage.queue())["total"] == 0
    assert (await triage.client.get(f"/v1/cases/{accepted.case_id}/judgment")).json() == judgment
    queued, judged = await triage.triage_events_of(accepted.case_id, at_least=2)
    assert isinstance(judged.payload, CaseJudged)
    assert judged.causation_id == queued.event_id
    assert judged.actor == Actor(id="zhao.lei", role=ActorRole.TRIAGE_OFFICER, subject="dev:triage_officer")
    assert str(judged.event_id) == judgment["event_id"]


async def test_a_re_judgment_needs_a_reason_and_names_the_judgment_it_supersedes(triage: Triage) -> None:
    accepted = an_accepted_case()
    await triage.accept(accepted)
    [rules_judgment] = await triage.judgments_of(accepted.case_id)

    without_reason = await triage.judge(accepted.case_id, category="environment_pollution")
    with_reason = await triage.judge(accepted.case_id, category="environment_pollution", reason="实为工厂排污")

    assert without_reason.status_code == 422
    assert [e["field"] for e in without_reason.json()["errors"]] == ["reason"]
    assert with_reason.status_code == 200, with_reason.text
    rejudgment = with_reason.json()
    assert rejudgment["supersedes_event_id"] == str(rules_judgment.event_id)
    assert rejudgment["rejudgment_reason"] == "实为工厂排污"
    assert (await triage.client.get(f"/v1/cases/{accepted.case_id}/judgment")).json() == rejudgment
    assert len(await triage.triage_events_of(accepted.case_id, at_least=2)) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "no_such_category"}, "category"),
        ({"category": "noise", "campaign_ids": ["nope"]}, "campaign_ids.0"),
    ],
)
async def test_an_unknown_category_or_campaign_is_bad_input_naming_the_field(
    triage: Triage, body: dict[str, Any], field: str
) -> None:
    accepted = an_unclear_case()
    await triage.accept(accepted)
    await triage.queued(accepted)

    response = await triage.judge(accepted.case_id, **body)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (await triage.queue())["total"] == 1


async def test_judging_an_unknown_case_is_404(triage: Triage) -> None:
    response = await triage.judge(uuid.uuid4(), category="noise")

    assert response.status_code == 404


def a_duplicate() -> Envelope:
    report = an_unclear_case().payload
    assert isinstance(report, CaseAccepted)
    fields = {name: getattr(report, name) for name in CaseReport.model_fields}
    return new_event(
        CaseLinkedAsDuplicate(
            **fields, original_case_id=uuid.uuid4(), original_case_no="CL202603010000001", similarity=0.8, reason="r"
        ),
        case_id=uuid.uuid4(),
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def a_rejected_case() -> Envelope:
    return new_event(
        CaseRejected(
            case_no="CL202603020000002",
            source_system="hotline-12345",
            external_id="HL-R",
            title="测试",
            reason_code=RejectionReason.TEST_OR_SPAM,
        ),
        case_id=uuid.uuid4(),
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


async def test_a_duplicate_or_rejected_case_is_not_judged_and_an_officer_gets_409(triage: Triage) -> None:
    duplicate, rejected = a_duplicate(), a_rejected_case()
    await triage.accept(duplicate, rejected)
    await eventually(lambda: triage.consumed(Producer.INTAKE) >= 2)

    for case, rule in ((duplicate, "CaseIsDuplicate"), (rejected, "CaseWasRejected")):
        response = await triage.judge(case.case_id, category="noise", reason="复核")
        assert response.status_code == 409, response.text
        assert response.json()["rule"] == rule
    assert (await triage.queue())["total"] == 0
    await eventually(triage.all_published)
    assert triage.runtime.relay is not None
    assert triage.runtime.relay.published_total == 0


async def test_a_merged_case_leaves_the_queue_and_an_officer_gets_409(triage: Triage) -> None:
    accepted = an_unclear_case()
    await triage.accept(accepted)
    await triage.queued(accepted)
    merged = after(
        accepted, CasesMerged(into_case_id=uuid.uuid4(), into_case_no="CL1", merged_by="li.na", reason="同一事项")
    )

    await triage.accept(merged)
    await eventually(lambda: triage.consumed(Producer.INTAKE) >= 2)

    assert (await triage.queue())["total"] == 0
    response = await triage.judge(accepted.case_id, category="water_supply")
    assert response.status_code == 409
    assert response.json()["rule"] == "CaseIsMerged"
    assert len(await triage.triage_events_of(accepted.case_id)) == 1


async def test_a_closed_case_is_not_re_judged_and_other_supervision_events_are_not_recorded(triage: Triage) -> None:
    accepted = an_accepted_case()
    await triage.accept(accepted)
    [judged] = await triage.judgments_of(accepted.case_id)
    verified = after(judged, CaseVerified(verified_by="s"))
    closed = after(verified, CaseClosed(reason=ClosureReason.EVALUATED))

    await triage.supervision_says(verified, closed)
    await eventually(lambda: triage.consumed(Producer.SUPERVISION) >= 2)

    response = await triage.judge(accepted.case_id, category="environment_pollution", reason="复核")
    assert response.status_code == 409
    assert response.json()["rule"] == "CaseIsClosed"
    assert await triage.recorded_types(accepted.case_id) == ["case.accepted", "case.closed", "case.judged"]
    assert len(await triage.triage_events_of(accepted.case_id)) == 1


async def test_an_unmerged_duplicate_is_judged_once_accepted(triage: Triage) -> None:
    duplicate = a_duplicate()
    unmerged = after(duplicate, CaseUnmerged(from_case_id=uuid.uuid4(), unmerged_by="li.na", reason="不同事项"))
    report = duplicate.payload
    assert isinstance(report, CaseLinkedAsDuplicate)
    fields = {name: getattr(report, name) for name in CaseReport.model_fields}
    accepted = after(unmerged, CaseAccepted(**fields, accepted_at=unmerged.occurred_at), minutes=0)

    await triage.accept(duplicate, unmerged, accepted)

    [queued] = await triage.triage_events_of(duplicate.case_id)
    assert queued.causation_id == accepted.event_id
