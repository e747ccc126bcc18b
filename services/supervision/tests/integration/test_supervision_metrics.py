"""supervision's /metrics shows what a command centre watches: the open, overdue and escalated cases
of every town — read from its case list at each scrape (real broker, SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned
from caseloop_events.contracts.envelope import EventPayload
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.testing.fixtures import DevelopmentCaller, causal_chain, eventually, publish
from caseloop_supervision.app import create_app
from caseloop_supervision.config import SupervisionSettings

TOWN, TOWN_NAME, OTHER_TOWN = "330110001", "白川街道", "330110002"
LOCATION = CaseLocation(
    grid_code="3301100010010101", village_code="330110001001", town_code=TOWN, district_code="330110"
)


def an_acknowledged_case(start: datetime) -> list[EventPayload]:
    """A general case of the town, acknowledged by its unit: its handling clock counts from then."""
    return [
        CaseAccepted(
            case_no=f"CL20261127{uuid.uuid4().int % 10**7:07d}",
            source_system="hotline-12345",
            external_id=str(uuid.uuid4()),
            title="路灯不亮",
            description="整条路的路灯都不亮",
            location=LOCATION,
            accepted_at=start,
        ),
        CaseJudged(
            category="streetlight",
            risk_level=3,
            handling_level=HandlingLevel.TOWN,
            sla_tier=SlaTierName.GENERAL,
            judged_by=JudgedBy.RULES,
            confidence=0.9,
        ),
        CaseAssigned(
            unit_id="U-X", unit_name="路灯所", town_code=TOWN, route=AssignmentRoute.RESPONSIBILITY_LIST, reason="r"
        ),
        CaseAcknowledged(unit_id="U-X", acknowledged_by="h"),
    ]


def town_gauges(text: str, town: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("caseloop_cases_") and sample.labels.get("town") == town
    }


async def test_a_case_long_past_its_deadline_shows_as_open_overdue_and_escalated_in_its_town(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(days=60)
    case_id = uuid.uuid4()
    # Sixty days on: the clock of a seven-working-day case is past its deadline, and the notice
    # timer climbs the ladder to the red notice addressed to the district.
    clock = ManualClock(datetime.now(UTC))
    settings = SupervisionSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path, timer_interval=0.1)
    app = create_app(settings, kafka_settings, clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), auth=DevelopmentCaller(), base_url="http://s") as s,
    ):
        for event in causal_chain(case_id, an_acknowledged_case(start), start, timedelta(minutes=5)):
            await publish(kafka_settings.kafka_bootstrap_servers, kafka_settings.topic_of(event.producer), event)

        async def escalated() -> bool:
            response = await s.get("/metrics")
            assert response.status_code == 200, response.text
            return town_gauges(response.text, TOWN).get("caseloop_cases_escalated") == 1

        await eventually(escalated)
        scraped = (await s.get("/metrics")).text

    assert town_gauges(scraped, TOWN) == {
        "caseloop_cases_open": 1,
        "caseloop_cases_overdue": 1,
        "caseloop_cases_escalated": 1,
    }
    assert town_gauges(scraped, OTHER_TOWN) == {
        "caseloop_cases_open": 0,
        "caseloop_cases_overdue": 0,
        "caseloop_cases_escalated": 0,
    }, "every town of the region is shown, 0 where it has none"
    assert f'town_name="{TOWN_NAME}"' in scraped
    assert str(case_id) not in scraped
