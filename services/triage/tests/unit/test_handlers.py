"""triage's handlers as the runtime runs them — a poll's events recorded, judged and projected into
the judgments and the review queue, an officer's judgment decided and written at once — on the
in-memory store of ``caseloop_events.testing.fakes``: no database, no broker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, event_caused_by, new_event
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
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened, ClosureReason
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview, JudgedBy
from caseloop_events.testing.fakes import FakeService
from caseloop_triage.adapters.tables import judgments, review_queue
from caseloop_triage.app import TRIAGE
from caseloop_triage.domain.judgment import OfficerChoice
from caseloop_triage.domain.model import CaseIsClosed, CaseIsDuplicate, CaseWasRejected, JudgeCase, TriageCase
from caseloop_triage.service_layer.handlers import TriageDeps

GRID = "3301100010010101"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
OFFICER = "zhao.lei"
GARBAGE = ("小区门口垃圾堆积", "垃圾三天没人清运，气味很大")
UNCLEAR = ("水管漏了", "楼下水管一直在漏")

Triage = FakeService[TriageDeps, TriageCase]


@pytest.fixture
def triage() -> Triage:
    reference = load_reference_data(default_reference_dir())
    return FakeService(TRIAGE, TriageDeps(reference=reference, review_below_confidence=0.5), ManualClock(NOW))


def a_report(title: str, description: str, case_no: str = "CL202603020000001") -> CaseReport:
    return CaseReport(
        case_no=case_no,
        source_system="hotline-12345",
        external_id=f"HL-{case_no}",
        title=title,
        description=description,
        location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
    )


def first(payload: EventPayload, case_id: uuid.UUID | None = None) -> Envelope:
    return new_event(
        payload,
        case_id=case_id or uuid.uuid4(),
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=T0,
        correlation_id=uuid.uuid4(),
    )


def after(cause: Envelope, payload: EventPayload, minutes: int = 5) -> Envelope:
    """A fact of another service (or a supervisor) that followed ``cause``."""
    return event_caused_by(
        cause,
        payload,
        actor=Actor.system(payload.producer),
        occurred_at=cause.occurred_at + timedelta(minutes=minutes),
        decision=payload.event_type,
    )


def accepted(title: str = GARBAGE[0], description: str = GARBAGE[1], case_no: str = "CL202603020000001") -> Envelope:
    report = a_report(title, description, case_no)
    return first(CaseAccepted(**dict(report), accepted_at=T0))


def a_duplicate(title: str = GARBAGE[0], description: str = GARBAGE[1]) -> Envelope:
    report = a_report(title, description, "CL202603020000002")
    return first(
        CaseLinkedAsDuplicate(
            **dict(report),
            original_case_id=uuid.uuid4(),
            original_case_no="CL202603020000001",
            similarity=0.9,
            reason="同一网格、相同事项",
        )
    )


def a_rejected_case() -> Envelope:
    return first(
        CaseRejected(
            case_no="CL202603020000003",
            source_system="hotline-12345",
            external_id="HL-R",
            title="测试",
            reason_code=RejectionReason.TEST_OR_SPAM,
        )
    )


def an_officer_judges(case_id: uuid.UUID, category: str, reason: str | None = None) -> JudgeCase:
    choice = OfficerChoice(OFFICER, category, None, None, None, None, reason)
    return JudgeCase(case_id=case_id, choice=choice, now=NOW + timedelta(minutes=30))


async def test_a_poll_of_accepted_cases_judges_each_once_caused_by_its_acceptance_in_one_write(
    triage: Triage,
) -> None:
    garbage, fire = accepted(), accepted("楼下垃圾堆着火了", "火势不大", "CL202603020000002")

    emitted = await triage.take(garbage, fire)

    assert [(e.case_id, e.causation_id, e.correlation_id) for e in emitted] == [
        (garbage.case_id, garbage.event_id, garbage.correlation_id),
        (fire.case_id, fire.event_id, fire.correlation_id),
    ]
    assert all(isinstance(e.payload, CaseJudged) and e.occurred_at == NOW for e in emitted)
    assert triage.store.writes == 1, "one unit of work: both acceptances, both judgments and their rows at once"
    rows = {row["case_id"]: row for row in triage.store.rows(judgments)}
    assert {case: (row["category"], row["sla_tier"], row["judged_by"]) for case, row in rows.items()} == {
        str(garbage.case_id): ("sanitation", "general", "rules"),
        str(fire.case_id): ("sanitation", "emergency", "rules"),
    }
    assert rows[str(fire.case_id)]["event_id"] == str(emitted[1].event_id)
    assert triage.store.rows(review_queue) == []

    assert await triage.take(garbage, fire) == [], "the same poll again: each acceptance is in its stream already"
    assert triage.store.writes == 1, "and nothing new to write"


async def test_a_duplicate_or_a_rejected_case_is_recorded_but_never_judged_by_the_rules_or_an_officer(
    triage: Triage,
) -> None:
    duplicate, rejected = a_duplicate(), a_rejected_case()

    assert await triage.take(duplicate, rejected) == []

    assert [e.type for e in triage.events_of(duplicate.case_id)] == ["case.duplicate_linked"]
    assert [e.type for e in triage.events_of(rejected.case_id)] == ["case.rejected"]
    assert triage.store.rows(judgments) == []
    assert triage.store.rows(review_queue) == []
    with pytest.raises(CaseIsDuplicate):
        await triage.handle(an_officer_judges(duplicate.case_id, "sanitation", reason="复核"))
    with pytest.raises(CaseWasRejected):
        await triage.handle(an_officer_judges(rejected.case_id, "sanitation", reason="复核"))
    assert triage.store.published == []


async def test_a_case_the_rules_cannot_judge_waits_in_the_review_queue_until_an_officers_judgment_takes_it_out(
    triage: Triage,
) -> None:
    acceptance = accepted(*UNCLEAR)

    [queued] = await triage.take(acceptance)

    assert isinstance(queued.payload, CaseQueuedForReview)
    assert queued.causation_id == acceptance.event_id
    [item] = triage.store.rows(review_queue)
    assert (item["case_id"], item["title"], item["queued_at"]) == (str(acceptance.case_id), UNCLEAR[0], NOW)
    assert item["event_id"] == str(queued.event_id)
    assert "water_supply" in json.loads(item["candidate_categories"])
    assert triage.store.rows(judgments) == []

    judgment = await triage.handle(an_officer_judges(acceptance.case_id, "water_supply", reason="楼内供水管漏水"))

    assert judgment.decision.category == "water_supply"
    assert judgment.decision.judged_by is JudgedBy.OFFICER
    [judged] = triage.store.published[1:]
    assert judged.causation_id == queued.event_id, "the officer's judgment answers the review request"
    assert judged.actor.role is ActorRole.TRIAGE_OFFICER
    assert triage.store.rows(review_queue) == []
    [row] = triage.store.rows(judgments)
    assert (row["category"], row["judged_by"], row["judged_by_id"]) == ("water_supply", "officer", OFFICER)
    assert row["event_id"] == str(judged.event_id)


async def test_a_queued_case_merged_into_another_leaves_the_review_queue_and_comes_back_when_unmerged(
    triage: Triage,
) -> None:
    acceptance = accepted(*UNCLEAR)
    await triage.take(acceptance)
    merged = after(
        acceptance,
        CasesMerged(into_case_id=uuid.uuid4(), into_case_no="CL1", merged_by="li.na", reason="同一事项"),
    )
    unmerged = after(merged, CaseUnmerged(from_case_id=uuid.uuid4(), unmerged_by="li.na", reason="不同事项"))

    assert await triage.take(merged) == []
    assert triage.store.rows(review_queue) == []

    assert await triage.take(unmerged) == [], "still the same review request: the rules do not queue it twice"
    [item] = triage.store.rows(review_queue)
    assert item["case_id"] == str(acceptance.case_id)
    assert len(triage.store.published) == 1


async def test_an_unmerged_duplicate_is_judged_once_intake_accepts_it_caused_by_that_acceptance(
    triage: Triage,
) -> None:
    duplicate = a_duplicate()
    unmerged = after(duplicate, CaseUnmerged(from_case_id=uuid.uuid4(), unmerged_by="li.na", reason="不同事项"))
    report = duplicate.payload
    assert isinstance(report, CaseLinkedAsDuplicate)
    acceptance = after(
        unmerged,
        CaseAccepted(**{name: getattr(report, name) for name in CaseReport.model_fields}, accepted_at=T0),
        minutes=0,
    )

    [judged] = await triage.take(duplicate, unmerged, acceptance)

    assert isinstance(judged.payload, CaseJudged)
    assert judged.causation_id == acceptance.event_id
    [row] = triage.store.rows(judgments)
    assert row["case_id"] == str(duplicate.case_id)


async def test_a_closed_case_is_not_re_judged_until_supervision_reopens_it(triage: Triage) -> None:
    acceptance = accepted()
    [rules_judgment] = await triage.take(acceptance)
    closed = after(rules_judgment, CaseClosed(reason=ClosureReason.EVALUATED), minutes=60)
    reopened = after(closed, CaseReopened(reason="群众不满意", reopen_count=1))

    assert await triage.take(closed) == []
    assert [e.type for e in triage.events_of(acceptance.case_id)] == ["case.accepted", "case.judged", "case.closed"]
    with pytest.raises(CaseIsClosed):
        await triage.handle(an_officer_judges(acceptance.case_id, "environment_pollution", reason="实为工厂排污"))

    assert await triage.take(reopened) == [], "reopened, the case keeps its judgment: the rules do not judge it again"
    rejudgment = await triage.handle(
        an_officer_judges(acceptance.case_id, "environment_pollution", reason="实为工厂排污")
    )

    assert rejudgment.decision.supersedes_event_id == rules_judgment.event_id
    [row] = triage.store.rows(judgments)
    assert (row["category"], row["event_id"]) == ("environment_pollution", str(rejudgment.event_id))
    assert [e.type for e in triage.store.published] == ["case.judged", "case.judged"]
