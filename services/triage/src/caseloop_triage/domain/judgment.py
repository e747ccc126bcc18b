"""Judging a reported case by the rules of the reference data. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.intake import CaseAccepted
from caseloop_events.contracts.triage import CaseJudged, JudgedBy, RuleHit
from caseloop_events.reference import ReferenceData, RuleCondition, TriageRule

T = TypeVar("T")

#: Where a case lands when no rule names its category: the community handles it first.
DEFAULT_CATEGORY = "community_governance"
DEFAULT_CATEGORY_HIT = RuleHit(rule_id="DEFAULT-CATEGORY", reason="no rule named a category")


class CategorySource(StrEnum):
    REPORTER = "reporter"
    RULE = "rule"
    DEFAULT = "default"


# A later issue sends low-confidence judgments (the default category) to an officer's review queue.
CONFIDENCE = {CategorySource.REPORTER: 1.0, CategorySource.RULE: 0.8, CategorySource.DEFAULT: 0.3}


@dataclass(frozen=True)
class Report:
    """What the rules look at: the report's lowercased text and the category the reporter chose."""

    text: str
    reported_category: str | None

    @classmethod
    def of(cls, accepted: CaseAccepted) -> Report:
        return cls(
            text=f"{accepted.title} {accepted.description}".lower(), reported_category=accepted.reported_category
        )

    def mentions_any(self, keywords: tuple[str, ...]) -> bool:
        return any(keyword in self.text for keyword in keywords)


@dataclass(frozen=True)
class Verdict:
    """The triage fields set so far; a field once set is never overwritten."""

    category: str | None = None
    category_source: CategorySource | None = None
    risk_level: int | None = None
    sla_tier: str | None = None
    handling_level: str | None = None
    rules_fired: tuple[RuleHit, ...] = ()


def judge(accepted: CaseAccepted, reference: ReferenceData) -> CaseJudged:
    """Judge a case by the rules in order, then fill what no rule set from the defaults."""
    report = Report.of(accepted)
    verdict = Verdict()
    if report.reported_category is not None:
        verdict = Verdict(category=report.reported_category, category_source=CategorySource.REPORTER)
    for rule in reference.triage_rules.rules:
        if matches(rule.when, report, verdict.category):
            verdict = apply_rule(verdict, rule)
    category, source, rules_fired = verdict.category, verdict.category_source, verdict.rules_fired
    if category is None or source is None:
        category, source, rules_fired = DEFAULT_CATEGORY, CategorySource.DEFAULT, (*rules_fired, DEFAULT_CATEGORY_HIT)
    defaults = reference.triage_rules.defaults
    return CaseJudged(
        category=category,
        risk_level=_first_set(verdict.risk_level, defaults.risk_level),
        campaign_ids=campaigns_of(category, report, reference),
        handling_level=HandlingLevel(_first_set(verdict.handling_level, defaults.handling_level)),
        sla_tier=SlaTierName(_first_set(verdict.sla_tier, defaults.sla_tier)),
        rules_fired=rules_fired,
        judged_by=JudgedBy.RULES,
        confidence=CONFIDENCE[source],
    )


def matches(condition: RuleCondition, report: Report, current_category: str | None) -> bool:
    """Every condition the rule states holds for the report and the category judged so far."""
    if condition.category_given and report.reported_category is None:
        return False
    if condition.category_in is not None and current_category not in condition.category_in:
        return False
    return condition.keywords_any is None or report.mentions_any(condition.keywords_any)


def apply_rule(verdict: Verdict, rule: TriageRule) -> Verdict:
    """Fill the fields the rule sets that are still empty; a rule that fills none did not fire."""
    then = rule.then
    filled = replace(
        verdict,
        category=_first_set(verdict.category, then.category),
        category_source=_first_set(verdict.category_source, CategorySource.RULE if then.category is not None else None),
        risk_level=_first_set(verdict.risk_level, then.risk_level),
        sla_tier=_first_set(verdict.sla_tier, then.sla_tier),
        handling_level=_first_set(verdict.handling_level, then.handling_level),
    )
    if filled == verdict:
        return verdict
    return replace(filled, rules_fired=(*verdict.rules_fired, RuleHit(rule_id=rule.rule_id, reason=rule.description)))


def _first_set(current: T | None, proposed: T) -> T:
    return proposed if current is None else current


def campaigns_of(category: str, report: Report, reference: ReferenceData) -> tuple[str, ...]:
    """Campaigns that track the category, and those whose keywords the report mentions."""
    by_category = {campaign.campaign_id for campaign in reference.campaigns_for(category)}
    by_keyword = {c.campaign_id for c in reference.campaigns.values() if report.mentions_any(c.keywords)}
    return tuple(sorted(by_category | by_keyword))
