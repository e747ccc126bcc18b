"""What triage knows of a case, folded from its events, and what it decides. Pure: no I/O, time is given."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, event_answering, event_caused_by
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput, RuleViolation
from caseloop_events.contracts.folding import StreamModel, with_changes
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview
from caseloop_triage.domain.judgment import OfficerChoice, officer_judgment, require_known_choices, rules_judgment


class CaseWasRejected(RuleViolation):
    """Screening rejected the case: it is never judged."""


class CaseIsDuplicate(RuleViolation):
    """A duplicate follows its original case and is judged only once unmerged."""


class CaseIsMerged(RuleViolation):
    """A merged case follows the case it was merged into and is judged only once unmerged."""


class CaseIsClosed(RuleViolation):
    """A closed case is not judged again unless it is reopened."""


class NotAwaitingJudgment(RuleViolation):
    """An officer judges a case the rules sent for review, or re-judges a judged one; nothing else."""


@dataclass(frozen=True)
class Judgment:
    """A judgment as the log records it: the decision, its event, when and by whom it was made."""

    event_id: UUID
    judged_at: datetime
    decision: CaseJudged
    judged_by_id: str


@dataclass(frozen=True)
class JudgeCase:
    """An officer judges a case awaiting review, or re-judges a judged case (with a reason)."""

    case_id: UUID
    choice: OfficerChoice
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class TriageCase:
    case_id: UUID
    known: bool = False
    accepted_event: Envelope | None = None
    report: CaseAccepted | None = None
    judgment_event: Envelope | None = None
    #: The request for an officer's judgment that no judgment has answered yet.
    review_event: Envelope | None = None
    rejected: bool = False
    duplicate: bool = False
    merged: bool = False
    closed: bool = False

    @property
    def judgment(self) -> Judgment | None:
        event = self.judgment_event
        if event is None:
            return None
        assert isinstance(event.payload, CaseJudged)
        return Judgment(event.event_id, event.occurred_at, event.payload, event.actor.id)

    @property
    def review(self) -> CaseQueuedForReview | None:
        if self.review_event is None:
            return None
        assert isinstance(self.review_event.payload, CaseQueuedForReview)
        return self.review_event.payload

    def why_not_judged(self) -> RuleViolation | None:
        """The rule that keeps the case from being judged now, if any."""
        if self.rejected:
            return CaseWasRejected(f"case {self.case_id} was rejected at screening")
        if self.duplicate:
            return CaseIsDuplicate(f"case {self.case_id} is a duplicate: unmerge it to judge it on its own")
        if self.merged:
            return CaseIsMerged(f"case {self.case_id} is merged into another case: unmerge it to judge it")
        if self.closed:
            return CaseIsClosed(f"case {self.case_id} is closed")
        return None

    @property
    def awaits_judgment(self) -> bool:
        """Accepted, and neither judged nor sent for review yet: the rules' turn."""
        return (
            self.report is not None
            and self.judgment_event is None
            and self.review_event is None
            and self.why_not_judged() is None
        )

    @property
    def awaits_officer(self) -> bool:
        """Sent for review and not judged since: in the officers' queue."""
        return self.review_event is not None and self.judgment_event is None and self.why_not_judged() is None


def evolve(case: TriageCase, event: Envelope) -> TriageCase:
    case = with_changes(case, known=True)
    match event.payload:
        case CaseAccepted() as accepted:
            # Also how an unmerged duplicate comes back: accepted on its own.
            return with_changes(case, accepted_event=event, report=accepted, duplicate=False)
        case CaseRejected():
            return with_changes(case, rejected=True)
        case CaseLinkedAsDuplicate():
            return with_changes(case, duplicate=True)
        case CasesMerged():
            return with_changes(case, merged=True)
        case CaseUnmerged():
            return with_changes(case, merged=False, duplicate=False)
        case CaseQueuedForReview():
            return with_changes(case, review_event=event)
        case CaseJudged():
            return with_changes(case, judgment_event=event, review_event=None)
        case CaseClosed():
            return with_changes(case, closed=True)
        case CaseReopened():
            return with_changes(case, closed=False)
        case _:
            return case


#: How triage folds a case: what the runtime folds each stream with.
CASES = StreamModel(TriageCase, evolve)


def fold(case_id: UUID, events: Iterable[Envelope]) -> TriageCase:
    """The case's state from its events, which must come in causal order."""
    return CASES.fold(case_id, events)


def judge_by_rules(
    case: TriageCase, reference: ReferenceData, review_below_confidence: float, now: datetime
) -> Envelope | None:
    """The rules' judgment (or review request) an accepted case is due, or None.

    Always caused by the acceptance, with an id derived from it, so re-processing yields the
    same event.
    """
    if not case.awaits_judgment:
        return None
    assert case.accepted_event is not None
    assert case.report is not None
    decision = rules_judgment(case.report, reference, review_below_confidence)
    return event_caused_by(
        case.accepted_event,
        decision,
        actor=Actor.system(Producer.TRIAGE),
        occurred_at=now,
        decision="judged" if isinstance(decision, CaseJudged) else "review_requested",
    )


def judge_by_officer(case: TriageCase, command: JudgeCase, reference: ReferenceData) -> Envelope:
    """An officer's judgment: answering the review request, or superseding the current judgment."""
    choice = command.choice
    require_known_choices(choice, reference)
    if not case.known:
        raise CaseNotFound(case.case_id)
    violation = case.why_not_judged()
    if violation is not None:
        raise violation
    if case.report is None or (case.judgment_event is None and case.review_event is None):
        raise NotAwaitingJudgment(f"case {case.case_id} has neither a judgment nor a review request")
    if case.judgment_event is not None:
        if not choice.reason:
            raise InvalidInput("reason", "a re-judgment needs a reason")
        cause = case.judgment_event
        decision = officer_judgment(case.report, choice, reference, supersedes_event_id=cause.event_id)
    else:
        assert case.review_event is not None
        cause = case.review_event
        decision = officer_judgment(case.report, choice, reference)
    return event_answering(
        cause,
        decision,
        actor=Actor(id=choice.by, role=ActorRole.TRIAGE_OFFICER, subject=command.subject),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
