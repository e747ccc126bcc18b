"""Screening: what intake knows of a case and what it decides. Pure: no I/O, time is given."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from caseloop_events.contracts.clock import REGION_TIMEZONE
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import (
    CASELOOP_NAMESPACE,
    Actor,
    ActorRole,
    Envelope,
    deterministic_id,
    event_answering,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput, NotFound, RuleViolation
from caseloop_events.contracts.folding import StreamModel, with_changes
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CaseRejected,
    CaseReport,
    CasesMerged,
    CaseUnmerged,
    RejectionReason,
    Reporter,
)
from caseloop_events.contracts.reference import GridPlace, ReferenceData
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened
from caseloop_intake.domain.screening import ScreeningRules, dice_similarity, screening_marker_in, why_not_actionable

#: The source system of the cases grid workers raise on their daily screening rounds.
GRID_SCREENING_SOURCE = "grid-screening"


class CannotMergeIntoItself(RuleViolation):
    """A case is merged into another case, never into itself."""


class CaseNotOwnAccepted(RuleViolation):
    """Only a case that goes its own way (accepted: not rejected, a duplicate or merged) can be merged."""


class TargetNotOwnAccepted(RuleViolation):
    """A case is merged into a case that goes its own way, so a chain of followers never forms."""


class CaseAlreadyClosed(RuleViolation):
    """A closed case is not merged or unmerged: its loop is over."""


class TargetAlreadyClosed(RuleViolation):
    """A case is merged into an open case: a closed one would never close its followers."""


class NotMergedOrDuplicate(RuleViolation):
    """Only a merged case or a duplicate can be unmerged."""


@dataclass(frozen=True)
class LocationGiven:
    grid_code: str | None
    address: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class KeyClaim:
    """A request's hold on its Idempotency-Key: the calling system (scope), the key, what the
    request was (fingerprint), and who holds it (claim) since when."""

    scope: str
    key: str
    fingerprint: str
    claim: str
    started_at: datetime

    @property
    def row(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "idempotency_key": self.key,
            "fingerprint": self.fingerprint,
            "claim": self.claim,
            "started_at": self.started_at,
        }


@dataclass(frozen=True)
class ReportCase:
    """A source system (or a grid worker's screening round) reports a case."""

    source_system: str
    external_id: str
    title: str
    description: str
    category: str | None
    location: LocationGiven
    reporter: Reporter | None
    occurred_at: datetime | None
    attachments: tuple[str, ...]
    callback_url: str | None
    reported_by: Actor
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    subject: str | None = None
    #: The request's Idempotency-Key, claimed with what screening reads (None: sent without one).
    claim: KeyClaim | None = None


@dataclass(frozen=True)
class Hazard:
    """A hazard a grid worker found on a screening round."""

    title: str
    description: str
    category: str | None
    address: str | None
    occurred_at: datetime | None
    attachments: tuple[str, ...]


@dataclass(frozen=True)
class ScreenRound:
    """A grid worker's daily screening round (日排查) in one grid: each hazard found is a report."""

    grid_code: str
    worker_id: str
    screened_on: date
    round_id: str | None
    hazards: tuple[Hazard, ...]
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    subject: str | None = None

    @property
    def round_key(self) -> str:
        """What names the round in its hazards' external ids: posting it again gives the same cases.

        Without a round id, the grid, the worker and the day do; the slashes keep such a key
        apart from any round id (which has none).
        """
        return self.round_id or f"{self.grid_code}/{self.worker_id}/{self.screened_on.isoformat()}"

    def reports(self) -> list[ReportCase]:
        """The round's hazards as reports of the grid-screening source, in the order found."""
        return [
            ReportCase(
                source_system=GRID_SCREENING_SOURCE,
                external_id=f"{self.round_key}/{index}",
                title=hazard.title,
                description=hazard.description,
                category=hazard.category,
                location=LocationGiven(self.grid_code, hazard.address, None, None),
                reporter=None,
                occurred_at=hazard.occurred_at,
                attachments=hazard.attachments,
                callback_url=None,
                # The worker who found the hazard: the envelope has no grid-worker role, and the
                # worker acts as the grid-screening source system here.
                reported_by=Actor(id=self.worker_id, role=ActorRole.SOURCE_SYSTEM, subject=self.subject),
                now=self.now,
                correlation_id=self.correlation_id,
                subject=self.subject,
            )
            for index, hazard in enumerate(self.hazards)
        ]


@dataclass(frozen=True)
class MergeCase:
    """A supervisor merges a case into another one it repeats."""

    case_id: uuid.UUID
    into_case_id: uuid.UUID
    by: str
    reason: str
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class UnmergeCase:
    """A supervisor undoes a merge or a duplicate link."""

    case_id: uuid.UUID
    by: str
    reason: str
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class Merge:
    decision: CasesMerged
    merged_at: datetime


@dataclass(frozen=True)
class IntakeCase:
    """What intake knows of a case: folded from its screening events and its closures."""

    case_id: uuid.UUID
    case_no: str | None = None
    status: CaseStatus | None = None
    #: The report as screening placed it: from case.accepted or case.duplicate_linked.
    report: CaseReport | None = None
    accepted: CaseAccepted | None = None
    rejected: CaseRejected | None = None
    duplicate_of: CaseLinkedAsDuplicate | None = None
    merged_into: Merge | None = None
    screened_at: datetime | None = None
    closed_at: datetime | None = None
    #: The event that last changed the status: what a supervisor's next command acts on.
    status_event: Envelope | None = None

    @property
    def known(self) -> bool:
        return self.status is not None

    @property
    def goes_its_own_way(self) -> bool:
        """Accepted, and neither a duplicate nor merged (nor rejected)."""
        return self.status is CaseStatus.ACCEPTED

    @property
    def follows(self) -> uuid.UUID | None:
        """The case this one follows, as a duplicate or merged into it."""
        if self.duplicate_of is not None:
            return self.duplicate_of.original_case_id
        if self.merged_into is not None:
            return self.merged_into.decision.into_case_id
        return None


@dataclass(frozen=True)
class EarlierCase:
    """A case screened before, as screening compares a new report with it."""

    case_id: uuid.UUID
    case_no: str
    status: CaseStatus
    grid_code: str
    reported_category: str | None
    title: str
    description: str
    accepted_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True)
class DuplicateMatch:
    original: EarlierCase
    similarity: float


def case_id_for(source_system: str, external_id: str) -> uuid.UUID:
    """The same source system and external id always name the same case."""
    return uuid.uuid5(CASELOOP_NAMESPACE, f"case\x1f{source_system}\x1f{external_id}")


def case_number(sequence: int, screened_at: datetime) -> str:
    """A human-readable, unique number: region date of screening and a global sequence."""
    return f"CL{screened_at.astimezone(REGION_TIMEZONE):%Y%m%d}{sequence:07d}"


def sequence_of(case_no: str) -> int:
    """The global sequence a case number carries (its last seven digits)."""
    return int(case_no[-7:])


def evolve(case: IntakeCase, event: Envelope) -> IntakeCase:
    match event.payload:
        case CaseAccepted() as accepted:
            return with_changes(
                _screened(case, event, accepted.case_no, CaseStatus.ACCEPTED),
                report=accepted,
                accepted=accepted,
                duplicate_of=None,
            )
        case CaseLinkedAsDuplicate() as linked:
            return with_changes(
                _screened(case, event, linked.case_no, CaseStatus.DUPLICATE), report=linked, duplicate_of=linked
            )
        case CaseRejected() as rejected:
            return with_changes(_screened(case, event, rejected.case_no, CaseStatus.REJECTED), rejected=rejected)
        case CasesMerged() as merged:
            return with_changes(
                case, status=CaseStatus.MERGED, merged_into=Merge(merged, event.occurred_at), status_event=event
            )
        case CaseUnmerged():
            # A merge is only made on an accepted case, and an unmerged duplicate is accepted in
            # the same transaction: either way the case is accepted again.
            return with_changes(
                case, status=CaseStatus.ACCEPTED, merged_into=None, duplicate_of=None, status_event=event
            )
        case CaseClosed():
            return with_changes(case, closed_at=event.occurred_at)
        case CaseReopened():
            return with_changes(case, closed_at=None)
        case _:
            return case


def _screened(case: IntakeCase, event: Envelope, case_no: str, status: CaseStatus) -> IntakeCase:
    screened_at = event.occurred_at if case.screened_at is None else case.screened_at
    return with_changes(case, case_no=case_no, status=status, screened_at=screened_at, status_event=event)


#: How intake folds a case: what the runtime folds each stream with.
CASES = StreamModel(IntakeCase, evolve)


def fold(case_id: uuid.UUID, events: Iterable[Envelope]) -> IntakeCase:
    """The case's state from its events, which must come in causal order."""
    return CASES.fold(case_id, events)


def place_case(location: LocationGiven, reference: ReferenceData) -> GridPlace | None:
    """The grid of a case: its grid code, else the most precise place its address names, else None
    (somewhere outside the region). An unknown grid *code* is bad input, not a place elsewhere."""
    if location.grid_code is not None:
        place = reference.place_of(location.grid_code)
        if place is None:
            raise InvalidInput("location.grid_code", f"unknown grid code {location.grid_code!r} (see GET /v1/grids)")
        return place
    address = location.address or ""
    for level in ("grid_name", "group_name", "village_name"):
        matches = sorted(
            (p for p in reference.grids.values() if getattr(p, level) in address),
            key=lambda p: (-len(getattr(p, level)), p.grid_code),
        )
        if matches:
            return matches[0]
    return None


def screen(
    command: ReportCase,
    place: GridPlace | None,
    case_no: str,
    earlier: Iterable[EarlierCase],
    rules: ScreeningRules,
) -> CaseAccepted | CaseRejected | CaseLinkedAsDuplicate:
    """Reject the report, link it to the open case it repeats, or accept it for judgment."""
    rejection = reason_to_reject(command, place, rules)
    if rejection is not None:
        reason_code, note = rejection
        return CaseRejected(
            case_no=case_no,
            source_system=command.source_system,
            external_id=command.external_id,
            title=command.title,
            description=command.description,
            address=command.location.address,
            reason_code=reason_code,
            note=note,
        )
    assert place is not None  # a report placed nowhere is rejected as out of jurisdiction
    report = _report_fields(command, place, case_no)
    match = probable_duplicate(command, place.grid_code, earlier, rules)
    if match is None:
        return CaseAccepted(**report, accepted_at=command.now)
    return CaseLinkedAsDuplicate(
        **report,
        original_case_id=match.original.case_id,
        original_case_no=match.original.case_no,
        similarity=match.similarity,
        reason=_duplicate_reason(command, match, rules),
    )


def reason_to_reject(
    command: ReportCase, place: GridPlace | None, rules: ScreeningRules
) -> tuple[RejectionReason, str] | None:
    """Why screening rejects the report, or None when it does not."""
    marker = screening_marker_in(command.title, command.description, rules.test_markers)
    if marker is not None:
        return RejectionReason.TEST_OR_SPAM, f"carries the screening marker {marker!r}"
    not_actionable = why_not_actionable(command.title, command.description, rules)
    if not_actionable is not None:
        return RejectionReason.NO_ACTIONABLE_CONTENT, not_actionable
    if place is None:
        return (
            RejectionReason.OUT_OF_JURISDICTION,
            "no grid code given, and the address names no grid, group, village or community of the region",
        )
    return None


def probable_duplicate(
    command: ReportCase, grid_code: str, earlier: Iterable[EarlierCase], rules: ScreeningRules
) -> DuplicateMatch | None:
    """The open case the report most probably repeats: the most similar, then the earliest."""
    text = f"{command.title} {command.description}"
    since = command.now - rules.duplicate_window
    matches = [
        DuplicateMatch(case, round(dice_similarity(text, f"{case.title} {case.description}"), 4))
        for case in earlier
        if case.status is CaseStatus.ACCEPTED
        and case.closed_at is None
        and case.grid_code == grid_code
        and (command.category is None or case.reported_category in (None, command.category))
        and since <= case.accepted_at <= command.now
    ]
    likely = [match for match in matches if match.similarity >= rules.duplicate_similarity]
    if not likely:
        return None
    return min(likely, key=lambda m: (-m.similarity, m.original.accepted_at, m.original.case_no))


def _duplicate_reason(command: ReportCase, match: DuplicateMatch, rules: ScreeningRules) -> str:
    hours = (command.now - match.original.accepted_at).total_seconds() / 3600
    category = command.category or match.original.reported_category
    same_category = f", category {category}" if category is not None else ""
    return (
        f"same grid {match.original.grid_code}{same_category}, {hours:.1f} h after {match.original.case_no} "
        f"was accepted, text similarity {match.similarity:.2f} (threshold {rules.duplicate_similarity:.2f})"
    )


def _report_fields(command: ReportCase, place: GridPlace, case_no: str) -> dict[str, Any]:
    return {
        "case_no": case_no,
        "source_system": command.source_system,
        "external_id": command.external_id,
        "title": command.title,
        "description": command.description,
        "reported_category": command.category,
        "location": CaseLocation(
            grid_code=place.grid_code,
            village_code=place.village_code,
            town_code=place.town_code,
            district_code=place.district_code,
            address=command.location.address,
            lat=command.location.lat,
            lon=command.location.lon,
        ),
        "reporter": command.reporter,
        "reported_occurred_at": command.occurred_at,
        "attachments": command.attachments,
        "callback_url": command.callback_url,
    }


#: The part of an event id that names each screening outcome: uuid5(case id, decision).
SCREENING_DECISIONS = {
    CaseAccepted: "accepted",
    CaseRejected: "rejected",
    CaseLinkedAsDuplicate: "duplicate_linked",
}


def screening_event(
    case_id: uuid.UUID, outcome: CaseAccepted | CaseRejected | CaseLinkedAsDuplicate, command: ReportCase
) -> Envelope:
    """The case's first event; its id follows from the case id, so a retry cannot make a second one."""
    return new_event(
        outcome,
        case_id=case_id,
        actor=command.reported_by,
        occurred_at=command.now,
        correlation_id=command.correlation_id,
        event_id=deterministic_id(case_id, SCREENING_DECISIONS[type(outcome)]),
    )


def merge(case: IntakeCase, into: IntakeCase, command: MergeCase) -> Envelope:
    """Merge an accepted open case into another accepted open case it repeats."""
    if not case.known or case.status_event is None:
        raise CaseNotFound(case.case_id)
    if command.into_case_id == case.case_id:
        raise CannotMergeIntoItself(f"case {case.case_no} cannot be merged into itself")
    if not case.goes_its_own_way:
        raise CaseNotOwnAccepted(f"case {case.case_no} is {case.status}: only an accepted case can be merged")
    if case.closed_at is not None:
        raise CaseAlreadyClosed(f"case {case.case_no} is closed")
    if not into.known or into.case_no is None:
        raise NotFound(f"into_case_id: no case {command.into_case_id}")
    if not into.goes_its_own_way:
        raise TargetNotOwnAccepted(f"case {into.case_no} is {into.status}: a case is merged only into an accepted case")
    if into.closed_at is not None:
        raise TargetAlreadyClosed(f"case {into.case_no} is closed: merge into an open case")
    return event_answering(
        case.status_event,
        CasesMerged(into_case_id=into.case_id, into_case_no=into.case_no, merged_by=command.by, reason=command.reason),
        actor=_supervisor(command),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )


def unmerge(case: IntakeCase, command: UnmergeCase) -> list[Envelope]:
    """Undo a merge; a duplicate undone is accepted on its own, so it is judged and assigned."""
    if not case.known or case.status_event is None:
        raise CaseNotFound(case.case_id)
    from_case_id = case.follows
    if case.status not in (CaseStatus.MERGED, CaseStatus.DUPLICATE) or from_case_id is None:
        raise NotMergedOrDuplicate(f"case {case.case_no} is {case.status}: it follows no other case")
    if case.closed_at is not None:
        raise CaseAlreadyClosed(f"case {case.case_no} is closed")
    actor = _supervisor(command)
    unmerged = event_answering(
        case.status_event,
        CaseUnmerged(from_case_id=from_case_id, unmerged_by=command.by, reason=command.reason),
        actor=actor,
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
    if case.duplicate_of is None:
        return [unmerged]
    kept = case.duplicate_of
    accepted = event_caused_by(
        unmerged,
        CaseAccepted(**{field: getattr(kept, field) for field in CaseReport.model_fields}, accepted_at=command.now),
        actor=actor,
        occurred_at=command.now,
        decision="accepted",
    )
    return [unmerged, accepted]


def _supervisor(command: MergeCase | UnmergeCase) -> Actor:
    return Actor(id=command.by, role=ActorRole.SUPERVISOR, subject=command.subject)
