"""Screening, pure: given the case's events (and the open cases of its grid), when a report, a
merge or an unmerge comes, then these events."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, deterministic_id, event_caused_by
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput, NotFound
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CaseReport,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
)
from caseloop_events.contracts.reference import ReferenceData, default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened, ClosureReason
from caseloop_intake.config import IntakeSettings
from caseloop_intake.domain.model import (
    GRID_SCREENING_SOURCE,
    CannotMergeIntoItself,
    CaseAlreadyClosed,
    CaseNotOwnAccepted,
    EarlierCase,
    Hazard,
    IntakeCase,
    LocationGiven,
    MergeCase,
    NotMergedOrDuplicate,
    ReportCase,
    ScreenRound,
    TargetAlreadyClosed,
    TargetNotOwnAccepted,
    UnmergeCase,
    case_id_for,
    fold,
    merge,
    place_case,
    screen,
    screening_event,
    unmerge,
)
from caseloop_intake.domain.screening import ScreeningRules

REFERENCE: ReferenceData = load_reference_data(default_reference_dir())
RULES: ScreeningRules = IntakeSettings().screening_rules
GRID = "3301100010010101"
OTHER_GRID = "3301100010010201"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
SUPERVISOR = "li.na"
GARBAGE = ("小区门口垃圾没人清运", "垃圾堆了三天，味道很大")


def a_report(
    external_id: str = "HL-1",
    title: str = GARBAGE[0],
    description: str = GARBAGE[1],
    *,
    category: str | None = None,
    grid_code: str | None = GRID,
    address: str | None = "柳岸社区3号楼",
    now: datetime = NOW,
) -> ReportCase:
    return ReportCase(
        source_system="hotline-12345",
        external_id=external_id,
        title=title,
        description=description,
        category=category,
        location=LocationGiven(grid_code, address, None, None),
        reporter=None,
        occurred_at=None,
        attachments=("https://files.example/1.jpg",),
        callback_url="https://hotline.example/callback",
        reported_by=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        now=now,
    )


def an_open_case(
    case_no: str = "CL202603010000001",
    title: str = "小区门口垃圾堆积",
    description: str = "垃圾三天没人清运，气味很大",
    *,
    accepted_at: datetime = NOW - timedelta(hours=5),
    grid_code: str = GRID,
    category: str | None = None,
    status: CaseStatus = CaseStatus.ACCEPTED,
    closed_at: datetime | None = None,
) -> EarlierCase:
    return EarlierCase(
        case_id=uuid.uuid5(uuid.NAMESPACE_URL, case_no),
        case_no=case_no,
        status=status,
        grid_code=grid_code,
        reported_category=category,
        title=title,
        description=description,
        accepted_at=accepted_at,
        closed_at=closed_at,
    )


def screened(report: ReportCase, *earlier: EarlierCase) -> CaseAccepted | CaseRejected | CaseLinkedAsDuplicate:
    return screen(report, place_case(report.location, REFERENCE), "CL202603020000009", earlier, RULES)


def first_event(report: ReportCase, *earlier: EarlierCase) -> Envelope:
    case_id = case_id_for(report.source_system, report.external_id)
    return screening_event(case_id, screened(report, *earlier), report)


def given(*events: Envelope) -> IntakeCase:
    return fold(events[0].case_id, causal_order(events))


def closed(cause: Envelope, at: datetime = LATER) -> Envelope:
    return event_caused_by(
        cause,
        CaseClosed(reason=ClosureReason.EVALUATED),
        actor=Actor.system(Producer.SUPERVISION),
        occurred_at=at,
        decision="closed",
    )


def merging(case_id: uuid.UUID, into_case_id: uuid.UUID) -> MergeCase:
    return MergeCase(case_id=case_id, into_case_id=into_case_id, by=SUPERVISOR, reason="同一事项", now=LATER)


def unmerging(case_id: uuid.UUID) -> UnmergeCase:
    return UnmergeCase(case_id=case_id, by=SUPERVISOR, reason="不是同一事项", now=LATER + timedelta(hours=1))


# Screening a report


def test_a_report_placed_in_a_grid_that_repeats_no_open_case_is_accepted_whole() -> None:
    outcome = screened(a_report())

    assert isinstance(outcome, CaseAccepted)
    assert outcome.location.grid_code == GRID
    assert outcome.location.town_code == GRID[:9]
    assert outcome.callback_url == "https://hotline.example/callback"
    assert outcome.attachments == ("https://files.example/1.jpg",)
    assert outcome.accepted_at == NOW


def test_a_report_carrying_a_test_marker_is_rejected_as_test_or_spam() -> None:
    outcome = screened(a_report(title="测试", description="联调测试件，请忽略"))

    assert isinstance(outcome, CaseRejected)
    assert outcome.reason_code is RejectionReason.TEST_OR_SPAM
    assert "测试" in outcome.note
    assert outcome.case_no == "CL202603020000009"


def test_a_report_of_filler_only_is_rejected_as_having_no_actionable_content() -> None:
    outcome = screened(a_report(title="如题", description="无"))

    assert isinstance(outcome, CaseRejected)
    assert outcome.reason_code is RejectionReason.NO_ACTIONABLE_CONTENT


def test_a_report_with_no_grid_code_and_an_address_outside_the_region_is_rejected_as_out_of_jurisdiction() -> None:
    report = a_report(grid_code=None, address="上海市浦东新区世纪大道100号")

    outcome = screened(report)

    assert isinstance(outcome, CaseRejected)
    assert outcome.reason_code is RejectionReason.OUT_OF_JURISDICTION
    assert outcome.address == "上海市浦东新区世纪大道100号"


def test_an_unknown_grid_code_is_bad_input_not_a_rejection() -> None:
    with pytest.raises(InvalidInput) as raised:
        place_case(LocationGiven("9999999999999999", None, None, None), REFERENCE)
    assert raised.value.field == "location.grid_code"


def test_an_address_naming_a_village_of_the_region_places_the_case_there() -> None:
    village = REFERENCE.grids[GRID].village_name

    place = place_case(LocationGiven(None, f"{village}3号楼门口", None, None), REFERENCE)

    assert place is not None
    assert place.village_code == GRID[:12]


def test_the_test_marker_is_checked_before_the_place() -> None:
    outcome = screened(a_report(title="测试", grid_code=None, address="火星"))

    assert isinstance(outcome, CaseRejected)
    assert outcome.reason_code is RejectionReason.TEST_OR_SPAM


# Probable duplicates


def test_a_report_like_an_open_case_of_its_grid_is_linked_to_it_instead_of_accepted() -> None:
    original = an_open_case()

    outcome = screened(a_report(), original)

    assert isinstance(outcome, CaseLinkedAsDuplicate)
    assert outcome.original_case_id == original.case_id
    assert outcome.original_case_no == original.case_no
    assert outcome.similarity >= RULES.duplicate_similarity
    assert original.case_no in outcome.reason
    # The whole report is kept, so an unmerge can still send it round the loop.
    assert outcome.location.grid_code == GRID
    assert outcome.title == GARBAGE[0]
    assert outcome.callback_url == "https://hotline.example/callback"


@pytest.mark.parametrize(
    "earlier",
    [
        pytest.param(an_open_case(grid_code=OTHER_GRID), id="another grid"),
        pytest.param(an_open_case(accepted_at=NOW - timedelta(hours=73)), id="accepted before the window"),
        pytest.param(an_open_case(closed_at=NOW - timedelta(hours=1)), id="closed"),
        pytest.param(an_open_case(status=CaseStatus.DUPLICATE), id="itself a duplicate"),
        pytest.param(an_open_case(status=CaseStatus.MERGED), id="merged"),
        pytest.param(an_open_case(category="noise"), id="another category named"),
        pytest.param(an_open_case(title="路灯不亮", description="整条路的路灯都不亮"), id="unlike"),
    ],
)
def test_a_report_is_accepted_when_the_only_similar_case_is_not_its_own_open_one_in_grid_window_and_category(
    earlier: EarlierCase,
) -> None:
    assert isinstance(screened(a_report(category="sanitation"), earlier), CaseAccepted)


def test_a_category_named_by_only_one_of_the_two_reports_does_not_keep_them_apart() -> None:
    assert isinstance(screened(a_report(category="sanitation"), an_open_case(category=None)), CaseLinkedAsDuplicate)
    assert isinstance(screened(a_report(category=None), an_open_case(category="sanitation")), CaseLinkedAsDuplicate)


def test_a_case_accepted_at_the_edge_of_the_window_still_draws_duplicates() -> None:
    edge = an_open_case(accepted_at=NOW - RULES.duplicate_window)
    assert isinstance(screened(a_report(), edge), CaseLinkedAsDuplicate)


def test_the_most_similar_open_case_is_the_original_then_the_earliest() -> None:
    alike = an_open_case("CL202603010000001", "小区门口垃圾堆积", "垃圾三天没人清运，气味很大")
    same_early = an_open_case("CL202603010000002", *GARBAGE, accepted_at=NOW - timedelta(hours=9))
    same_late = an_open_case("CL202603010000003", *GARBAGE, accepted_at=NOW - timedelta(hours=2))

    outcome = screened(a_report(), alike, same_late, same_early)

    assert isinstance(outcome, CaseLinkedAsDuplicate)
    assert outcome.original_case_no == "CL202603010000002"
    assert outcome.similarity == 1.0


def test_the_threshold_and_window_are_settings() -> None:
    strict = IntakeSettings(duplicate_similarity=0.99, duplicate_window=timedelta(hours=1)).screening_rules
    report = a_report()
    place = place_case(report.location, REFERENCE)

    assert isinstance(screen(report, place, "CL1", [an_open_case()], strict), CaseAccepted)


def test_a_rejected_report_is_never_linked_as_a_duplicate() -> None:
    outcome = screened(a_report(title="测试", description=GARBAGE[1]), an_open_case(*GARBAGE))
    assert isinstance(outcome, CaseRejected)


def test_the_first_event_of_a_case_has_an_id_that_follows_from_the_case_and_its_outcome() -> None:
    report = a_report()
    case_id = case_id_for(report.source_system, report.external_id)

    accepted = first_event(report)
    linked = first_event(report, an_open_case())

    assert accepted.event_id == deterministic_id(case_id, "accepted") == first_event(report).event_id
    assert linked.event_id == deterministic_id(case_id, "duplicate_linked")
    assert accepted.actor == Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM)


# What intake knows of a case


def test_each_screening_outcome_sets_the_case_status() -> None:
    assert given(first_event(a_report())).status is CaseStatus.ACCEPTED
    assert given(first_event(a_report(title="测试"))).status is CaseStatus.REJECTED
    duplicate = given(first_event(a_report(), an_open_case()))
    assert duplicate.status is CaseStatus.DUPLICATE
    assert duplicate.follows == an_open_case().case_id


def test_a_closure_is_remembered_until_the_case_is_reopened() -> None:
    accepted = first_event(a_report())
    closure = closed(accepted)
    reopened = event_caused_by(
        closure,
        CaseReopened(reason="不满意", reopen_count=1),
        actor=Actor.system(Producer.SUPERVISION),
        occurred_at=LATER + timedelta(hours=1),
        decision="reopened",
    )

    assert given(accepted, closure).closed_at == LATER
    assert given(accepted, closure, reopened).closed_at is None


# Merge


def two_accepted_cases() -> tuple[Envelope, Envelope]:
    original = first_event(a_report("HL-ORIGINAL", "路灯不亮", "晚上整条路的路灯都不亮"))
    repeat = first_event(a_report("HL-REPEAT"))
    return original, repeat


def test_a_supervisor_merges_an_accepted_case_into_another_open_accepted_case() -> None:
    original, repeat = two_accepted_cases()
    command = replace(merging(repeat.case_id, original.case_id), subject="key-of-the-command-centre")

    event = merge(given(repeat), given(original), command)

    assert isinstance(event.payload, CasesMerged)
    assert event.case_id == repeat.case_id
    assert event.payload.into_case_id == original.case_id
    assert event.payload.into_case_no == given(original).case_no
    assert event.payload.merged_by == SUPERVISOR
    assert event.actor == Actor(id=SUPERVISOR, role=ActorRole.SUPERVISOR, subject="key-of-the-command-centre")
    assert event.causation_id == repeat.event_id
    assert event.correlation_id == command.correlation_id
    merged = given(repeat, event)
    assert merged.status is CaseStatus.MERGED
    assert merged.follows == original.case_id


def test_a_case_is_not_merged_into_itself() -> None:
    _, repeat = two_accepted_cases()
    with pytest.raises(CannotMergeIntoItself):
        merge(given(repeat), given(repeat), merging(repeat.case_id, repeat.case_id))


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(lambda: first_event(a_report("HL-R", title="测试")), id="rejected"),
        pytest.param(lambda: first_event(a_report("HL-D"), an_open_case()), id="duplicate"),
    ],
)
def test_only_an_accepted_case_is_merged(first: Callable[[], Envelope]) -> None:
    original, _ = two_accepted_cases()
    case_event: Envelope = first()
    with pytest.raises(CaseNotOwnAccepted):
        merge(given(case_event), given(original), merging(case_event.case_id, original.case_id))


def test_a_merged_case_is_not_merged_again() -> None:
    original, repeat = two_accepted_cases()
    merged = merge(given(repeat), given(original), merging(repeat.case_id, original.case_id))
    with pytest.raises(CaseNotOwnAccepted):
        merge(given(repeat, merged), given(original), merging(repeat.case_id, original.case_id))


def test_a_case_is_merged_only_into_an_accepted_case_so_no_chain_of_followers_forms() -> None:
    original, repeat = two_accepted_cases()
    duplicate = first_event(a_report("HL-D"), an_open_case())
    with pytest.raises(TargetNotOwnAccepted):
        merge(given(original), given(duplicate), merging(original.case_id, duplicate.case_id))
    rejected = first_event(a_report("HL-R", title="测试"))
    with pytest.raises(TargetNotOwnAccepted):
        merge(given(repeat), given(rejected), merging(repeat.case_id, rejected.case_id))


def test_closed_cases_are_neither_merged_nor_merged_into() -> None:
    original, repeat = two_accepted_cases()
    with pytest.raises(CaseAlreadyClosed):
        merge(given(repeat, closed(repeat)), given(original), merging(repeat.case_id, original.case_id))
    with pytest.raises(TargetAlreadyClosed):
        merge(given(repeat), given(original, closed(original)), merging(repeat.case_id, original.case_id))


def test_merging_an_unknown_case_or_into_an_unknown_case_is_not_found() -> None:
    original, _ = two_accepted_cases()
    unknown = uuid.uuid4()
    with pytest.raises(CaseNotFound):
        merge(IntakeCase(unknown), given(original), merging(unknown, original.case_id))
    with pytest.raises(NotFound, match="into_case_id"):
        merge(given(original), IntakeCase(unknown), merging(original.case_id, unknown))


# Unmerge


def test_unmerging_a_merged_case_restores_it_as_accepted() -> None:
    original, repeat = two_accepted_cases()
    merged = merge(given(repeat), given(original), merging(repeat.case_id, original.case_id))

    [unmerged] = unmerge(given(repeat, merged), unmerging(repeat.case_id))

    assert isinstance(unmerged.payload, CaseUnmerged)
    assert unmerged.payload.from_case_id == original.case_id
    assert unmerged.causation_id == merged.event_id
    case = given(repeat, merged, unmerged)
    assert case.status is CaseStatus.ACCEPTED
    assert case.follows is None
    assert case.accepted == given(repeat).accepted


def test_unmerging_a_duplicate_accepts_its_kept_report_for_judgment() -> None:
    original = an_open_case()
    linked = first_event(a_report(), original)
    command = unmerging(linked.case_id)

    unmerged, accepted = unmerge(given(linked), command)

    assert isinstance(unmerged.payload, CaseUnmerged)
    assert unmerged.payload.from_case_id == original.case_id
    assert isinstance(accepted.payload, CaseAccepted)
    assert accepted.causation_id == unmerged.event_id
    assert accepted.correlation_id == unmerged.correlation_id
    assert accepted.event_id == deterministic_id(unmerged.event_id, "accepted")
    assert accepted.payload.accepted_at == command.now
    assert isinstance(linked.payload, CaseLinkedAsDuplicate)
    for field in CaseReport.model_fields:
        assert getattr(accepted.payload, field) == getattr(linked.payload, field)
    case = given(linked, unmerged, accepted)
    assert case.status is CaseStatus.ACCEPTED
    assert case.duplicate_of is None


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(lambda: first_event(a_report()), id="accepted"),
        pytest.param(lambda: first_event(a_report(title="测试")), id="rejected"),
    ],
)
def test_only_a_merged_case_or_a_duplicate_is_unmerged(first: Callable[[], Envelope]) -> None:
    case_event: Envelope = first()
    with pytest.raises(NotMergedOrDuplicate):
        unmerge(given(case_event), unmerging(case_event.case_id))


def test_a_duplicate_closed_with_its_original_is_not_unmerged() -> None:
    linked = first_event(a_report(), an_open_case())
    with pytest.raises(CaseAlreadyClosed):
        unmerge(given(linked, closed(linked)), unmerging(linked.case_id))


# Screening rounds


def test_each_hazard_of_a_screening_round_is_a_report_with_an_external_id_that_follows_from_the_round() -> None:
    hazard = Hazard("井盖缺失", "人行道井盖丢了", category=None, address=None, occurred_at=None, attachments=())
    round_without_id = ScreenRound(GRID, "gw-0101", date(2026, 3, 2), None, (hazard, hazard), NOW)
    named_round = ScreenRound(GRID, "gw-0101", date(2026, 3, 2), "R-77", (hazard,), NOW)

    reports = round_without_id.reports()

    assert [r.external_id for r in reports] == [f"{GRID}/gw-0101/2026-03-02/0", f"{GRID}/gw-0101/2026-03-02/1"]
    assert [r.external_id for r in named_round.reports()] == ["R-77/0"]
    assert all(r.source_system == GRID_SCREENING_SOURCE for r in reports)
    assert all(r.location.grid_code == GRID for r in reports)
    assert reports[0].reported_by == Actor(id="gw-0101", role=ActorRole.SOURCE_SYSTEM)
