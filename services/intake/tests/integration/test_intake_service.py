"""intake against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
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
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, Producer, new_event
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
)
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened, CaseVerified, ClosureReason
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import Service
from caseloop_events.testing.fixtures import DevelopmentCaller, eventually, publish, read_events
from caseloop_intake.adapters import idempotency
from caseloop_intake.app import create_app
from caseloop_intake.config import IntakeSettings

GRID = "3301100010010101"
OTHER_GRID = "3301100010010201"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUPERVISOR = {"by": "li.na", "reason": "同一事项"}


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


def a_round(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "grid_code": GRID,
        "worker_id": "gw-0101",
        "screened_on": "2026-03-02",
        "hazards": [
            {"title": "井盖缺失", "description": "人行道上的井盖丢了，夜里很危险", "address": "柳岸社区南门"},
            {"title": "测试", "description": "演示用，请忽略"},
            {"title": "人行道井盖丢失", "description": "人行道上的井盖丢了，晚上很危险"},
        ],
    }
    body.update(overrides)
    return body


@dataclass
class Intake:
    client: httpx.AsyncClient
    runtime: Service[Any, Any, Any]
    kafka: KafkaSettings
    clock: ManualClock

    async def report(self, external_id: str, **overrides: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/cases", json=a_report(external_id, **overrides))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def case(self, case_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/cases/{case_id}")
        assert response.status_code == 200, response.text
        case: dict[str, Any] = response.json()
        return case

    async def events_of(self, case_id: str, at_least: int = 1) -> list[Envelope]:
        """The case's events on the intake topic, once every event intake emitted is published."""
        await eventually(self.all_published)
        events = await read_events(
            self.kafka.kafka_bootstrap_servers,
            self.kafka.topic_of(Producer.INTAKE),
            until=lambda evs: sum(str(e.case_id) == case_id for e in evs) >= at_least,
        )
        return [e for e in events if str(e.case_id) == case_id]

    async def all_published(self) -> bool:
        return self.runtime.relay is not None and await self.runtime.relay.pending() == 0

    async def supervision_says(self, case_id: str, payload: EventPayload) -> None:
        """Publish a supervision event of the case, a minute after anything before it."""
        self.clock.advance(timedelta(minutes=1))
        event = new_event(
            payload,
            case_id=uuid.UUID(case_id),
            actor=Actor.system(Producer.SUPERVISION),
            occurred_at=self.clock.now(),
            correlation_id=uuid.uuid4(),
        )
        await publish(self.kafka.kafka_bootstrap_servers, self.kafka.topic_of(Producer.SUPERVISION), event)

    async def recorded_types(self, case_id: str) -> list[str]:
        """The event types in intake's own log of the case."""
        table = self.runtime.database.tables.case_events
        async with self.runtime.database.reading() as session:
            rows = await session.execute(select(table.c.type).where(table.c.case_id == case_id))
            return sorted(row.type for row in rows)


@pytest.fixture
async def intake(database_url: str, kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[Intake]:
    clock = ManualClock(NOW)
    app: FastAPI = create_app(
        IntakeSettings(database_url=database_url, CASELOOP_DATA_DIR=tmp_path), kafka_settings, clock
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, auth=DevelopmentCaller(), base_url="http://intake") as client:
            intake = Intake(client, app.state.service, kafka_settings, clock)
            yield intake
            # Stop only once the relay is idle: on Python 3.11 its asyncio.wait_for swallows a
            # cancellation that lands just after a commit woke it, and the shutdown never ends.
            await eventually(intake.all_published)


async def test_an_accepted_case_is_published_on_the_intake_topic(intake: Intake, kafka_settings: KafkaSettings) -> None:
    response = await intake.client.post("/v1/cases", json=a_report("INT-PUB-1"))
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


async def test_the_same_external_id_sent_concurrently_gives_one_case(intake: Intake) -> None:
    report = a_report("INT-DUP-1")
    responses = await asyncio.gather(*(intake.client.post("/v1/cases", json=report) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["case_id"] for r in responses}) == 1
    assert len({r.json()["case_no"] for r in responses}) == 1


async def test_what_intake_holds_is_readable_by_case_id(intake: Intake) -> None:
    created = (await intake.client.post("/v1/cases", json=a_report("INT-READ-1"))).json()
    case = (await intake.client.get(f"/v1/cases/{created['case_id']}")).json()
    assert case["case_no"] == created["case_no"]
    assert case["location"]["grid_code"] == GRID
    assert case["reporter"]["phone"] == "13800000000"


async def test_an_unknown_grid_code_is_bad_input_naming_the_field_not_a_rejection(intake: Intake) -> None:
    response = await intake.client.post(
        "/v1/cases", json=a_report("INT-BAD-1", location={"grid_code": "9999999999999999"})
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["location.grid_code"]


async def test_missing_and_malformed_fields_are_each_reported(intake: Intake) -> None:
    body = a_report("INT-BAD-2", title="", attachments=["not a url"])
    del body["description"]
    response = await intake.client.post("/v1/cases", json=body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"body.title", "body.description", "body.attachments.0"} <= fields


async def test_an_unknown_case_is_404(intake: Intake) -> None:
    response = await intake.client.get("/v1/cases/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404


async def test_grids_can_be_found_by_town_and_name(intake: Intake) -> None:
    page = (await intake.client.get("/v1/grids", params={"town_code": GRID[:9], "limit": 5})).json()
    assert page["total"] > 5
    assert len(page["items"]) == 5
    assert all(item["town_code"] == GRID[:9] for item in page["items"])
    assert page["items"][0]["district_code"] == GRID[:6]


async def test_control_characters_in_text_are_bad_input_not_a_server_error(intake: Intake) -> None:
    response = await intake.client.post("/v1/cases", json=a_report("INT-NUL-1", title="a\u0000b"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.title"]


async def test_dates_and_times_are_iso_text_in_reach_not_numbers_read_as_1970(intake: Intake) -> None:
    as_number = await intake.client.post("/v1/screenings", json=a_round(screened_on=0))
    assert as_number.status_code == 422, as_number.text
    assert [e["field"] for e in as_number.json()["errors"]] == ["body.screened_on"]
    in_year_1 = await intake.client.post(
        "/v1/cases", json=a_report("INT-TIME-1", occurred_at="0001-01-01T00:00:00+08:00")
    )
    assert in_year_1.status_code == 422, in_year_1.text
    assert [e["field"] for e in in_year_1.json()["errors"]] == ["body.occurred_at"]


async def test_unknown_fields_are_refused(intake: Intake) -> None:
    response = await intake.client.post("/v1/cases", json=a_report("INT-EXTRA-1", priority="high"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.priority"]


# Rejection


@pytest.mark.parametrize(
    ("overrides", "reason_code"),
    [
        ({"title": "测试工单", "description": "联调用，请忽略"}, RejectionReason.TEST_OR_SPAM),
        ({"title": "无", "description": "。。。"}, RejectionReason.NO_ACTIONABLE_CONTENT),
        ({"location": {"address": "上海市浦东新区世纪大道100号"}}, RejectionReason.OUT_OF_JURISDICTION),
    ],
)
async def test_a_rejected_report_is_kept_numbered_and_readable_with_its_reason(
    intake: Intake, overrides: dict[str, Any], reason_code: RejectionReason
) -> None:
    created = await intake.report(f"INT-REJ-{reason_code}", **overrides)

    assert created["status"] == "rejected"
    assert created["rejection"]["reason_code"] == reason_code
    assert created["case_no"].startswith("CL")
    case = await intake.case(created["case_id"])
    assert case["status"] == "rejected"
    assert case["rejection"]["reason_code"] == reason_code
    assert case["rejection"]["note"]
    assert case["location"] is None
    [event] = await intake.events_of(created["case_id"])
    assert isinstance(event.payload, CaseRejected)
    assert event.payload.reason_code is reason_code
    assert event.payload.case_no == created["case_no"]


async def test_rejected_and_accepted_cases_share_one_case_number_sequence(intake: Intake) -> None:
    first = await intake.report("INT-SEQ-1")
    rejected = await intake.report("INT-SEQ-2", title="测试", description="请忽略")
    third = await intake.report("INT-SEQ-3", title="路灯不亮", description="整条路的路灯都不亮")

    numbers = [int(c["case_no"][-7:]) for c in (first, rejected, third)]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]


async def test_reports_sent_together_take_consecutive_case_numbers_none_twice(intake: Intake) -> None:
    """The counter is taken with one statement that creates it or adds one under its row lock."""
    reports = [a_report(f"INT-TOGETHER-{n}", title=f"井盖缺失 {n} 号") for n in range(20)]
    responses = await asyncio.gather(*(intake.client.post("/v1/cases", json=report) for report in reports))
    assert [r.status_code for r in responses] == [201] * 20
    numbers = sorted(int(r.json()["case_no"][-7:]) for r in responses)
    assert numbers == list(range(numbers[0], numbers[0] + 20))


async def test_a_rejected_report_sent_again_is_the_same_case(intake: Intake) -> None:
    first = await intake.report("INT-REJ-AGAIN", title="测试", description="请忽略")
    again = await intake.client.post("/v1/cases", json=a_report("INT-REJ-AGAIN", title="测试", description="请忽略"))

    assert again.status_code == 200
    assert again.json() == first


# Probable duplicates


async def test_a_report_repeating_an_open_case_of_its_grid_is_linked_instead_of_accepted(intake: Intake) -> None:
    original = await intake.report("INT-ORIG-1")
    intake.clock.advance(timedelta(hours=2))

    repeat = await intake.report(
        "INT-REPEAT-1", source_system="grid-app", title="小区门口垃圾没人清运", description="垃圾堆了三天，味道很大"
    )

    assert repeat["status"] == "duplicate"
    assert repeat["duplicate_of"]["case_id"] == original["case_id"]
    assert repeat["duplicate_of"]["case_no"] == original["case_no"]
    assert repeat["duplicate_of"]["similarity"] >= 0.5
    case = await intake.case(repeat["case_id"])
    assert case["duplicate_of"] == repeat["duplicate_of"]
    assert case["accepted_at"] is None
    assert case["location"]["grid_code"] == GRID
    [event] = await intake.events_of(repeat["case_id"])
    assert isinstance(event.payload, CaseLinkedAsDuplicate)
    assert event.payload.original_case_id == uuid.UUID(original["case_id"])
    assert event.payload.title == "小区门口垃圾没人清运"
    again = await intake.client.post("/v1/cases", json=a_report("INT-REPEAT-1", source_system="grid-app"))
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"


async def test_the_same_report_in_another_grid_or_after_the_window_is_accepted(intake: Intake) -> None:
    await intake.report("INT-WIN-1")

    elsewhere = await intake.report("INT-WIN-2", location={"grid_code": OTHER_GRID})
    intake.clock.advance(timedelta(hours=73))
    later = await intake.report("INT-WIN-3")

    assert elsewhere["status"] == later["status"] == "accepted"


async def test_intake_learns_closures_from_supervision_and_a_closed_case_draws_no_duplicates(intake: Intake) -> None:
    original = await intake.report("INT-CLOSED-1")
    await intake.supervision_says(original["case_id"], CaseVerified(verified_by="s"))
    await intake.supervision_says(original["case_id"], CaseClosed(reason=ClosureReason.EVALUATED))

    await eventually(lambda: _closed(intake, original["case_id"]))
    repeat = await intake.report("INT-CLOSED-2")
    assert repeat["status"] == "accepted"
    # Only closures and reopenings of supervision's topic are kept in intake's log.
    assert await intake.recorded_types(original["case_id"]) == ["case.accepted", "case.closed"]

    await intake.supervision_says(original["case_id"], CaseReopened(reason="不满意", reopen_count=1))
    await eventually(lambda: _open(intake, original["case_id"]))


async def _closed(intake: Intake, case_id: str) -> bool:
    return (await intake.case(case_id))["closed_at"] is not None


async def _open(intake: Intake, case_id: str) -> bool:
    return (await intake.case(case_id))["closed_at"] is None


async def test_similar_reports_sent_together_give_one_accepted_case_and_duplicates_of_it(intake: Intake) -> None:
    responses = await asyncio.gather(
        *(intake.client.post("/v1/cases", json=a_report(f"INT-RACE-{n}")) for n in range(5))
    )

    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]


# Merge and unmerge


async def two_open_cases(intake: Intake) -> tuple[dict[str, Any], dict[str, Any]]:
    original = await intake.report("INT-M-ORIGINAL")
    other = await intake.report("INT-M-OTHER", title="楼道灯不亮", description="三楼楼道的灯坏了一周")
    assert original["status"] == other["status"] == "accepted"
    return original, other


async def test_a_supervisor_merges_a_case_into_another_and_unmerges_it(intake: Intake) -> None:
    original, other = await two_open_cases(intake)

    merged = await intake.client.post(
        f"/v1/cases/{other['case_id']}/merge", json={"into_case_id": original["case_id"], **SUPERVISOR}
    )

    assert merged.status_code == 200, merged.text
    assert merged.json()["status"] == "merged"
    assert merged.json()["merged_into"]["case_id"] == original["case_id"]
    assert merged.json()["merged_into"]["case_no"] == original["case_no"]
    assert merged.json()["merged_into"]["merged_by"] == "li.na"

    unmerged = await intake.client.post(f"/v1/cases/{other['case_id']}/unmerge", json=SUPERVISOR)

    assert unmerged.status_code == 200, unmerged.text
    assert unmerged.json()["status"] == "accepted"
    assert unmerged.json()["merged_into"] is None
    accepted, merge, unmerge = await intake.events_of(other["case_id"], at_least=3)
    assert isinstance(accepted.payload, CaseAccepted)
    assert isinstance(merge.payload, CasesMerged)
    assert merge.payload.into_case_no == original["case_no"]
    assert merge.actor == Actor(id="li.na", role=ActorRole.SUPERVISOR, subject="dev:supervisor")
    assert isinstance(unmerge.payload, CaseUnmerged)
    assert unmerge.payload.from_case_id == uuid.UUID(original["case_id"])
    assert unmerge.causation_id == merge.event_id


async def test_unmerging_a_duplicate_accepts_it_for_judgment(intake: Intake) -> None:
    original = await intake.report("INT-UD-1")
    repeat = await intake.report("INT-UD-2", callback_url="https://grid.example/cb")
    assert repeat["status"] == "duplicate"

    response = await intake.client.post(f"/v1/cases/{repeat['case_id']}/unmerge", json=SUPERVISOR)

    assert response.status_code == 200, response.text
    case = response.json()
    assert case["status"] == "accepted"
    assert case["duplicate_of"] is None
    assert case["accepted_at"] is not None
    linked, unmerged, accepted = await intake.events_of(repeat["case_id"], at_least=3)
    assert isinstance(linked.payload, CaseLinkedAsDuplicate)
    assert isinstance(unmerged.payload, CaseUnmerged)
    assert unmerged.payload.from_case_id == uuid.UUID(original["case_id"])
    assert isinstance(accepted.payload, CaseAccepted)
    assert accepted.causation_id == unmerged.event_id
    assert accepted.payload.callback_url == "https://grid.example/cb"
    assert accepted.payload.case_no == repeat["case_no"]


@pytest.mark.parametrize(
    ("which", "into", "rule"),
    [
        ("other", "other", "CannotMergeIntoItself"),
        ("rejected", "original", "CaseNotOwnAccepted"),
        ("merged", "original", "CaseNotOwnAccepted"),
        ("other", "merged", "TargetNotOwnAccepted"),
        ("other", "rejected", "TargetNotOwnAccepted"),
    ],
)
async def test_a_merge_that_does_not_fit_is_409_naming_the_rule_and_changes_nothing(
    intake: Intake, which: str, into: str, rule: str
) -> None:
    original, other = await two_open_cases(intake)
    rejected = await intake.report("INT-M-REJ", title="测试", description="请忽略")
    merged = await intake.report("INT-M-MERGED", title="道路坑洼", description="路面出现大坑，电动车容易摔倒")
    response = await intake.client.post(
        f"/v1/cases/{merged['case_id']}/merge", json={"into_case_id": original["case_id"], **SUPERVISOR}
    )
    assert response.status_code == 200, response.text
    cases = {"original": original, "other": other, "rejected": rejected, "merged": merged}
    before = {name: await intake.case(c["case_id"]) for name, c in cases.items()}

    response = await intake.client.post(
        f"/v1/cases/{cases[which]['case_id']}/merge", json={"into_case_id": cases[into]["case_id"], **SUPERVISOR}
    )

    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["rule"] == rule
    assert {name: await intake.case(c["case_id"]) for name, c in cases.items()} == before
    assert len(await intake.events_of(cases[which]["case_id"])) == (2 if which == "merged" else 1)


async def test_merging_an_unknown_case_or_into_an_unknown_case_is_404(intake: Intake) -> None:
    original, _ = await two_open_cases(intake)
    unknown = str(uuid.uuid4())

    case_unknown = await intake.client.post(
        f"/v1/cases/{unknown}/merge", json={"into_case_id": original["case_id"], **SUPERVISOR}
    )
    target_unknown = await intake.client.post(
        f"/v1/cases/{original['case_id']}/merge", json={"into_case_id": unknown, **SUPERVISOR}
    )

    assert case_unknown.status_code == target_unknown.status_code == 404
    assert "into_case_id" in target_unknown.json()["detail"]
    assert (await intake.case(original["case_id"]))["status"] == "accepted"


async def test_only_a_merged_case_or_a_duplicate_is_unmerged(intake: Intake) -> None:
    original, _ = await two_open_cases(intake)

    response = await intake.client.post(f"/v1/cases/{original['case_id']}/unmerge", json=SUPERVISOR)

    assert response.status_code == 409
    assert response.json()["rule"] == "NotMergedOrDuplicate"
    assert len(await intake.events_of(original["case_id"])) == 1
    unknown = await intake.client.post(f"/v1/cases/{uuid.uuid4()}/unmerge", json=SUPERVISOR)
    assert unknown.status_code == 404


async def test_a_merge_needs_who_and_why(intake: Intake) -> None:
    original, other = await two_open_cases(intake)

    response = await intake.client.post(
        f"/v1/cases/{other['case_id']}/merge", json={"into_case_id": original["case_id"], "by": "li.na"}
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.reason"]


# Screening rounds


async def test_each_hazard_of_a_screening_round_is_screened_like_a_report(intake: Intake) -> None:
    response = await intake.client.post("/v1/screenings", json=a_round(round_id="R-2026-03-02-A"))

    assert response.status_code == 201, response.text
    screening = response.json()
    assert screening["round_id"] == "R-2026-03-02-A"
    first, test, repeat = screening["cases"]
    assert [c["status"] for c in screening["cases"]] == ["accepted", "rejected", "duplicate"]
    assert test["rejection"]["reason_code"] == "test_or_spam"
    assert repeat["duplicate_of"]["case_id"] == first["case_id"]
    case = await intake.case(first["case_id"])
    assert case["source_system"] == "grid-screening"
    assert case["external_id"] == "R-2026-03-02-A/0"
    assert case["location"]["grid_code"] == GRID
    assert case["address"] == "柳岸社区南门"
    [event] = await intake.events_of(first["case_id"])
    assert event.actor == Actor(id="gw-0101", role=ActorRole.SOURCE_SYSTEM, subject="dev:source_system:grid-screening")


async def test_posting_the_same_round_again_answers_200_with_the_same_cases(intake: Intake) -> None:
    first = await intake.client.post("/v1/screenings", json=a_round())
    again = await intake.client.post("/v1/screenings", json=a_round())

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert first.json()["round_id"] == f"{GRID}/gw-0101/2026-03-02"


async def test_a_round_in_an_unknown_grid_is_bad_input_naming_the_field(intake: Intake) -> None:
    response = await intake.client.post("/v1/screenings", json=a_round(grid_code="9999999999999999"))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["grid_code"]


async def test_a_round_with_an_unknown_category_creates_no_case(intake: Intake) -> None:
    hazards = a_round()["hazards"]
    bad = a_round(hazards=[hazards[0], {**hazards[2], "category": "no_such_category"}])

    response = await intake.client.post("/v1/screenings", json=bad)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["hazards.1.category"]
    assert (await intake.client.post("/v1/screenings", json=a_round())).status_code == 201


async def test_a_round_holds_one_to_a_hundred_hazards(intake: Intake) -> None:
    hazard = a_round()["hazards"][0]
    none = await intake.client.post("/v1/screenings", json=a_round(hazards=[]))
    too_many = await intake.client.post("/v1/screenings", json=a_round(hazards=[hazard] * 101))

    assert none.status_code == too_many.status_code == 422


# Callback


async def test_a_callback_url_is_carried_into_the_event_and_shown(intake: Intake) -> None:
    created = await intake.report("INT-CB-1", callback_url="https://hotline.example/cases/1/feedback")

    case = await intake.case(created["case_id"])
    assert case["callback_url"] == "https://hotline.example/cases/1/feedback"
    [event] = await intake.events_of(created["case_id"])
    assert isinstance(event.payload, CaseAccepted)
    assert event.payload.callback_url == "https://hotline.example/cases/1/feedback"


@pytest.mark.parametrize("url", ["ftp://hotline.example/cb", "not a url", "https://hotline.example/" + "a" * 2000])
async def test_a_callback_url_must_be_http_or_https_and_at_most_2000_characters(intake: Intake, url: str) -> None:
    response = await intake.client.post("/v1/cases", json=a_report("INT-CB-BAD", callback_url=url))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.callback_url"]


async def test_fifty_concurrent_identical_requests_with_one_idempotency_key_create_one_case(intake: Intake) -> None:
    report = a_report("INT-IDEM-1")
    key = {"Idempotency-Key": "9d1c2a6e-idem-1"}
    responses = await asyncio.gather(*(intake.client.post("/v1/cases", json=report, headers=key) for _ in range(50)))

    assert {r.status_code for r in responses} <= {201, 409}
    answered = [r for r in responses if r.status_code == 201]
    assert answered, "the first request is answered"
    assert len({r.json()["case_id"] for r in answered}) == 1
    for busy in (r for r in responses if r.status_code == 409):
        assert busy.json()["rule"] == "IdempotencyKeyInFlight"
    again = await intake.client.post("/v1/cases", json=report, headers=key)
    assert (again.status_code, again.json()) == (201, answered[0].json()), "the first answer, again"
    assert again.headers["Location"] == f"/v1/cases/{answered[0].json()['case_id']}"
    case_id = answered[0].json()["case_id"]
    assert await intake.recorded_types(case_id) == ["case.accepted"]


async def test_an_idempotency_key_reused_with_another_body_is_422_and_keys_are_per_source_system(
    intake: Intake,
) -> None:
    key = {"Idempotency-Key": "reused-key"}
    first = await intake.client.post("/v1/cases", json=a_report("INT-IDEM-2"), headers=key)
    assert first.status_code == 201
    other = await intake.client.post("/v1/cases", json=a_report("INT-IDEM-3"), headers=key)
    assert other.status_code == 422
    assert [e["field"] for e in other.json()["errors"]] == ["Idempotency-Key"]
    elsewhere = a_report("INT-IDEM-2", source_system="grid-app", location={"grid_code": OTHER_GRID})
    separate = await intake.client.post("/v1/cases", json=elsewhere, headers=key)
    assert separate.status_code == 201, "another calling system's key is another key"
    assert separate.json()["case_id"] != first.json()["case_id"]


async def test_a_request_that_failed_leaves_its_idempotency_key_free_for_the_retry(intake: Intake) -> None:
    key = {"Idempotency-Key": "retry-after-bad-input"}
    bad = await intake.client.post("/v1/cases", json=a_report("INT-IDEM-4", category="weather"), headers=key)
    assert bad.status_code == 422
    good = await intake.client.post("/v1/cases", json=a_report("INT-IDEM-4", category="weather"), headers=key)
    assert good.status_code == 422, "the same bad request is judged again, not refused as in flight"
    fixed = await intake.client.post("/v1/cases", json=a_report("INT-IDEM-5"), headers={"Idempotency-Key": "x" * 256})
    assert fixed.status_code == 422, "a key longer than 255 characters is bad input"


async def test_answered_idempotency_keys_are_kept_for_the_retention_then_forgotten(intake: Intake) -> None:
    key = {"Idempotency-Key": "kept-a-while"}
    assert (await intake.client.post("/v1/cases", json=a_report("INT-IDEM-6"), headers=key)).status_code == 201
    database = intake.runtime.database
    retention = timedelta(hours=24)
    assert await idempotency.forget_expired(database, intake.clock.now() + timedelta(hours=23), retention) == 0
    assert await idempotency.forget_expired(database, intake.clock.now() + timedelta(hours=25), retention) == 1
    reused = await intake.client.post("/v1/cases", json=a_report("INT-IDEM-7"), headers=key)
    assert reused.status_code == 201, "once forgotten, the key may name another request"


async def test_a_request_body_over_the_limit_is_413_problem_json_declared_or_streamed(intake: Intake) -> None:
    huge = a_report("INT-HUGE-1", description="垃圾" * 400_000)  # well over 1 MiB of UTF-8
    declared = await intake.client.post("/v1/cases", json=huge)
    assert declared.status_code == 413
    assert declared.headers["content-type"].startswith("application/problem+json")
    assert "larger than 1048576 bytes" in declared.json()["detail"]

    async def streamed() -> AsyncIterator[bytes]:
        yield b'{"source_system": "hotline-12345", "description": "'
        for _ in range(200):
            yield b"x" * 8192
        yield b'"}'

    chunked = await intake.client.post("/v1/cases", content=streamed(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert chunked.json()["title"] == "Request body too large"
    small = await intake.client.post("/v1/cases", json=a_report("INT-HUGE-2"))
    assert small.status_code == 201, "the limit leaves ordinary reports alone"


async def test_a_client_over_its_rate_limit_gets_429_with_retry_after_and_others_go_on(tmp_path: Path) -> None:
    settings = IntakeSettings(
        CASELOOP_DATA_DIR=tmp_path, CASELOOP_RATE_LIMIT_PER_SECOND=0.5, CASELOOP_RATE_LIMIT_BURST=3
    )
    app = create_app(settings, KafkaSettings(), ManualClock(NOW))  # reference routes only: no lifespan needed
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        hotline = {"X-API-Key": "dev:source_system:hotline-12345"}
        answers = [await client.get("/v1/categories", headers=hotline) for _ in range(4)]
        police = await client.get("/v1/categories", headers={"X-API-Key": "dev:source_system:police-110"})

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].headers["content-type"].startswith("application/problem+json")
    assert answers[3].headers["Retry-After"] == "2"
    assert police.status_code == 200, "the limit is per client"
