"""The committed reference data loads, is consistent, and routes every case somewhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from caseloop_events.contracts.reference import (
    REFERENCE_DIR_ENV,
    Duration,
    ReferenceData,
    ReferenceDataError,
    default_reference_dir,
    load_reference_data,
)

REFERENCE_DIR = Path(__file__).resolve().parents[3] / "deploy" / "reference"
GENERATOR = REFERENCE_DIR / "generate.py"
FALLBACK_ONLY_CATEGORIES = {"community_governance", "neighbour_dispute"}


@pytest.fixture(scope="module")
def data() -> ReferenceData:
    return load_reference_data(REFERENCE_DIR)


def test_the_district_has_21_towns_8_towns_and_13_streets(data: ReferenceData) -> None:
    kinds = [town.kind for town in data.towns]
    assert len(kinds) == 21
    assert kinds.count("town") == 8
    assert kinds.count("street") == 13


def test_there_are_59_units_of_which_21_are_town_governments_one_per_town(data: ReferenceData) -> None:
    governments = [unit for unit in data.units.values() if unit.kind == "town_government"]
    assert len(data.units) == 59
    assert len(governments) == 21
    for town in data.towns:
        government = data.town_government(town.code)
        assert government.unit_id == f"U-TOWN-{town.code}"
        assert government.area_towns == frozenset({town.code})


def test_there_are_12_specialist_groups_each_led_by_a_department(data: ReferenceData) -> None:
    assert len(data.specialist_groups) == 12
    for group in data.specialist_groups.values():
        assert data.units[group.lead_unit_id].kind == "department"


def test_there_are_the_5_governance_campaigns(data: ReferenceData) -> None:
    assert set(data.campaigns) == {
        "dispute_resolution",
        "juvenile_crime_prevention",
        "severe_mental_disorder_care",
        "high_rise_fire_hazards",
        "urban_community_governance",
    }


def test_campaigns_are_found_by_category(data: ReferenceData) -> None:
    assert [c.campaign_id for c in data.campaigns_for("high_rise_fire")] == ["high_rise_fire_hazards"]
    assert [c.campaign_id for c in data.campaigns_for("labour_wages")] == ["dispute_resolution"]
    assert data.campaigns_for("sanitation") == []


def test_the_4_sla_tiers_have_the_default_durations(data: ReferenceData) -> None:
    durations = {tier.tier: (tier.acknowledge, tier.resolve) for tier in data.sla_tiers.values()}
    assert durations == {
        "emergency": (Duration(minutes=30), Duration(hours=2)),
        "urgent": (Duration(hours=2), Duration(hours=24)),
        "general": (Duration(hours=24), Duration(days=7)),
        "complex": (Duration(working_days=1), Duration(working_days=15)),
    }


def test_a_duration_must_have_exactly_one_unit() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Duration(hours=2, minutes=30)
    with pytest.raises(ValueError, match="exactly one"):
        Duration()


def test_every_grid_code_is_unique_16_digits_and_its_place_resolves_to_its_town(
    data: ReferenceData,
) -> None:
    grid_count = 0
    for town in data.towns:
        for village in town.villages:
            for group in village.groups:
                for grid in group.grids:
                    grid_count += 1
                    place = data.place_of(grid.code)
                    assert len(grid.code) == 16
                    assert grid.code.isdigit()
                    assert place is not None
                    assert (place.town_code, place.village_code, place.group_code) == (
                        town.code,
                        village.code,
                        group.code,
                    )
                    assert place.grid_name == grid.name
    assert grid_count == len(data.grids)


def test_an_unknown_grid_has_no_place(data: ReferenceData) -> None:
    assert data.place_of("9999999999999999") is None


def test_every_category_is_answered_in_every_town_by_a_department_or_the_town_government(
    data: ReferenceData,
) -> None:
    for town in data.towns:
        for category in data.categories:
            departments = data.units_answering(category, town.code)
            government = data.town_government(town.code)
            assert departments or category in government.categories, (category, town.code)


def test_community_governance_and_neighbour_disputes_have_no_department_so_they_fall_back(
    data: ReferenceData,
) -> None:
    for town in data.towns:
        for category in FALLBACK_ONLY_CATEGORIES:
            assert data.units_answering(category, town.code) == []
            assert category in data.town_government(town.code).categories
        for category in data.categories.keys() - FALLBACK_ONLY_CATEGORIES:
            assert data.units_answering(category, town.code), (category, town.code)


def test_the_district_command_centre_is_the_fallback_for_every_category(data: ReferenceData) -> None:
    command = data.district_fallback_unit()
    assert command.unit_id == "U-DISTRICT-COMMAND"
    assert set(command.categories) == set(data.categories)
    assert command.area_towns is None


def test_units_answering_lists_town_restricted_units_before_district_wide_ones(
    data: ReferenceData,
) -> None:
    for town in data.towns:
        sanitation = data.units_answering("sanitation", town.code)
        assert sanitation[0].unit_id.startswith("U-CITY-MGMT-SQ")
        assert sanitation[0].covers(town.code)
        for category in data.categories:
            units = data.units_answering(category, town.code)
            assert units == sorted(units, key=lambda unit: (unit.area_towns is None, unit.unit_id))


def test_units_answering_leaves_out_town_governments_and_the_command_centre(data: ReferenceData) -> None:
    for town in data.towns:
        for category in data.categories:
            for unit in data.units_answering(category, town.code):
                assert unit.kind == "department"
                assert unit.unit_id != "U-DISTRICT-COMMAND"


def test_squadrons_cover_only_their_own_towns(data: ReferenceData) -> None:
    squadrons = [unit for unit_id, unit in data.units.items() if unit_id.startswith("U-CITY-MGMT-SQ")]
    assert len(squadrons) == 4
    covered = sorted(town for unit in squadrons for town in unit.area_towns or ())
    assert covered == sorted(town.code for town in data.towns)


def test_no_keyword_of_one_category_contains_a_keyword_of_another(data: ReferenceData) -> None:
    owned = [(keyword, category.code) for category in data.categories.values() for keyword in category.keywords]
    for keyword, code in owned:
        for other_keyword, other_code in owned:
            assert code == other_code or other_keyword not in keyword, (keyword, other_keyword)


def test_every_category_has_a_keyword_rule_naming_that_category_after_the_escalations(
    data: ReferenceData,
) -> None:
    rules = data.triage_rules.rules
    keyword_rules = {rule.then.category: rule for rule in rules if rule.then.category is not None}
    assert keyword_rules.keys() == data.categories.keys()
    for code, rule in keyword_rules.items():
        assert rule.when.keywords_any == data.categories[code].keywords
    escalations = [rule for rule in rules if rule.rule_id.startswith("R-ESC-")]
    assert escalations == list(rules[: len(escalations)])
    assert all(rule.then.risk_level == 1 and rule.then.sla_tier == "emergency" for rule in escalations)


def _copy_reference(target: Path) -> Path:
    target.mkdir()
    for source in REFERENCE_DIR.glob("*.json"):
        shutil.copy(source, target / source.name)
    return target


def test_a_unit_naming_an_unknown_category_is_rejected_naming_the_unit(tmp_path: Path) -> None:
    broken = _copy_reference(tmp_path / "broken")
    units_file = broken / "units.json"
    units = json.loads(units_file.read_text(encoding="utf-8"))
    water = next(unit for unit in units if unit["unit_id"] == "U-WATER")
    water["categories"].append("weather_forecast")
    units_file.write_text(json.dumps(units, ensure_ascii=False), encoding="utf-8")

    with pytest.raises(ReferenceDataError, match=r"units\.json: unit 'U-WATER' .*'weather_forecast'"):
        load_reference_data(broken)


def test_a_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    broken = _copy_reference(tmp_path / "broken")
    (broken / "sla_tiers.json").unlink()

    with pytest.raises(ReferenceDataError, match=r"^sla_tiers\.json: cannot be read"):
        load_reference_data(broken)


def test_the_reference_dir_comes_from_the_environment_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REFERENCE_DIR_ENV, str(tmp_path))
    assert default_reference_dir() == tmp_path


def test_a_reference_dir_from_the_environment_that_does_not_exist_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REFERENCE_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ReferenceDataError, match=REFERENCE_DIR_ENV):
        default_reference_dir()


def test_the_reference_dir_is_otherwise_found_above_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REFERENCE_DIR_ENV, raising=False)
    assert default_reference_dir().resolve() == REFERENCE_DIR


def test_the_generator_is_deterministic_and_matches_the_committed_files(tmp_path: Path) -> None:
    outputs = [tmp_path / "first", tmp_path / "second"]
    for out in outputs:
        subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True)

    committed = sorted(path.name for path in REFERENCE_DIR.glob("*.json"))
    assert len(committed) == 10
    for out in outputs:
        assert sorted(path.name for path in out.glob("*.json")) == committed
        for name in committed:
            assert (out / name).read_bytes() == (REFERENCE_DIR / name).read_bytes(), name


def _edit(folder: Path, file_name: str, change: Callable[[Any], None]) -> None:
    path = folder / file_name
    content = json.loads(path.read_text(encoding="utf-8"))
    change(content)
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")


def test_sla_rules_only_tighten_the_judged_tier_by_risk_category_and_campaign(data: ReferenceData) -> None:
    assert data.sla_tier_for("general", 3, "noise", ()) == "general", "no rule holds"
    assert data.sla_tier_for("complex", 2, "illegal_construction", ()) == "urgent", "risk 2 is at least urgent"
    assert data.sla_tier_for("general", 3, "gas_safety", ()) == "emergency", "gas safety is always an emergency"
    assert data.sla_tier_for("general", 3, "mental_health_care", ("severe_mental_disorder_care",)) == "urgent"
    assert data.sla_tier_for("emergency", 4, "greening", ()) == "emergency", "a rule never loosens a tier"


def test_the_emergency_profile_is_faster_than_the_normal_one_for_every_tier(data: ReferenceData) -> None:
    start = datetime(2026, 11, 27, 2, tzinfo=UTC)
    for tier in data.sla_tiers:
        normal = data.sla_timing(tier, emergency=False)
        emergency = data.sla_timing(tier, emergency=True)
        assert data.calendar.add(start, emergency.resolve) < data.calendar.add(start, normal.resolve), tier
        assert data.calendar.add(start, emergency.acknowledge) < data.calendar.add(start, normal.acknowledge), tier
    assert data.sla_timing("complex", emergency=False).resolve == Duration(working_days=15)


def test_the_escalation_ladder_climbs_one_level_per_rung_from_a_warning_to_a_red_notice(data: ReferenceData) -> None:
    ladder = data.escalation_ladder
    assert [(r.rung, r.level) for r in ladder.rungs] == [
        ("warning", "grid"),
        ("overdue", "village"),
        ("yellow", "town"),
        ("red", "district"),
    ]
    assert [r.at_share for r in ladder.rungs] == sorted(r.at_share for r in ladder.rungs)
    assert ladder.rung("overdue") is not None
    assert ladder.rung("overdue").at_share == 1.0  # type: ignore[union-attr]


def test_a_ladder_whose_rungs_go_back_in_time_or_down_the_hierarchy_is_rejected(tmp_path: Path) -> None:
    broken = _copy_reference(tmp_path / "earlier")
    _edit(broken, "escalation_ladder.json", lambda ladder: ladder["rungs"][2].update(at_share=0.5))
    with pytest.raises(ReferenceDataError, match=r"escalation_ladder\.json: .*'yellow' must come later"):
        load_reference_data(broken)
    lower = _copy_reference(tmp_path / "lower")
    _edit(lower, "escalation_ladder.json", lambda ladder: ladder["rungs"][3].update(level="grid"))
    with pytest.raises(ReferenceDataError, match=r"'red' is addressed lower"):
        load_reference_data(lower)


def test_an_sla_rule_naming_an_unknown_campaign_or_tier_is_rejected(tmp_path: Path) -> None:
    broken = _copy_reference(tmp_path / "campaign")
    _edit(broken, "sla_policy.json", lambda policy: policy["tier_rules"][2]["when"].update(campaign_in=["nope"]))
    with pytest.raises(ReferenceDataError, match=r"sla_policy\.json: rule .* unknown campaign 'nope'"):
        load_reference_data(broken)
    untimed = _copy_reference(tmp_path / "untimed")
    _edit(untimed, "sla_policy.json", lambda policy: policy["emergency_profile"]["tiers"].pop("complex"))
    with pytest.raises(ReferenceDataError, match=r"missing \['complex'\]"):
        load_reference_data(untimed)


def test_a_calendar_with_a_make_up_workday_on_a_weekday_is_rejected_naming_the_file(tmp_path: Path) -> None:
    broken = _copy_reference(tmp_path / "calendar")
    _edit(broken, "calendar.json", lambda years: years[0]["make_up_workdays"].append("2026-11-27"))
    with pytest.raises(ReferenceDataError, match=r"calendar\.json: .*2026-11-27 is not a weekend day"):
        load_reference_data(broken)
