"""Caseloop's reference data: places, case categories, responsible units and triage rules.

The data lives as JSON files in ``deploy/reference`` (written by
``deploy/reference/generate.py``). :func:`load_reference_data` reads and
cross-checks them into an immutable :class:`ReferenceData`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from caseloop_events.contracts.calendar import CalendarYear, Duration, WorkingCalendar

__all__ = [
    "DISTRICT_COMMAND_UNIT_ID",
    "HIERARCHY_LEVELS",
    "REFERENCE_DIR_ENV",
    "Campaign",
    "Category",
    "District",
    "Duration",
    "EscalationLadder",
    "EscalationRung",
    "Grid",
    "GridPlace",
    "Group",
    "HandlingLevel",
    "ReferenceData",
    "ReferenceDataError",
    "RuleCondition",
    "RuleOutcome",
    "SlaPolicy",
    "SlaProfile",
    "SlaTier",
    "SlaTierRule",
    "SlaTiming",
    "SpecialistGroup",
    "Town",
    "TriageDefaults",
    "TriageRule",
    "TriageRules",
    "Unit",
    "UnitArea",
    "Village",
    "default_reference_dir",
    "load_reference_data",
]

REFERENCE_DIR_ENV = "CASELOOP_REFERENCE_DIR"
"""Environment variable that overrides where the reference files are read from."""

DISTRICT_COMMAND_UNIT_ID = "U-DISTRICT-COMMAND"
"""The district command centre, owner of every case no other unit answers."""

REGION_FILE = "region.json"
CATEGORIES_FILE = "categories.json"
UNITS_FILE = "units.json"
SPECIALIST_GROUPS_FILE = "specialist_groups.json"
CAMPAIGNS_FILE = "campaigns.json"
SLA_TIERS_FILE = "sla_tiers.json"
SLA_POLICY_FILE = "sla_policy.json"
ESCALATION_LADDER_FILE = "escalation_ladder.json"
CALENDAR_FILE = "calendar.json"
TRIAGE_RULES_FILE = "triage_rules.json"

T = TypeVar("T")

HandlingLevel = Literal["grid", "village", "town", "district"]
#: The administrative hierarchy from the bottom up: each escalation rung is addressed one level higher.
HIERARCHY_LEVELS: tuple[HandlingLevel, ...] = ("grid", "village", "town", "district")
RiskLevel = Annotated[int, Field(ge=1, le=4)]
DistrictCode = Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
TownCode = Annotated[str, StringConstraints(pattern=r"^\d{9}$")]
VillageCode = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
GroupCode = Annotated[str, StringConstraints(pattern=r"^\d{14}$")]
GridCode = Annotated[str, StringConstraints(pattern=r"^\d{16}$")]
CategoryCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$")]


def _require_lowercase(keyword: str) -> str:
    # Matching lowercases the reported text, so an uppercase keyword would never match.
    if keyword != keyword.lower():
        raise ValueError(f"keyword {keyword!r} must be lowercase")
    return keyword


Keyword = Annotated[str, StringConstraints(min_length=1), AfterValidator(_require_lowercase)]
Keywords = Annotated[tuple[Keyword, ...], Field(min_length=1)]


class ReferenceDataError(ValueError):
    """Reference data is missing, malformed or inconsistent; the message names the file."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Grid(_Frozen):
    """A grid (网格), the smallest patrol area; its code has 16 digits."""

    code: GridCode
    name: str


class Group(_Frozen):
    """A group (小组) of a village or community."""

    code: GroupCode
    name: str
    grids: Annotated[tuple[Grid, ...], Field(min_length=1)]


class Village(_Frozen):
    """A village (村) or community (社区)."""

    code: VillageCode
    name: str
    kind: Literal["village", "community"]
    groups: Annotated[tuple[Group, ...], Field(min_length=1)]


class Town(_Frozen):
    """A town (镇) or street (街道)."""

    code: TownCode
    name: str
    kind: Literal["town", "street"]
    villages: Annotated[tuple[Village, ...], Field(min_length=1)]


class District(_Frozen):
    """The district (区) the system serves."""

    code: DistrictCode
    name: str


class _Region(_Frozen):
    district: District
    towns: Annotated[tuple[Town, ...], Field(min_length=1)]


class GridPlace(_Frozen):
    """A grid together with every administrative level above it."""

    grid_code: str
    grid_name: str
    group_code: str
    group_name: str
    village_code: str
    village_name: str
    town_code: str
    town_name: str
    district_code: str
    district_name: str


class Category(_Frozen):
    """A case category with the (lowercase) keywords that identify it."""

    code: CategoryCode
    name: str
    keywords: Keywords


class UnitArea(_Frozen):
    """The towns a unit answers for: ``"all"`` or an explicit list of town codes."""

    towns: Literal["all"] | Annotated[tuple[TownCode, ...], Field(min_length=1)]


class Unit(_Frozen):
    """A responsible unit: a district department or a town government."""

    unit_id: str
    name: str
    kind: Literal["department", "town_government"]
    level: Literal["district", "town"]
    town_code: TownCode | None
    categories: tuple[str, ...]
    area: UnitArea

    @model_validator(mode="after")
    def _check_kind_matches_level(self) -> Unit:
        if self.kind == "department" and (self.level != "district" or self.town_code is not None):
            raise ValueError("a department has level 'district' and no town_code")
        if self.kind == "town_government" and (
            self.level != "town" or self.town_code is None or self.area.towns != (self.town_code,)
        ):
            raise ValueError("a town government has level 'town' and covers exactly its own town")
        return self

    @property
    def area_towns(self) -> frozenset[str] | None:
        """The town codes this unit is restricted to, or None when it covers all towns."""
        return None if self.area.towns == "all" else frozenset(self.area.towns)

    def covers(self, town_code: str) -> bool:
        """Whether this unit answers for cases in the given town."""
        towns = self.area_towns
        return towns is None or town_code in towns


class SpecialistGroup(_Frozen):
    """A specialist group (专项组) led by a department."""

    group_id: str
    name: str
    categories: Annotated[tuple[str, ...], Field(min_length=1)]
    lead_unit_id: str


class Campaign(_Frozen):
    """A governance campaign that tracks cases of some categories."""

    campaign_id: str
    name: str
    categories: Annotated[tuple[str, ...], Field(min_length=1)]
    keywords: Keywords


class SlaTier(_Frozen):
    """A service-level tier: how soon a case must be acknowledged and resolved."""

    tier: str
    name: str
    resolve: Duration
    acknowledge: Duration


class SlaTiming(_Frozen):
    """How soon a case of one tier must be acknowledged (签收) and resolved (办结)."""

    acknowledge: Duration
    resolve: Duration


class SlaProfile(_Frozen):
    """A set of timings for every tier; emergency mode (平战转换) switches a region to its own."""

    profile_id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$")]
    name: str
    tiers: Mapping[str, SlaTiming]


class SlaTierCondition(_Frozen):
    """When an SLA rule applies; every condition present must hold.

    ``risk_level_at_most`` holds for that risk level and the more serious ones (1 is the most
    serious), ``category_in`` for the listed categories, ``campaign_in`` for a case any listed
    campaign tracks.
    """

    risk_level_at_most: RiskLevel | None = None
    category_in: Annotated[tuple[str, ...], Field(min_length=1)] | None = None
    campaign_in: Annotated[tuple[str, ...], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _check_not_empty(self) -> SlaTierCondition:
        if self.risk_level_at_most is None and self.category_in is None and self.campaign_in is None:
            raise ValueError("an SLA rule needs at least one condition")
        return self

    def holds_for(self, risk_level: int | None, category: str | None, campaign_ids: Iterable[str]) -> bool:
        if self.risk_level_at_most is not None and (risk_level is None or risk_level > self.risk_level_at_most):
            return False
        if self.category_in is not None and category not in self.category_in:
            return False
        return self.campaign_in is None or any(campaign in self.campaign_in for campaign in campaign_ids)


class SlaTierRule(_Frozen):
    """A rule that holds a case to at least ``tier``: it can only tighten the judged tier."""

    rule_id: str
    description: str
    when: SlaTierCondition
    tier: str


class SlaPolicy(_Frozen):
    """Which tier a case is held to, and the timings of the emergency profile.

    The normal profile's timings are those of ``sla_tiers.json``.
    """

    tier_rules: tuple[SlaTierRule, ...]
    emergency_profile: SlaProfile


class EscalationRung(_Frozen):
    """One rung of the escalation ladder (预警 → 超期 → 黄牌 → 红牌).

    The rung is reached when the clock has used ``at_share`` of its allowed time: 0.8 is a
    warning with a fifth of the time left, 1.0 the deadline, 1.5 half the allowed time again
    past it. Shares scale with the tier, so one ladder serves a 2-hour and a 15-day clock.
    """

    rung: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$")]
    name: str
    level: HandlingLevel
    at_share: Annotated[float, Field(gt=0)]


class EscalationLadder(_Frozen):
    """The rungs in the order they are reached, each addressed to the same level or one above."""

    rungs: Annotated[tuple[EscalationRung, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_order(self) -> EscalationLadder:
        names = [rung.rung for rung in self.rungs]
        if len(set(names)) != len(names):
            raise ValueError("rung names must be unique")
        for lower, higher in zip(self.rungs, self.rungs[1:], strict=False):
            if higher.at_share <= lower.at_share:
                raise ValueError(f"rung {higher.rung!r} must come later than {lower.rung!r} (at_share)")
            if HIERARCHY_LEVELS.index(higher.level) < HIERARCHY_LEVELS.index(lower.level):
                raise ValueError(f"rung {higher.rung!r} is addressed lower than {lower.rung!r}")
        return self

    def rung(self, name: str) -> EscalationRung | None:
        return next((rung for rung in self.rungs if rung.rung == name), None)


class RuleCondition(_Frozen):
    """When a triage rule applies; every condition present must hold.

    ``category_given`` holds when the reporter chose a category,
    ``category_in`` when the case's current category is listed, and
    ``keywords_any`` when the lowercased report text contains any keyword.
    """

    category_given: Literal[True] | None = None
    keywords_any: Keywords | None = None
    category_in: Annotated[tuple[str, ...], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _check_not_empty(self) -> RuleCondition:
        if self.category_given is None and self.keywords_any is None and self.category_in is None:
            raise ValueError("a rule needs at least one condition")
        return self


class RuleOutcome(_Frozen):
    """The triage fields a rule sets; fields left out are not touched."""

    category: str | None = None
    risk_level: RiskLevel | None = None
    sla_tier: str | None = None
    handling_level: HandlingLevel | None = None

    @model_validator(mode="after")
    def _check_not_empty(self) -> RuleOutcome:
        fields = [self.category, self.risk_level, self.sla_tier, self.handling_level]
        if all(value is None for value in fields):
            raise ValueError("a rule must set at least one field")
        return self


class TriageRule(_Frozen):
    """One judgment rule: a condition and the fields it sets."""

    rule_id: str
    description: str
    when: RuleCondition
    then: RuleOutcome


class TriageDefaults(_Frozen):
    """The triage fields used when no rule set them."""

    risk_level: RiskLevel
    sla_tier: str
    handling_level: HandlingLevel


class TriageRules(_Frozen):
    """Ordered triage rules and the defaults.

    Rules are evaluated in order against the report. Each matching rule sets
    only the fields that are still unset (a category chosen by the reporter
    counts as set), so the first rule to set a field wins; ``defaults`` fill
    whatever no rule set.
    """

    rules: tuple[TriageRule, ...]
    defaults: TriageDefaults


@dataclass(frozen=True)
class ReferenceData:
    """All reference data, cross-checked; mappings are read-only and keep file order."""

    district: District
    towns: tuple[Town, ...]
    grids: Mapping[str, GridPlace]
    categories: Mapping[str, Category]
    units: Mapping[str, Unit]
    specialist_groups: Mapping[str, SpecialistGroup]
    campaigns: Mapping[str, Campaign]
    sla_tiers: Mapping[str, SlaTier]
    triage_rules: TriageRules
    sla_policy: SlaPolicy
    escalation_ladder: EscalationLadder
    calendar: WorkingCalendar

    def place_of(self, grid_code: str) -> GridPlace | None:
        """The grid's place in the region, or None for an unknown grid code."""
        return self.grids.get(grid_code)

    def units_answering(self, category: str, town_code: str) -> list[Unit]:
        """Departments that handle ``category`` in the town, most local first.

        Town governments and the district command centre are not included:
        they are the fallbacks when this list is empty. Units restricted to
        some towns come before district-wide ones, then by unit_id.
        """
        answering = [
            unit
            for unit in self.units.values()
            if unit.kind == "department"
            and unit.unit_id != DISTRICT_COMMAND_UNIT_ID
            and category in unit.categories
            and unit.covers(town_code)
        ]
        return sorted(answering, key=lambda unit: (unit.area_towns is None, unit.unit_id))

    def town_government(self, town_code: str) -> Unit:
        """The town's own government; raises KeyError for an unknown town."""
        for unit in self.units.values():
            if unit.kind == "town_government" and unit.town_code == town_code:
                return unit
        raise KeyError(town_code)

    def district_fallback_unit(self) -> Unit:
        """The district command centre, which owns cases nobody else answers."""
        return self.units[DISTRICT_COMMAND_UNIT_ID]

    def sla_tier_for(
        self, judged_tier: str, risk_level: int | None, category: str | None, campaign_ids: Iterable[str]
    ) -> str:
        """The tier a case is held to: the judged one, tightened by every SLA rule that holds.

        Tiers are ordered as in ``sla_tiers.json``, the tightest first.
        """
        order = list(self.sla_tiers)
        campaigns = tuple(campaign_ids)
        tier = judged_tier if judged_tier in self.sla_tiers else order[-1]
        for rule in self.sla_policy.tier_rules:
            if rule.when.holds_for(risk_level, category, campaigns) and order.index(rule.tier) < order.index(tier):
                tier = rule.tier
        return tier

    def sla_timing(self, tier: str, *, emergency: bool) -> SlaTiming:
        """The tier's timings in the normal profile or, in emergency mode, the emergency profile."""
        if emergency:
            return self.sla_policy.emergency_profile.tiers[tier]
        normal = self.sla_tiers[tier]
        return SlaTiming(acknowledge=normal.acknowledge, resolve=normal.resolve)

    def campaigns_for(self, category: str) -> list[Campaign]:
        """Campaigns that track cases of the category, in file order."""
        return [campaign for campaign in self.campaigns.values() if category in campaign.categories]


_REGION = TypeAdapter(_Region)
_CATEGORIES = TypeAdapter(tuple[Category, ...])
_UNITS = TypeAdapter(tuple[Unit, ...])
_SPECIALIST_GROUPS = TypeAdapter(tuple[SpecialistGroup, ...])
_CAMPAIGNS = TypeAdapter(tuple[Campaign, ...])
_SLA_TIERS = TypeAdapter(tuple[SlaTier, ...])
_TRIAGE_RULES = TypeAdapter(TriageRules)
_SLA_POLICY = TypeAdapter(SlaPolicy)
_ESCALATION_LADDER = TypeAdapter(EscalationLadder)
_CALENDAR = TypeAdapter(tuple[CalendarYear, ...])


def load_reference_data(directory: Path) -> ReferenceData:
    """Read and cross-check every reference file in ``directory``.

    Raises ReferenceDataError naming the file when one is missing, is not
    valid JSON, does not match its schema, or refers to something unknown.
    """
    region = _read(directory, REGION_FILE, _REGION)
    grids = _flatten_region(region)
    town_codes = {town.code for town in region.towns}

    categories = _index(
        CATEGORIES_FILE,
        "category",
        _read(directory, CATEGORIES_FILE, _CATEGORIES),
        lambda category: category.code,
    )
    _check_keywords_unique(categories.values())

    units = _index(UNITS_FILE, "unit", _read(directory, UNITS_FILE, _UNITS), lambda unit: unit.unit_id)
    _check_units(units, categories, town_codes)

    groups = _index(
        SPECIALIST_GROUPS_FILE,
        "specialist group",
        _read(directory, SPECIALIST_GROUPS_FILE, _SPECIALIST_GROUPS),
        lambda group: group.group_id,
    )
    for group in groups.values():
        _check_categories(SPECIALIST_GROUPS_FILE, f"specialist group {group.group_id!r}", group.categories, categories)
        lead = units.get(group.lead_unit_id)
        if lead is None or lead.kind != "department":
            raise ReferenceDataError(
                f"{SPECIALIST_GROUPS_FILE}: specialist group {group.group_id!r} "
                f"is led by {group.lead_unit_id!r}, which is not a department"
            )

    campaigns = _index(
        CAMPAIGNS_FILE,
        "campaign",
        _read(directory, CAMPAIGNS_FILE, _CAMPAIGNS),
        lambda campaign: campaign.campaign_id,
    )
    for campaign in campaigns.values():
        _check_categories(CAMPAIGNS_FILE, f"campaign {campaign.campaign_id!r}", campaign.categories, categories)

    sla_tiers = _index(SLA_TIERS_FILE, "SLA tier", _read(directory, SLA_TIERS_FILE, _SLA_TIERS), lambda tier: tier.tier)
    triage_rules = _read(directory, TRIAGE_RULES_FILE, _TRIAGE_RULES)
    _check_triage_rules(triage_rules, categories, sla_tiers)
    sla_policy = _read(directory, SLA_POLICY_FILE, _SLA_POLICY)
    _check_sla_policy(sla_policy, categories, campaigns, sla_tiers)
    escalation_ladder = _read(directory, ESCALATION_LADDER_FILE, _ESCALATION_LADDER)
    calendar_years = _read(directory, CALENDAR_FILE, _CALENDAR)
    _index(CALENDAR_FILE, "year", calendar_years, lambda year: str(year.year))

    return ReferenceData(
        district=region.district,
        towns=region.towns,
        grids=MappingProxyType(grids),
        categories=MappingProxyType(categories),
        units=MappingProxyType(units),
        specialist_groups=MappingProxyType(groups),
        campaigns=MappingProxyType(campaigns),
        sla_tiers=MappingProxyType(sla_tiers),
        triage_rules=triage_rules,
        sla_policy=sla_policy,
        escalation_ladder=escalation_ladder,
        calendar=WorkingCalendar(calendar_years),
    )


def default_reference_dir() -> Path:
    """Where the reference files are: ``$CASELOOP_REFERENCE_DIR`` if set, else ``deploy/reference``.

    The folder is looked for above this module (the package is installed
    editable from the repository), then above the current directory.
    """
    configured = os.environ.get(REFERENCE_DIR_ENV)
    if configured:
        if not Path(configured).is_dir():
            raise ReferenceDataError(f"{REFERENCE_DIR_ENV}={configured!r} is not a directory")
        return Path(configured)
    for start in (Path(__file__).resolve().parent, Path.cwd()):
        for folder in (start, *start.parents):
            candidate = folder / "deploy" / "reference"
            if candidate.is_dir():
                return candidate
    raise ReferenceDataError(
        f"no deploy/reference folder above {Path(__file__).parent} or {Path.cwd()}; set {REFERENCE_DIR_ENV}"
    )


def _read(directory: Path, file_name: str, adapter: TypeAdapter[T]) -> T:
    try:
        raw = (directory / file_name).read_text(encoding="utf-8")
        return adapter.validate_python(json.loads(raw))
    except OSError as exc:
        raise ReferenceDataError(f"{file_name}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ReferenceDataError(f"{file_name}: invalid JSON ({exc})") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ReferenceDataError(f"{file_name}: {problems}") from exc


def _index(file_name: str, what: str, items: tuple[T, ...], key: Callable[[T], str]) -> dict[str, T]:
    index: dict[str, T] = {}
    for item in items:
        item_key = key(item)
        if item_key in index:
            raise ReferenceDataError(f"{file_name}: duplicate {what} {item_key!r}")
        index[item_key] = item
    return index


def _flatten_region(region: _Region) -> dict[str, GridPlace]:
    district = region.district
    seen: set[str] = set()

    def check(parent_code: str, code: str) -> None:
        if not code.startswith(parent_code):
            raise ReferenceDataError(f"{REGION_FILE}: code {code} does not extend its parent's code {parent_code}")
        if code in seen:
            raise ReferenceDataError(f"{REGION_FILE}: duplicate code {code}")
        seen.add(code)

    grids: dict[str, GridPlace] = {}
    for town in region.towns:
        check(district.code, town.code)
        for village in town.villages:
            check(town.code, village.code)
            for group in village.groups:
                check(village.code, group.code)
                for grid in group.grids:
                    check(group.code, grid.code)
                    grids[grid.code] = GridPlace(
                        grid_code=grid.code,
                        grid_name=grid.name,
                        group_code=group.code,
                        group_name=group.name,
                        village_code=village.code,
                        village_name=village.name,
                        town_code=town.code,
                        town_name=town.name,
                        district_code=district.code,
                        district_name=district.name,
                    )
    return grids


def _check_keywords_unique(categories: Iterable[Category]) -> None:
    owner: dict[str, str] = {}
    for category in categories:
        for keyword in category.keywords:
            other = owner.setdefault(keyword, category.code)
            if other != category.code:
                raise ReferenceDataError(
                    f"{CATEGORIES_FILE}: keyword {keyword!r} belongs to both {other!r} and {category.code!r}"
                )


def _check_categories(file_name: str, owner: str, codes: Iterable[str], categories: Mapping[str, Category]) -> None:
    for code in codes:
        if code not in categories:
            raise ReferenceDataError(f"{file_name}: {owner} lists unknown category {code!r}")


def _check_units(units: Mapping[str, Unit], categories: Mapping[str, Category], town_codes: set[str]) -> None:
    governments: dict[str, str] = {}
    for unit in units.values():
        _check_categories(UNITS_FILE, f"unit {unit.unit_id!r}", unit.categories, categories)
        # A town government's own town_code is in its area, as Unit validates.
        for town_code in () if unit.area.towns == "all" else unit.area.towns:
            if town_code not in town_codes:
                raise ReferenceDataError(f"{UNITS_FILE}: unit {unit.unit_id!r} covers unknown town {town_code!r}")
        if unit.town_code is not None:
            other = governments.setdefault(unit.town_code, unit.unit_id)
            if other != unit.unit_id:
                raise ReferenceDataError(
                    f"{UNITS_FILE}: town {unit.town_code} has two governments, {other!r} and {unit.unit_id!r}"
                )
    missing = sorted(town_codes - governments.keys())
    if missing:
        raise ReferenceDataError(f"{UNITS_FILE}: towns without a town government: {', '.join(missing)}")
    command = units.get(DISTRICT_COMMAND_UNIT_ID)
    if command is None or command.kind != "department" or command.area.towns != "all":
        raise ReferenceDataError(f"{UNITS_FILE}: {DISTRICT_COMMAND_UNIT_ID!r} must be a department covering all towns")


def _check_triage_rules(
    triage_rules: TriageRules, categories: Mapping[str, Category], sla_tiers: Mapping[str, SlaTier]
) -> None:
    _index(TRIAGE_RULES_FILE, "rule", triage_rules.rules, lambda rule: rule.rule_id)
    for rule in triage_rules.rules:
        owner = f"rule {rule.rule_id!r}"
        targets = [rule.then.category] if rule.then.category is not None else []
        _check_categories(TRIAGE_RULES_FILE, owner, (*(rule.when.category_in or ()), *targets), categories)
        if rule.then.sla_tier is not None and rule.then.sla_tier not in sla_tiers:
            raise ReferenceDataError(f"{TRIAGE_RULES_FILE}: {owner} sets unknown SLA tier {rule.then.sla_tier!r}")
    if triage_rules.defaults.sla_tier not in sla_tiers:
        raise ReferenceDataError(
            f"{TRIAGE_RULES_FILE}: defaults set unknown SLA tier {triage_rules.defaults.sla_tier!r}"
        )


def _check_sla_policy(
    policy: SlaPolicy,
    categories: Mapping[str, Category],
    campaigns: Mapping[str, Campaign],
    sla_tiers: Mapping[str, SlaTier],
) -> None:
    _index(SLA_POLICY_FILE, "rule", policy.tier_rules, lambda rule: rule.rule_id)
    for rule in policy.tier_rules:
        owner = f"rule {rule.rule_id!r}"
        _check_categories(SLA_POLICY_FILE, owner, rule.when.category_in or (), categories)
        for campaign_id in rule.when.campaign_in or ():
            if campaign_id not in campaigns:
                raise ReferenceDataError(f"{SLA_POLICY_FILE}: {owner} lists unknown campaign {campaign_id!r}")
        if rule.tier not in sla_tiers:
            raise ReferenceDataError(f"{SLA_POLICY_FILE}: {owner} sets unknown SLA tier {rule.tier!r}")
    profile = policy.emergency_profile
    missing = [tier for tier in sla_tiers if tier not in profile.tiers]
    unknown = [tier for tier in profile.tiers if tier not in sla_tiers]
    if missing or unknown:
        raise ReferenceDataError(
            f"{SLA_POLICY_FILE}: profile {profile.profile_id!r} must time exactly the tiers of {SLA_TIERS_FILE} "
            f"(missing {missing}, unknown {unknown})"
        )
