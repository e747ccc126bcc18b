"""Review and officers' judgments, pure: given a case's events, when the rules or an officer judge,
then these events."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    EventPayload,
    Producer,
    deterministic_id,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput, RuleViolation
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
from caseloop_events.contracts.reference import ReferenceData, default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened, ClosureReason
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview, JudgedBy
from caseloop_triage.domain.judgment import (
    OFFICER_RULE_ID,
    OfficerChoice,
    Report,
    candidate_categories,
    rules_judgment,
)
from caseloop_triage.domain.model import (
    CaseIsClosed,
    CaseIsDuplicate,
    CaseIsMerged,
    CaseWasRejected,
    JudgeCase,
    NotAwaitingJudgment,
    TriageCase,
    fold,
    judge_by_officer,
    judge_by_rules,
)

REFERENCE: ReferenceData = load_reference_data(default_reference_dir())
GRID = "3301100010010101"
CASE_ID = uuid.UUID("5d7c1e2a-0b9f-4f3e-8a1d-2c3b4e5f6a7b")
ORIGINAL_ID = uuid.UUID("7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d")
ACCEPTED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = ACCEPTED_AT + timedelta(hours=1)
THRESHOLD = 0.5
OFFICER = "zhao.lei"
UNCLEAR = ("水管漏了", "楼下水管一直在漏")
GARBAGE = ("小区门口垃圾堆积", "垃圾三天没人清运，气味很大")


def a_report(title: str = UNCLEAR[0], description: str = UNCLEAR[1]) -> CaseAccepted:
    return CaseAccepted(
        case_no="CL202603020000001",
        source_system="hotline-12345",
        external_id="HL-1",
        title=title,
        description=description,
        location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
        accepted_at=ACCEPTED_AT,
    )


def first(payload: EventPayload) -> Envelope:
    return new_event(
        payload,
        case_id=CASE_ID,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=ACCEPTED_AT,
        correlation_id=uuid.uuid4(),
        event_id=deterministic_id(CASE_ID, payload.event_type),
    )


def accepted(title: str = UNCLEAR[0], description: str = UNCLEAR[1]) -> Envelope:
    return first(a_report(title, description))


def after(cause: Envelope, payload: EventPayload, minutes: int = 5) -> Envelope:
    """A fact of another service (or a supervisor) that followed ``cause``."""
    return event_caused_by(
        cause,
        payload,
        actor=Actor.system(payload.producer),
        occurred_at=cause.occurred_at + timedelta(minutes=minutes),
        decision=payload.event_type,
    )


def given(*events: Envelope) -> TriageCase:
    return fold(CASE_ID, causal_order(events))


def by_rules(*events: Envelope) -> Envelope:
    decided = judge_by_rules(given(*events), REFERENCE, THRESHOLD, LATER)
    assert decided is not None
    return decided


def a_choice(
    category: str = "water_supply",
    *,
    reason: str | None = None,
    risk_level: int | None = None,
    sla_tier: SlaTierName | None = None,
    handling_level: HandlingLevel | None = None,
    campaign_ids: tuple[str, ...] | None = None,
) -> OfficerChoice:
    return OfficerChoice(OFFICER, category, risk_level, sla_tier, handling_level, campaign_ids, reason)


def officer_judges(case: TriageCase, choice: OfficerChoice, correlation_id: uuid.UUID | None = None) -> Envelope:
    command = JudgeCase(case_id=CASE_ID, choice=choice, now=LATER + timedelta(hours=1))
    return judge_by_officer(case, replace(command, correlation_id=correlation_id or uuid.uuid4()), REFERENCE)


def queued_case() -> list[Envelope]:
    """An accepted case the rules could not judge: in the review queue."""
    acceptance = accepted()
    return [acceptance, by_rules(acceptance)]


def judged_case() -> list[Envelope]:
    """A case the rules judged with confidence."""
    acceptance = accepted(*GARBAGE)
    return [acceptance, by_rules(acceptance)]


def merged(cause: Envelope) -> Envelope:
    return after(cause, CasesMerged(into_case_id=ORIGINAL_ID, into_case_no="CL1", merged_by="li.na", reason="同一事项"))


def duplicate() -> Envelope:
    report = a_report()
    fields = {name: getattr(report, name) for name in CaseReport.model_fields}
    return first(
        CaseLinkedAsDuplicate(
            **fields, original_case_id=ORIGINAL_ID, original_case_no="CL1", similarity=0.9, reason="r"
        )
    )


# The rules' turn


def test_a_case_the_rules_judge_with_confidence_is_judged() -> None:
    acceptance = accepted(*GARBAGE)

    judged = by_rules(acceptance)

    assert isinstance(judged.payload, CaseJudged)
    assert judged.payload.category == "sanitation"
    assert judged.event_id == deterministic_id(acceptance.event_id, "judged")


def test_a_case_no_rule_names_a_category_for_is_queued_for_an_officer_instead_of_judged() -> None:
    acceptance = accepted()

    queued = by_rules(acceptance)

    assert isinstance(queued.payload, CaseQueuedForReview)
    assert "no rule named a category" in queued.payload.reason
    assert "water_supply" in queued.payload.candidate_categories
    assert queued.payload.rules_fired == ()
    assert queued.causation_id == acceptance.event_id
    assert queued.correlation_id == acceptance.correlation_id
    assert queued.event_id == deterministic_id(acceptance.event_id, "review_requested")
    assert queued.actor == Actor.system(Producer.TRIAGE)


def test_a_queued_case_awaits_an_officer_and_the_rules_do_not_judge_it_again() -> None:
    case = given(*queued_case())

    assert case.awaits_officer
    assert judge_by_rules(case, REFERENCE, THRESHOLD, LATER) is None


def test_the_review_threshold_is_a_setting() -> None:
    assert isinstance(rules_judgment(a_report(*UNCLEAR), REFERENCE, 0.3), CaseJudged)
    strict = rules_judgment(a_report(*GARBAGE), REFERENCE, 0.9)
    assert isinstance(strict, CaseQueuedForReview)
    assert "sanitation" in strict.reason
    assert strict.candidate_categories[0] == "sanitation"
    assert [hit.rule_id for hit in strict.rules_fired] == ["R-KW-SANITATION"]


def test_candidate_categories_put_whole_keywords_before_parts_of_keywords() -> None:
    candidates = candidate_categories(Report.of(a_report("垃圾没人清运", "楼下水管也漏了")), REFERENCE)

    assert candidates[0] == "sanitation"
    assert "water_supply" in candidates[1:]


def test_a_report_that_mentions_no_keyword_or_part_of_one_has_no_candidates() -> None:
    assert candidate_categories(Report.of(a_report("咨询", "想问一下办事流程")), REFERENCE) == ()


def test_a_duplicate_is_not_judged_until_unmerged_and_accepted() -> None:
    linked = duplicate()
    assert judge_by_rules(given(linked), REFERENCE, THRESHOLD, LATER) is None

    unmerged = after(linked, CaseUnmerged(from_case_id=ORIGINAL_ID, unmerged_by="li.na", reason="不同事项"))
    acceptance = after(unmerged, a_report(), minutes=0)

    decided = by_rules(linked, unmerged, acceptance)
    assert decided.causation_id == acceptance.event_id


def test_a_merged_case_leaves_the_review_queue_and_comes_back_when_unmerged() -> None:
    events = queued_case()
    merge = merged(events[-1])
    unmerge = after(merge, CaseUnmerged(from_case_id=ORIGINAL_ID, unmerged_by="li.na", reason="不同事项"))

    assert not given(*events, merge).awaits_officer
    assert given(*events, merge, unmerge).awaits_officer


def test_a_closed_case_leaves_the_review_queue() -> None:
    events = queued_case()
    assert not given(*events, after(events[-1], CaseClosed(reason=ClosureReason.WITH_ORIGINAL_CASE))).awaits_officer


# An officer's judgment


def test_an_officer_judges_a_queued_case_in_answer_to_the_review_request() -> None:
    events = queued_case()
    correlation_id = uuid.uuid4()

    judged = officer_judges(given(*events), a_choice("water_supply"), correlation_id)

    assert isinstance(judged.payload, CaseJudged)
    assert judged.payload.category == "water_supply"
    assert judged.payload.judged_by is JudgedBy.OFFICER
    assert judged.payload.confidence == 1.0
    assert judged.payload.supersedes_event_id is None
    assert judged.actor == Actor(id=OFFICER, role=ActorRole.TRIAGE_OFFICER)
    assert judged.causation_id == events[-1].event_id
    assert judged.correlation_id == correlation_id
    case = given(*events, judged)
    assert not case.awaits_officer
    assert case.judgment is not None
    assert case.judgment.judged_by_id == OFFICER


def test_what_the_officer_leaves_out_the_rules_fill_in_as_of_the_officers_category() -> None:
    judged = officer_judges(given(*queued_case()), a_choice("water_supply"))

    assert isinstance(judged.payload, CaseJudged)
    # The rule for a reporter's water-supply category: risk 2, urgent, district.
    assert (judged.payload.risk_level, judged.payload.sla_tier, judged.payload.handling_level) == (
        2,
        SlaTierName.URGENT,
        HandlingLevel.DISTRICT,
    )
    assert [hit.rule_id for hit in judged.payload.rules_fired] == [OFFICER_RULE_ID, "R-GIVEN-R2-URGENT-DISTRICT"]


def test_campaigns_are_tagged_for_an_officers_category_unless_the_officer_names_them() -> None:
    tagged = officer_judges(given(*queued_case()), a_choice("neighbour_dispute"))
    named = officer_judges(given(*queued_case()), a_choice("neighbour_dispute", campaign_ids=()))

    assert isinstance(tagged.payload, CaseJudged)
    assert isinstance(named.payload, CaseJudged)
    assert tagged.payload.campaign_ids == ("dispute_resolution",)
    assert named.payload.campaign_ids == ()


def test_the_officers_own_choices_win() -> None:
    choice = a_choice(
        "water_supply",
        reason="整栋楼停水",
        risk_level=1,
        sla_tier=SlaTierName.EMERGENCY,
        handling_level=HandlingLevel.TOWN,
        campaign_ids=("high_rise_fire_hazards",),
    )

    judged = officer_judges(given(*queued_case()), choice)

    assert isinstance(judged.payload, CaseJudged)
    payload = judged.payload
    assert (payload.risk_level, payload.sla_tier, payload.handling_level) == (1, "emergency", "town")
    assert payload.campaign_ids == ("high_rise_fire_hazards",)
    assert [(hit.rule_id, hit.reason) for hit in payload.rules_fired] == [(OFFICER_RULE_ID, "整栋楼停水")]


def test_a_re_judgment_needs_a_reason() -> None:
    with pytest.raises(InvalidInput) as raised:
        officer_judges(given(*judged_case()), a_choice("environment_pollution"))
    assert raised.value.field == "reason"


def test_a_re_judgment_names_the_judgment_it_supersedes_and_why() -> None:
    events = judged_case()

    rejudged = officer_judges(given(*events), a_choice("environment_pollution", reason="实为工厂排污"))

    assert isinstance(rejudged.payload, CaseJudged)
    assert rejudged.payload.category == "environment_pollution"
    assert rejudged.payload.supersedes_event_id == events[-1].event_id
    assert rejudged.payload.rejudgment_reason == "实为工厂排污"
    assert rejudged.causation_id == events[-1].event_id
    judgment = given(*events, rejudged).judgment
    assert judgment is not None
    assert judgment.event_id == rejudged.event_id


def test_an_officers_judgment_can_itself_be_superseded() -> None:
    events = queued_case()
    first_judgment = officer_judges(given(*events), a_choice("water_supply"))

    second = officer_judges(given(*events, first_judgment), a_choice("drainage", reason="是排水管"))

    assert isinstance(second.payload, CaseJudged)
    assert second.payload.supersedes_event_id == first_judgment.event_id


@pytest.mark.parametrize(
    ("choice", "field"),
    [
        (a_choice("no_such_category"), "category"),
        (a_choice("water_supply", campaign_ids=("dispute_resolution", "no_such_campaign")), "campaign_ids.1"),
    ],
)
def test_an_unknown_category_or_campaign_is_bad_input_naming_the_field(choice: OfficerChoice, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        officer_judges(given(*queued_case()), choice)
    assert raised.value.field == field


def test_an_unknown_case_is_not_found() -> None:
    with pytest.raises(CaseNotFound):
        officer_judges(TriageCase(CASE_ID), a_choice())


def rejected() -> list[Envelope]:
    rejection = CaseRejected(
        case_no="CL1", source_system="s", external_id="e", title="测试", reason_code=RejectionReason.TEST_OR_SPAM
    )
    return [first(rejection)]


def closed_after_judgment() -> list[Envelope]:
    events = judged_case()
    return [*events, after(events[-1], CaseClosed(reason=ClosureReason.EVALUATED))]


@pytest.mark.parametrize(
    ("events", "rule"),
    [
        pytest.param(rejected(), CaseWasRejected, id="rejected"),
        pytest.param([duplicate()], CaseIsDuplicate, id="duplicate"),
        pytest.param([*queued_case(), merged(queued_case()[-1])], CaseIsMerged, id="merged"),
        pytest.param(closed_after_judgment(), CaseIsClosed, id="closed"),
        pytest.param([], NotAwaitingJudgment, id="not yet accepted"),
    ],
)
def test_a_case_that_is_not_its_own_open_case_is_not_judged_by_an_officer(
    events: list[Envelope], rule: type[RuleViolation]
) -> None:
    case = given(*events) if events else TriageCase(CASE_ID, known=True)
    with pytest.raises(rule):
        officer_judges(case, a_choice(reason="复核"))


def test_a_reopened_case_can_be_re_judged() -> None:
    events = closed_after_judgment()
    reopened = after(events[-1], CaseReopened(reason="不满意", reopen_count=1))

    rejudged = officer_judges(given(*events, reopened), a_choice("environment_pollution", reason="复核"))

    assert isinstance(rejudged.payload, CaseJudged)
