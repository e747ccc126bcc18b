"""Assignment (交办): what dispatch knows of a case and what it decides. Pure: no I/O, time is given."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.intake import CaseAccepted
from caseloop_events.contracts.supervision import CaseClosed, CaseVerificationFailed, CaseVerified
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.envelope import Actor, ActorRole, Envelope, Producer, event_answering, event_caused_by
from caseloop_events.errors import CaseNotFound, RuleViolation
from caseloop_events.reference import ReferenceData


class NotAssignedToThisUnit(RuleViolation):
    """Only the unit a case is assigned to may answer for it."""


class NotAwaitingAcknowledgement(RuleViolation):
    """A case is signed for once, by its unit, after it is assigned."""


class NotAcknowledged(RuleViolation):
    """A result is reported on a case its unit has signed for (or must rework), not before."""


@dataclass(frozen=True)
class Location:
    case_no: str
    title: str
    grid_code: str
    town_code: str


@dataclass(frozen=True)
class Judgment:
    category: str
    handling_level: HandlingLevel
    sla_tier: SlaTierName
    risk_level: int
    event: Envelope


@dataclass(frozen=True)
class Assignment:
    unit_id: str
    unit_name: str
    town_code: str
    route: AssignmentRoute
    reason: str
    event: Envelope

    @property
    def assigned_at(self) -> datetime:
        return self.event.occurred_at


@dataclass(frozen=True)
class DispatchCase:
    """What dispatch knows of a case: folded from its events in causal order."""

    case_id: UUID
    location: Location | None = None
    judgment: Judgment | None = None
    assignment: Assignment | None = None
    status: CaseStatus | None = None
    #: The event that last changed the status: what the unit's next answer acts on.
    status_event: Envelope | None = None
    acknowledged_at: datetime | None = None
    result_reported_at: datetime | None = None
    last_event_at: datetime | None = None

    @property
    def known(self) -> bool:
        return self.last_event_at is not None


@dataclass(frozen=True)
class AcknowledgeCase:
    """The assigned unit signs for the case (签收)."""

    case_id: UUID
    unit_id: str
    by: str
    now: datetime


@dataclass(frozen=True)
class ReportResult:
    """The assigned unit reports the case handled (办结)."""

    case_id: UUID
    unit_id: str
    by: str
    summary: str
    evidence: tuple[str, ...]
    now: datetime


def evolve(case: DispatchCase, event: Envelope) -> DispatchCase:
    last = event.occurred_at if case.last_event_at is None else max(case.last_event_at, event.occurred_at)
    case = replace(case, last_event_at=last)
    match event.payload:
        case CaseAccepted() as accepted:
            location = Location(
                case_no=accepted.case_no,
                title=accepted.title,
                grid_code=accepted.location.grid_code,
                town_code=accepted.location.town_code,
            )
            return replace(case, location=location)
        case CaseJudged() as judged:
            judgment = Judgment(
                category=judged.category,
                handling_level=judged.handling_level,
                sla_tier=judged.sla_tier,
                risk_level=judged.risk_level,
                event=event,
            )
            return replace(case, judgment=judgment)
        case CaseAssigned() as assigned:
            assignment = Assignment(
                unit_id=assigned.unit_id,
                unit_name=assigned.unit_name,
                town_code=assigned.town_code,
                route=assigned.route,
                reason=assigned.reason,
                event=event,
            )
            return replace(_with_status(case, CaseStatus.ASSIGNED, event), assignment=assignment)
        case CaseAcknowledged():
            return replace(_with_status(case, CaseStatus.ACKNOWLEDGED, event), acknowledged_at=event.occurred_at)
        case CaseResultReported():
            return replace(_with_status(case, CaseStatus.RESULT_REPORTED, event), result_reported_at=event.occurred_at)
        case CaseVerified():
            return _with_status(case, CaseStatus.VERIFIED, event)
        case CaseVerificationFailed():
            # Rework: the case is back with the unit that signed for it, which reports again.
            return _with_status(case, CaseStatus.ACKNOWLEDGED, event)
        case CaseClosed():
            return _with_status(case, CaseStatus.CLOSED, event)
        case _:
            return case


def _with_status(case: DispatchCase, status: CaseStatus, event: Envelope) -> DispatchCase:
    return replace(case, status=status, status_event=event)


def fold(case_id: UUID, events: Iterable[Envelope]) -> DispatchCase:
    """The case's state from its events, which must come in causal order."""
    case = DispatchCase(case_id)
    for event in events:
        case = evolve(case, event)
    return case


def route(case: DispatchCase, reference: ReferenceData, now: datetime) -> Envelope | None:
    """The assignment a located, judged, not yet assigned case is due, or None.

    Always caused by the judgment, whichever event completed the picture, so every
    consumer and every re-processing derives the same event id.
    """
    if case.location is None or case.judgment is None or case.assignment is not None:
        return None
    if case.status is CaseStatus.CLOSED:
        return None
    return event_caused_by(
        case.judgment.event,
        choose_unit(case.judgment.category, case.location.town_code, reference),
        actor=Actor.system(Producer.DISPATCH),
        occurred_at=now,
        decision="assigned",
    )


def choose_unit(category: str, town_code: str, reference: ReferenceData) -> CaseAssigned:
    """The responsibility list first; else the town government; else the district command centre (兜底)."""
    category_name = reference.categories[category].name if category in reference.categories else category
    town_name = next((town.name for town in reference.towns if town.code == town_code), town_code)
    answering = reference.units_answering(category, town_code)
    if answering:
        unit = answering[0]
        return CaseAssigned(
            unit_id=unit.unit_id,
            unit_name=unit.name,
            town_code=town_code,
            route=AssignmentRoute.RESPONSIBILITY_LIST,
            reason=f"responsibility list: {unit.name} ({unit.unit_id}) answers for {category_name} ({category}) "
            f"in {town_name} ({town_code})",
        )
    try:
        unit = reference.town_government(town_code)
    except KeyError:
        unit = reference.district_fallback_unit()
        return CaseAssigned(
            unit_id=unit.unit_id,
            unit_name=unit.name,
            town_code=town_code,
            route=AssignmentRoute.DISTRICT_FALLBACK,
            reason=f"no department answers for {category_name} ({category}) and town {town_code} has no government "
            f"in the reference data: {unit.name} ({unit.unit_id}) owns the case",
        )
    return CaseAssigned(
        unit_id=unit.unit_id,
        unit_name=unit.name,
        town_code=town_code,
        route=AssignmentRoute.TOWN_FALLBACK,
        reason=f"no department's responsibility list covers {category_name} ({category}) in {town_name} "
        f"({town_code}): the town government {unit.name} ({unit.unit_id}) owns the case",
    )


def acknowledge(case: DispatchCase, command: AcknowledgeCase, correlation_id: UUID) -> Envelope:
    """The assigned unit signs for a case that awaits it."""
    assignment = _assignment_of(case, NotAwaitingAcknowledgement)
    _require_assigned_unit(case, assignment, command.unit_id)
    if case.status is not CaseStatus.ASSIGNED:
        raise NotAwaitingAcknowledgement(f"case {case.case_id} is {case.status}: it was signed for already")
    return event_answering(
        assignment.event,
        CaseAcknowledged(unit_id=command.unit_id, acknowledged_by=command.by),
        actor=_unit_actor(command.by, command.unit_id),
        occurred_at=command.now,
        correlation_id=correlation_id,
    )


def report_result(case: DispatchCase, command: ReportResult, correlation_id: UUID) -> Envelope:
    """The assigned unit reports what it did, once it has signed for the case (or must rework it)."""
    assignment = _assignment_of(case, NotAcknowledged)
    _require_assigned_unit(case, assignment, command.unit_id)
    if case.status is not CaseStatus.ACKNOWLEDGED or case.status_event is None:
        raise NotAcknowledged(f"case {case.case_id} is {case.status}: a result is reported after acknowledgement")
    return event_answering(
        case.status_event,
        CaseResultReported(
            unit_id=command.unit_id, reported_by=command.by, summary=command.summary, evidence=command.evidence
        ),
        actor=_unit_actor(command.by, command.unit_id),
        occurred_at=command.now,
        correlation_id=correlation_id,
    )


def _assignment_of(case: DispatchCase, not_yet: type[RuleViolation]) -> Assignment:
    if not case.known:
        raise CaseNotFound(case.case_id)
    if case.assignment is None:
        raise not_yet(f"case {case.case_id} is not assigned yet")
    return case.assignment


def _require_assigned_unit(case: DispatchCase, assignment: Assignment, unit_id: str) -> None:
    if unit_id != assignment.unit_id:
        raise NotAssignedToThisUnit(
            f"case {case.case_id} is assigned to {assignment.unit_name} ({assignment.unit_id}), not to {unit_id}"
        )


def _unit_actor(by: str, unit_id: str) -> Actor:
    return Actor(id=by, role=ActorRole.UNIT, unit_id=unit_id)
