"""Judging a reported case by the rules of the reference data. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar
from uuid import UUID

from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.errors import InvalidInput
from caseloop_events.contracts.intake import CaseAccepted
from caseloop_events.contracts.reference import ReferenceData, RuleCondition, TriageRule
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview, JudgedBy, RuleHit

T = TypeVar("T")

#: Where a case lands when no rule names its category: the community handles it first.
DEFAULT_CATEGORY = "community_governance"
DEFAULT_CATEGORY_HIT = RuleHit(rule_id="DEFAULT-CATEGORY", reason="no rule named a category")


class CategorySource(StrEnum):
    REPORTER = "reporter"
    RULE = "rule"
    DEFAULT = "default"


# Below the review threshold (TRIAGE_REVIEW_BELOW_CONFIDENCE) a judgment goes to an officer instead.
CONFIDENCE = {CategorySource.REPORTER: 1.0, CategorySource.RULE: 0.8, CategorySource.DEFAULT: 0.3}

#: How an officer's own judgment shows among the rules fired.
OFFICER_RULE_ID = "OFFICER"

#: How many categories a review request proposes to the officer at most.
MAX_CANDIDATES = 5


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


def rules_judgment(
    accepted: CaseAccepted, reference: ReferenceData, review_below_confidence: float
) -> CaseJudged | CaseQueuedForReview:
    """The rules' judgment, or a request for an officer's when the rules are not confident enough."""
    judged = judge(accepted, reference)
    if judged.confidence >= review_below_confidence:
        return judged
    if DEFAULT_CATEGORY_HIT in judged.rules_fired:
        reason = f"{DEFAULT_CATEGORY_HIT.reason}: confidence {judged.confidence} is below {review_below_confidence}"
    else:
        reason = (
            f"the rules judged {judged.category} with confidence {judged.confidence}, below {review_below_confidence}"
        )
    return CaseQueuedForReview(
        reason=reason,
        candidate_categories=candidate_categories(Report.of(accepted), reference),
        rules_fired=tuple(hit for hit in judged.rules_fired if hit != DEFAULT_CATEGORY_HIT),
    )


def candidate_categories(report: Report, reference: ReferenceData) -> tuple[str, ...]:
    """Categories the report may be about, likeliest first: whole keywords it mentions count before
    parts of keywords (a Chinese keyword's two-character pieces, an English keyword's words)."""
    scored = []
    for position, category in enumerate(reference.categories.values()):
        whole = sum(keyword in report.text for keyword in category.keywords)
        partial = sum(any(piece in report.text for piece in _pieces_of(keyword)) for keyword in category.keywords)
        if whole or partial:
            scored.append(((-whole, -partial, position), category.code))
    return tuple(code for _, code in sorted(scored)[:MAX_CANDIDATES])


def _pieces_of(keyword: str) -> set[str]:
    if keyword.isascii():
        # Short English words ("gas", "pay") would match far too much.
        return {word for word in re.split(r"[^a-z0-9]+", keyword) if len(word) >= 4}
    characters = "".join(keyword.split())
    return {characters[i : i + 2] for i in range(len(characters) - 1)}


@dataclass(frozen=True)
class OfficerChoice:
    """What an officer decides about a case; what is left out, the rules fill in."""

    by: str
    category: str
    risk_level: int | None
    sla_tier: SlaTierName | None
    handling_level: HandlingLevel | None
    campaign_ids: tuple[str, ...] | None
    reason: str | None


def require_known_choices(choice: OfficerChoice, reference: ReferenceData) -> None:
    """The category and campaigns an officer names must exist."""
    if choice.category not in reference.categories:
        raise InvalidInput("category", f"unknown category {choice.category!r}")
    for index, campaign_id in enumerate(choice.campaign_ids or ()):
        if campaign_id not in reference.campaigns:
            raise InvalidInput(f"campaign_ids.{index}", f"unknown campaign {campaign_id!r}")


def officer_judgment(
    accepted: CaseAccepted,
    choice: OfficerChoice,
    reference: ReferenceData,
    supersedes_event_id: UUID | None = None,
) -> CaseJudged:
    """The officer's judgment: their choices, and the rules' answers (judging the report as if the
    reporter had named the officer's category) for the fields they left out."""
    by_rules = judge(accepted.model_copy(update={"reported_category": choice.category}), reference)
    rules_filled_in = None in (choice.risk_level, choice.sla_tier, choice.handling_level)
    officer = RuleHit(rule_id=OFFICER_RULE_ID, reason=choice.reason or f"judged by officer {choice.by}")
    return CaseJudged(
        category=choice.category,
        risk_level=_first_set(choice.risk_level, by_rules.risk_level),
        campaign_ids=by_rules.campaign_ids if choice.campaign_ids is None else tuple(sorted(set(choice.campaign_ids))),
        handling_level=_first_set(choice.handling_level, by_rules.handling_level),
        sla_tier=_first_set(choice.sla_tier, by_rules.sla_tier),
        rules_fired=(officer, *(by_rules.rules_fired if rules_filled_in else ())),
        judged_by=JudgedBy.OFFICER,
        confidence=1.0,
        supersedes_event_id=supersedes_event_id,
        rejudgment_reason=choice.reason if supersedes_event_id is not None else None,
    )
