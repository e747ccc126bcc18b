"""What screening reads in a report's text, pure: markers, actionable content, likeness."""

from __future__ import annotations

from datetime import timedelta

import pytest

from caseloop_intake.config import IntakeSettings
from caseloop_intake.domain.screening import (
    ScreeningRules,
    dice_similarity,
    meaningful_text,
    screening_marker_in,
    why_not_actionable,
)

RULES: ScreeningRules = IntakeSettings().screening_rules


def test_meaningful_text_keeps_letters_and_digits_of_any_script_casefolded() -> None:
    assert meaningful_text(" 路灯 坏了！！Lamp-Post 3号… ") == "路灯坏了lamppost3号"


def test_identical_texts_are_fully_similar_and_disjoint_ones_not_at_all() -> None:
    assert dice_similarity("小区门口垃圾堆积", "小区门口垃圾堆积") == 1.0
    assert dice_similarity("小区门口垃圾堆积", "路灯不亮行人看不清") == 0.0


def test_similarity_is_the_dice_coefficient_of_character_bigrams() -> None:
    # "垃圾清运" has bigrams 垃圾 圾清 清运; "垃圾没清运" has 垃圾 圾没 没清 清运: 2 shared of 3 + 4.
    assert dice_similarity("垃圾清运", "垃圾没清运") == pytest.approx(2 * 2 / (3 + 4))


def test_similarity_ignores_punctuation_spacing_and_case() -> None:
    assert dice_similarity("Garbage, not collected!", "garbage not collected") == 1.0


def test_similarity_is_symmetric() -> None:
    a, b = "小区门口垃圾堆积，三天没人清运", "小区门口垃圾没人清运，气味很大"
    assert dice_similarity(a, b) == dice_similarity(b, a)


def test_repeated_bigrams_count_each_time() -> None:
    # Multisets: 哈哈 three times against once is 2*1 / (3+1), not 1.0 as with sets.
    assert dice_similarity("哈哈哈哈", "哈哈") == pytest.approx(0.5)


def test_texts_too_short_for_a_bigram_are_alike_only_when_equal() -> None:
    assert dice_similarity("灯", "灯") == 1.0
    assert dice_similarity("灯", "路灯") == 0.0
    assert dice_similarity("", "") == 0.0


def test_reports_of_the_same_hazard_in_other_words_pass_the_default_threshold() -> None:
    first = "小区门口垃圾堆积 垃圾三天没人清运，气味很大"
    second = "小区门口垃圾没人清运 垃圾堆了三天，味道很大"
    assert dice_similarity(first, second) >= RULES.duplicate_similarity


@pytest.mark.parametrize(
    ("title", "description", "marker"),
    [
        ("测试", "联调用，请忽略", "测试"),
        ("路灯", "This is a TEST CASE, ignore", "test case"),
        ("ceshi", "路灯坏了", "ceshi"),
        ("路灯坏了", "请 忽略", None),
        ("路灯坏了", "晚上很黑", None),
    ],
)
def test_a_screening_marker_is_found_anywhere_in_title_or_description_whatever_the_case(
    title: str, description: str, marker: str | None
) -> None:
    assert screening_marker_in(title, description, RULES.test_markers) == marker


def test_markers_are_data_not_code() -> None:
    assert screening_marker_in("演练", "消防演练", ("演练",)) == "演练"
    assert screening_marker_in("测试", "测试", ()) is None


@pytest.mark.parametrize(
    ("title", "description"),
    [("？", "。。。"), ("a", "b"), ("无", "。"), ("如题", "无"), ("啊啊啊啊啊", "！！"), ("N/A", "none")],
)
def test_reports_of_too_few_characters_or_only_filler_have_no_actionable_content(title: str, description: str) -> None:
    assert why_not_actionable(title, description, RULES) is not None


@pytest.mark.parametrize(("title", "description"), [("路灯坏了", "如题"), ("积水", "下雨"), ("Pothole", "n/a")])
def test_a_short_report_that_names_something_is_actionable(title: str, description: str) -> None:
    assert why_not_actionable(title, description, RULES) is None


def test_the_minimum_of_meaningful_characters_is_a_setting() -> None:
    strict = ScreeningRules(
        (), (), min_meaningful_chars=10, duplicate_window=timedelta(hours=1), duplicate_similarity=1.0
    )
    why = why_not_actionable("路灯坏了", "很黑", strict)
    assert why == "title and description carry 6 letters or digits, fewer than 10"
