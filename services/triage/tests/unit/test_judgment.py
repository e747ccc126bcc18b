"""Judging reported cases by the rules of the real reference data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.reference import ReferenceData, default_reference_dir, load_reference_data
from caseloop_events.contracts.triage import JudgedBy, RuleHit
from caseloop_triage.domain.judgment import judge

GRID = "3301100010010101"


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference_data(default_reference_dir())


def a_report(title: str, description: str, category: str | None = None) -> CaseAccepted:
    return CaseAccepted(
        case_no="CL202603020000001",
        source_system="hotline-12345",
        external_id="HL-2026-000001",
        title=title,
        description=description,
        reported_category=category,
        location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
        accepted_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )


def reason_of(rule_id: str, reference: ReferenceData) -> str:
    return next(rule.description for rule in reference.triage_rules.rules if rule.rule_id == rule_id)


def test_a_category_the_reporter_chose_is_kept_with_full_confidence(reference: ReferenceData) -> None:
    judged = judge(a_report("路灯坏了", "晚上很黑，楼下两户一直吵架", category="neighbour_dispute"), reference)

    assert judged.category == "neighbour_dispute"
    assert judged.confidence == 1.0
    assert judged.handling_level is HandlingLevel.VILLAGE
    assert judged.judged_by is JudgedBy.RULES


def test_a_keyword_in_the_report_judges_the_category(reference: ReferenceData) -> None:
    judged = judge(a_report("小区门口垃圾堆积", "垃圾三天没人清运，气味很大"), reference)

    assert judged.category == "sanitation"
    assert judged.confidence == 0.8
    assert (judged.risk_level, judged.sla_tier, judged.handling_level) == (3, SlaTierName.GENERAL, HandlingLevel.GRID)


@pytest.mark.parametrize("danger", ["着火了", "发生爆炸", "有人受伤", "the bins are ON FIRE"])
def test_fire_explosion_or_injury_makes_any_case_an_emergency(reference: ReferenceData, danger: str) -> None:
    judged = judge(a_report("小区门口垃圾堆积", f"垃圾没人清运，{danger}"), reference)

    assert judged.category == "sanitation"
    assert judged.risk_level == 1
    assert judged.sla_tier is SlaTierName.EMERGENCY


def test_a_report_no_rule_recognises_goes_to_the_community_with_low_confidence(reference: ReferenceData) -> None:
    judged = judge(a_report("咨询", "想问一下办事流程"), reference)

    assert judged.category == "community_governance"
    assert judged.confidence == 0.3
    assert judged.rules_fired == (RuleHit(rule_id="DEFAULT-CATEGORY", reason="no rule named a category"),)
    defaults = reference.triage_rules.defaults
    assert (judged.risk_level, judged.sla_tier, judged.handling_level) == (
        defaults.risk_level,
        defaults.sla_tier,
        defaults.handling_level,
    )


def test_a_case_of_a_campaign_category_is_tagged_with_the_campaign(reference: ReferenceData) -> None:
    judged = judge(a_report("楼上漏水", "和楼上邻居沟通无果"), reference)

    assert judged.category == "neighbour_dispute"
    assert judged.campaign_ids == ("dispute_resolution",)


def test_a_campaign_keyword_tags_the_campaign_whatever_the_category(reference: ReferenceData) -> None:
    judged = judge(a_report("小区门口垃圾没人清运", "存在消防隐患，希望社区出面调解"), reference)

    assert judged.category == "sanitation"
    assert judged.campaign_ids == ("dispute_resolution", "high_rise_fire_hazards")


def test_the_rules_that_fired_are_listed_in_order_with_their_reasons(reference: ReferenceData) -> None:
    judged = judge(a_report("楼下垃圾堆着火了", "火势不大"), reference)

    assert judged.rules_fired == (
        RuleHit(rule_id="R-ESC-FIRE", reason=reason_of("R-ESC-FIRE", reference)),
        RuleHit(rule_id="R-KW-SANITATION", reason=reason_of("R-KW-SANITATION", reference)),
    )


def test_a_matching_rule_that_sets_nothing_new_is_not_listed(reference: ReferenceData) -> None:
    judged = judge(a_report("电动车在楼道充电", "电动车充电很危险"), reference)

    assert [hit.rule_id for hit in judged.rules_fired] == ["R-KW-FIRE-HAZARD"]
    assert (judged.risk_level, judged.sla_tier) == (1, SlaTierName.EMERGENCY)


def test_the_first_rule_to_set_a_field_wins(reference: ReferenceData) -> None:
    judged = judge(a_report("楼道电动车充电", "还有垃圾没人清运"), reference)

    assert judged.category == "fire_hazard"
    assert [hit.rule_id for hit in judged.rules_fired] == ["R-KW-FIRE-HAZARD"]
