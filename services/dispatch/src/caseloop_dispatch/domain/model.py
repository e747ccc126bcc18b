"""Assignment (交办): what dispatch knows of a case and what it decides. Pure: no I/O, time is given.

How the dispute paths flow, and why none of them can loop forever, is ADR 0006.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
    CaseReturned,
    CaseTransferred,
    ExtensionRequested,
)
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, event_answering, event_caused_by
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput, RuleViolation
from caseloop_events.contracts.folding import StreamModel, with_changes
from caseloop_events.contracts.intake import CaseReport
from caseloop_events.contracts.lifecycle import CaseProgress, progress
from caseloop_events.contracts.reference import DISTRICT_COMMAND_UNIT_ID, ReferenceData, Unit
from caseloop_events.contracts.supervision import CaseReopened, CaseVerificationFailed, ExtensionDecided
from caseloop_events.contracts.triage import CaseJudged


class NotAssignedToThisUnit(RuleViolation):
    """Only the lead unit a case is assigned to may answer for it."""


class NotAwaitingAcknowledgement(RuleViolation):
    """A case is signed for once, by its unit, after it is assigned."""


class NotAcknowledged(RuleViolation):
    """A result is reported on a case its unit has signed for (or must rework), not before."""


class NotWithTheUnit(RuleViolation):
    """A case is returned or transferred while its unit holds it: assigned or acknowledged, no result yet."""


class FallbackOwnerCannotReturn(RuleViolation):
    """The fallback owner (兜底: town government, district command centre) handles what it is given."""


class TransferLimitReached(RuleViolation):
    """A case is transferred a bounded number of times; then its holder handles or returns it."""


class TransferTargetRefused(RuleViolation):
    """A case is not transferred to the unit holding it, nor to a unit that returned it."""


class JointAssignmentRefused(RuleViolation):
    """A dispatcher assigns units jointly before the lead has signed for the case."""


class ExtensionAlreadyPending(RuleViolation):
    """A unit asks for one extension at a time: the supervisor decides the pending one first."""


class CaseFollowsAnother(RuleViolation):
    """A merged or duplicate case follows another case: its unit does not act on it."""


@dataclass(frozen=True)
class DisputeLimits:
    """How often a case may bounce before its fallback owner takes it (ADR 0006)."""

    returns: int = 2
    transfers: int = 3
    reworks: int = 2
    reopenings: int = 2


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
    assisting_unit_ids: tuple[str, ...]
    fallback_owner: bool
    event: Envelope

    @property
    def assigned_at(self) -> datetime:
        return self.event.occurred_at


#: Statuses in which a case follows another case or is out of the loop: nothing is assigned.
NOT_ROUTABLE = frozenset(
    {CaseStatus.REJECTED, CaseStatus.DUPLICATE, CaseStatus.MERGED, CaseStatus.PENDING_REVIEW, CaseStatus.CLOSED}
)
#: Statuses in which the lead unit holds the case and may return or transfer it.
WITH_THE_UNIT = frozenset({CaseStatus.ASSIGNED, CaseStatus.ACKNOWLEDGED})


@dataclass(frozen=True)
class DispatchCase:
    """What dispatch knows of a case: folded from its events in causal order."""

    case_id: UUID
    location: Location | None = None
    judgment: Judgment | None = None
    #: The judgment the current assignment was routed with; a newer one may re-route the case.
    routed_judgment_id: UUID | None = None
    assignment: Assignment | None = None
    status: CaseStatus | None = None
    #: The event that last changed the status: what the unit's next answer acts on.
    status_event: Envelope | None = None
    status_before_merge: CaseStatus | None = None
    returned_by: tuple[str, ...] = ()
    transfers: int = 0
    #: Failed verifications since the current assignment: the current unit's rework count.
    reworks: int = 0
    reopen_count: int = 0
    acknowledged_at: datetime | None = None
    result_reported_at: datetime | None = None
    #: The unit's extension request supervision has not decided yet.
    pending_extension: Envelope | None = None
    last_event_at: datetime | None = None

    @property
    def known(self) -> bool:
        return self.last_event_at is not None

    @property
    def returns(self) -> int:
        return len(self.returned_by)


@dataclass(frozen=True)
class AcknowledgeCase:
    """The assigned unit signs for the case (签收)."""

    case_id: UUID
    unit_id: str
    by: str
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class ReportResult:
    """The assigned unit reports the case handled (办结)."""

    case_id: UUID
    unit_id: str
    by: str
    summary: str
    evidence: tuple[str, ...]
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class RequestExtension:
    """The lead unit asks for more time (延期): a supervisor approves or refuses in supervision."""

    case_id: UUID
    unit_id: str
    by: str
    reason: str
    due_at: datetime
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class ReturnCase:
    """The lead unit sends the case back (退单): not ours."""

    case_id: UUID
    unit_id: str
    by: str
    reason: str
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class TransferCase:
    """The lead unit hands the case to a named unit (转派)."""

    case_id: UUID
    unit_id: str
    by: str
    to_unit_id: str
    reason: str
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


@dataclass(frozen=True)
class AssignJointly:
    """A dispatcher of the command centre assigns a lead unit and assisting units together."""

    case_id: UUID
    lead_unit_id: str
    assisting_unit_ids: tuple[str, ...]
    by: str
    reason: str
    now: datetime
    #: The request that asked for it, and the authenticated caller who sent it.
    correlation_id: UUID = field(default_factory=uuid4)
    subject: str | None = None


def evolve(case: DispatchCase, event: Envelope) -> DispatchCase:
    last = event.occurred_at if case.last_event_at is None else max(case.last_event_at, event.occurred_at)
    detailed = _with_details(with_changes(case, last_event_at=last), event)
    moved = progress(CaseProgress(case.status, case.status_before_merge), event.payload)
    if moved is None:
        return detailed
    return with_changes(
        detailed, status=moved.status, status_before_merge=moved.status_before_merge, status_event=event
    )


def _with_details(case: DispatchCase, event: Envelope) -> DispatchCase:
    """What dispatch keeps of an event besides the status (which ``progress`` gives)."""
    match event.payload:
        case CaseReport() as report:
            location = Location(
                case_no=report.case_no,
                title=report.title,
                grid_code=report.location.grid_code,
                town_code=report.location.town_code,
            )
            return with_changes(case, location=location)
        case CaseJudged() as judged:
            judgment = Judgment(
                category=judged.category,
                handling_level=judged.handling_level,
                sla_tier=judged.sla_tier,
                risk_level=judged.risk_level,
                event=event,
            )
            return with_changes(case, judgment=judgment)
        case CaseAssigned() as assigned:
            assignment = Assignment(
                unit_id=assigned.unit_id,
                unit_name=assigned.unit_name,
                town_code=assigned.town_code,
                route=assigned.route,
                reason=assigned.reason,
                assisting_unit_ids=assigned.assisting_unit_ids,
                fallback_owner=assigned.fallback_owner,
                event=event,
            )
            routed = case.judgment.event.event_id if case.judgment else None
            return with_changes(
                case,
                assignment=assignment,
                routed_judgment_id=routed,
                reworks=0,
                acknowledged_at=None,
                result_reported_at=None,
            )
        case CaseReturned() as returned:
            return with_changes(case, returned_by=(*case.returned_by, returned.unit_id))
        case CaseTransferred():
            return with_changes(case, transfers=case.transfers + 1)
        case CaseAcknowledged():
            return with_changes(case, acknowledged_at=event.occurred_at)
        case CaseResultReported():
            return with_changes(case, result_reported_at=event.occurred_at)
        case CaseVerificationFailed():
            return with_changes(case, reworks=case.reworks + 1)
        case CaseReopened() as reopened:
            return with_changes(case, reopen_count=reopened.reopen_count)
        case ExtensionRequested():
            return with_changes(case, pending_extension=event)
        case ExtensionDecided() as decided:
            pending = case.pending_extension
            if pending is not None and pending.event_id == decided.request_event_id:
                return with_changes(case, pending_extension=None)
            return case
        case _:
            return case


#: How dispatch folds a case: what the runtime folds each stream with.
CASES = StreamModel(DispatchCase, evolve)


def fold(case_id: UUID, events: Iterable[Envelope]) -> DispatchCase:
    """The case's state from its events, which must come in causal order."""
    return CASES.fold(case_id, events)


# --- Decisions dispatch takes on its own, when an event changes a case ---------------------


def react(case: DispatchCase, reference: ReferenceData, limits: DisputeLimits, now: datetime) -> Envelope | None:
    """The assignment the case's state calls for, or None.

    Each is caused by the event that called for it, with a deterministic id, so every
    consumer and every re-processing derives the same event.
    """
    if case.location is None or case.judgment is None or case.status in NOT_ROUTABLE:
        return None
    if case.assignment is None:
        return route(case, reference, now)
    if case.status is CaseStatus.REOPENED:
        return _reassign_reopened(case, case.assignment, reference, limits, now)
    if case.status is CaseStatus.ACKNOWLEDGED and case.reworks > limits.reworks:
        return _to_fallback_owner(
            case,
            case.assignment,
            reference,
            now,
            why=f"verification failed {case.reworks} times, more than the rework limit of {limits.reworks}",
        )
    if case.status in WITH_THE_UNIT and case.judgment.event.event_id != case.routed_judgment_id:
        return _reroute_after_rejudgment(case, case.assignment, reference, now)
    return None


def route(case: DispatchCase, reference: ReferenceData, now: datetime) -> Envelope | None:
    """The first assignment of a located, judged case, or None.

    Always caused by the judgment, whichever event completed the picture.
    """
    if case.location is None or case.judgment is None or case.assignment is not None:
        return None
    if case.status in NOT_ROUTABLE:
        return None
    return event_caused_by(
        case.judgment.event,
        choose_unit(case.judgment.category, case.location.town_code, reference),
        actor=Actor.system(Producer.DISPATCH),
        occurred_at=now,
        decision="assigned",
    )


def _reassign_reopened(
    case: DispatchCase, assignment: Assignment, reference: ReferenceData, limits: DisputeLimits, now: datetime
) -> Envelope:
    assert case.status_event is not None
    if case.reopen_count > limits.reopenings:
        return _to_fallback_owner(
            case,
            assignment,
            reference,
            now,
            why=f"reopened {case.reopen_count} times, more than the reopening limit of {limits.reopenings}",
        )
    payload = CaseAssigned(
        unit_id=assignment.unit_id,
        unit_name=assignment.unit_name,
        town_code=assignment.town_code,
        route=AssignmentRoute.REOPENED,
        reason=f"reopened ({case.reopen_count} of at most {limits.reopenings}): back to {assignment.unit_name} "
        f"({assignment.unit_id}) to handle again (重办)",
        assisting_unit_ids=assignment.assisting_unit_ids,
        returns_so_far=case.returns,
        fallback_owner=assignment.fallback_owner,
    )
    return event_caused_by(
        case.status_event, payload, actor=Actor.system(Producer.DISPATCH), occurred_at=now, decision="assigned"
    )


def _reroute_after_rejudgment(
    case: DispatchCase, assignment: Assignment, reference: ReferenceData, now: datetime
) -> Envelope | None:
    """A re-judged case goes where its new category is handled, unless its holder already is that unit."""
    assert case.judgment is not None
    assert case.location is not None
    if assignment.fallback_owner:
        return None  # the fallback owner keeps what limits gave it; a new category does not move it back
    choice = choose_unit(case.judgment.category, case.location.town_code, reference, exclude=case.returned_by)
    if choice.unit_id == assignment.unit_id:
        return None
    payload = choice.model_copy(
        update={"reason": f"re-judged as {case.judgment.category}: {choice.reason}", "returns_so_far": case.returns}
    )
    return event_caused_by(
        case.judgment.event, payload, actor=Actor.system(Producer.DISPATCH), occurred_at=now, decision="assigned"
    )


def _to_fallback_owner(
    case: DispatchCase, assignment: Assignment, reference: ReferenceData, now: datetime, *, why: str
) -> Envelope:
    assert case.status_event is not None
    payload = fallback_assignment(assignment.unit_id, assignment.town_code, reference, why, returns=case.returns)
    return event_caused_by(
        case.status_event, payload, actor=Actor.system(Producer.DISPATCH), occurred_at=now, decision="assigned"
    )


def is_fallback_owner(unit: Unit) -> bool:
    """Town governments and the district command centre own what nobody else may: they cannot return."""
    return unit.kind == "town_government" or unit.unit_id == DISTRICT_COMMAND_UNIT_ID


def fallback_above(unit_id: str, town_code: str, reference: ReferenceData) -> Unit:
    """The fallback owner above a unit: a department's is the town government, a town government's
    is the district command centre, the district command centre's is itself."""
    unit = reference.units.get(unit_id)
    if unit is not None and is_fallback_owner(unit):
        return reference.district_fallback_unit()
    try:
        return reference.town_government(town_code)
    except KeyError:
        return reference.district_fallback_unit()


def fallback_assignment(
    unit_id: str, town_code: str, reference: ReferenceData, why: str, *, returns: int
) -> CaseAssigned:
    owner = fallback_above(unit_id, town_code, reference)
    route = (
        AssignmentRoute.DISTRICT_FALLBACK
        if owner.unit_id == DISTRICT_COMMAND_UNIT_ID
        else AssignmentRoute.TOWN_FALLBACK
    )
    return CaseAssigned(
        unit_id=owner.unit_id,
        unit_name=owner.name,
        town_code=town_code,
        route=route,
        reason=f"{why}: the fallback owner {owner.name} ({owner.unit_id}) owns the case (兜底)",
        returns_so_far=returns,
        fallback_owner=True,
    )


def choose_unit(category: str, town_code: str, reference: ReferenceData, exclude: Iterable[str] = ()) -> CaseAssigned:
    """The responsibility list first (skipping ``exclude``); else the town government; else the district
    command centre (兜底)."""
    excluded = set(exclude)
    category_name = reference.categories[category].name if category in reference.categories else category
    town_name = next((town.name for town in reference.towns if town.code == town_code), town_code)
    answering = [unit for unit in reference.units_answering(category, town_code) if unit.unit_id not in excluded]
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
            fallback_owner=True,
        )
    return CaseAssigned(
        unit_id=unit.unit_id,
        unit_name=unit.name,
        town_code=town_code,
        route=AssignmentRoute.TOWN_FALLBACK,
        reason=f"no other department's responsibility list covers {category_name} ({category}) in {town_name} "
        f"({town_code}): the town government {unit.name} ({unit.unit_id}) owns the case",
        fallback_owner=True,
    )


# --- Commands ------------------------------------------------------------------------------


def acknowledge(case: DispatchCase, command: AcknowledgeCase) -> Envelope:
    """The assigned unit signs for a case that awaits it."""
    assignment = _assignment_of(case, NotAwaitingAcknowledgement)
    _require_lead_unit(case, assignment, command.unit_id)
    if case.status is not CaseStatus.ASSIGNED:
        raise NotAwaitingAcknowledgement(f"case {case.case_id} is {case.status}: it is not awaiting acknowledgement")
    return event_answering(
        assignment.event,
        CaseAcknowledged(unit_id=command.unit_id, acknowledged_by=command.by),
        actor=_unit_actor(command),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )


def report_result(case: DispatchCase, command: ReportResult) -> Envelope:
    """The assigned unit reports what it did, once it has signed for the case (or must rework it)."""
    assignment = _assignment_of(case, NotAcknowledged)
    _require_lead_unit(case, assignment, command.unit_id)
    if case.status is not CaseStatus.ACKNOWLEDGED or case.status_event is None:
        raise NotAcknowledged(f"case {case.case_id} is {case.status}: a result is reported after acknowledgement")
    return event_answering(
        case.status_event,
        CaseResultReported(
            unit_id=command.unit_id, reported_by=command.by, summary=command.summary, evidence=command.evidence
        ),
        actor=_unit_actor(command),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )


def request_extension(case: DispatchCase, command: RequestExtension) -> Envelope:
    """The lead unit that signed for the case asks to move its handling deadline to ``due_at``."""
    assignment = _assignment_of(case, NotAcknowledged)
    _require_lead_unit(case, assignment, command.unit_id)
    if case.status is not CaseStatus.ACKNOWLEDGED or case.status_event is None:
        raise NotAcknowledged(f"case {case.case_id} is {case.status}: an extension is asked for while handling it")
    if case.pending_extension is not None:
        raise ExtensionAlreadyPending(
            f"the extension asked for at {case.pending_extension.occurred_at.isoformat()} awaits a decision"
        )
    if command.due_at <= command.now:
        raise InvalidInput("due_at", "the new deadline must be in the future")
    return event_answering(
        case.status_event,
        ExtensionRequested(
            unit_id=command.unit_id, requested_by=command.by, reason=command.reason, requested_due_at=command.due_at
        ),
        actor=_unit_actor(command),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )


def return_case(
    case: DispatchCase, command: ReturnCase, reference: ReferenceData, limits: DisputeLimits
) -> list[Envelope]:
    """The lead unit returns the case; dispatch re-routes it at once, never back to a unit that returned it,
    and to the fallback owner once the returns reach the limit."""
    assignment = _held_by_unit(case, command.unit_id)
    unit = reference.units[command.unit_id]
    if is_fallback_owner(unit):
        raise FallbackOwnerCannotReturn(
            f"{unit.name} ({unit.unit_id}) is the fallback owner of case {case.case_id}: it cannot return it"
        )
    assert case.status_event is not None
    assert case.judgment is not None
    returned = event_answering(
        case.status_event,
        CaseReturned(unit_id=command.unit_id, returned_by=command.by, reason=command.reason),
        actor=_unit_actor(command),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
    after = evolve(case, returned)
    if after.returns >= limits.returns:
        payload = fallback_assignment(
            command.unit_id,
            assignment.town_code,
            reference,
            f"returned {after.returns} times, the return limit",
            returns=after.returns,
        )
    else:
        choice = choose_unit(case.judgment.category, assignment.town_code, reference, exclude=after.returned_by)
        payload = choice.model_copy(
            update={
                "reason": f"returned by {unit.name} ({unit.unit_id}): {choice.reason}",
                "returns_so_far": after.returns,
            }
        )
    reassigned = event_caused_by(
        returned, payload, actor=Actor.system(Producer.DISPATCH), occurred_at=command.now, decision="assigned"
    )
    return [returned, reassigned]


def transfer_case(
    case: DispatchCase, command: TransferCase, reference: ReferenceData, limits: DisputeLimits
) -> list[Envelope]:
    """The lead unit hands the case to a named unit, within the transfer limit."""
    assignment = _held_by_unit(case, command.unit_id)
    if command.to_unit_id == command.unit_id:
        raise TransferTargetRefused(f"case {case.case_id} is already with {command.unit_id}")
    if command.to_unit_id in case.returned_by:
        raise TransferTargetRefused(f"{command.to_unit_id} returned case {case.case_id} before: it is not sent back")
    if case.transfers >= limits.transfers:
        raise TransferLimitReached(
            f"case {case.case_id} was transferred {case.transfers} times, the limit: handle or return it"
        )
    assert case.status_event is not None
    source, target = reference.units[command.unit_id], reference.units[command.to_unit_id]
    transferred = event_answering(
        case.status_event,
        CaseTransferred(
            from_unit_id=command.unit_id,
            to_unit_id=command.to_unit_id,
            transferred_by=command.by,
            reason=command.reason,
        ),
        actor=_unit_actor(command),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
    reassigned = event_caused_by(
        transferred,
        CaseAssigned(
            unit_id=target.unit_id,
            unit_name=target.name,
            town_code=assignment.town_code,
            route=AssignmentRoute.TRANSFER,
            reason=f"transferred by {source.name} ({source.unit_id}): {command.reason}",
            returns_so_far=case.returns,
            fallback_owner=is_fallback_owner(target),
        ),
        actor=Actor.system(Producer.DISPATCH),
        occurred_at=command.now,
        decision="assigned",
    )
    return [transferred, reassigned]


def assign_jointly(case: DispatchCase, command: AssignJointly, reference: ReferenceData) -> Envelope:
    """A dispatcher names the lead and the assisting units of a case its lead has not signed for yet."""
    assignment = _assignment_of(case, JointAssignmentRefused)
    _require_not_following(case)
    if case.status is not CaseStatus.ASSIGNED or case.status_event is None:
        raise JointAssignmentRefused(
            f"case {case.case_id} is {case.status}: units are assigned jointly before the lead acknowledges"
        )
    lead = reference.units[command.lead_unit_id]
    assisting = ", ".join(command.assisting_unit_ids) or "none"
    return event_answering(
        case.status_event,
        CaseAssigned(
            unit_id=lead.unit_id,
            unit_name=lead.name,
            town_code=assignment.town_code,
            route=AssignmentRoute.DISPATCHER,
            reason=f"dispatcher {command.by}: {lead.name} ({lead.unit_id}) leads, assisted by {assisting}: "
            f"{command.reason}",
            assisting_unit_ids=command.assisting_unit_ids,
            returns_so_far=case.returns,
            fallback_owner=is_fallback_owner(lead),
        ),
        actor=Actor(id=command.by, role=ActorRole.SUPERVISOR, subject=command.subject),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )


def _assignment_of(case: DispatchCase, not_yet: type[RuleViolation]) -> Assignment:
    if not case.known:
        raise CaseNotFound(case.case_id)
    _require_not_following(case)
    if case.assignment is None:
        raise not_yet(f"case {case.case_id} is not assigned yet")
    return case.assignment


def _require_not_following(case: DispatchCase) -> None:
    if case.status in (CaseStatus.MERGED, CaseStatus.DUPLICATE):
        raise CaseFollowsAnother(f"case {case.case_id} is {case.status}: it follows another case")


def _held_by_unit(case: DispatchCase, unit_id: str) -> Assignment:
    assignment = _assignment_of(case, NotWithTheUnit)
    _require_lead_unit(case, assignment, unit_id)
    if case.status not in WITH_THE_UNIT:
        raise NotWithTheUnit(f"case {case.case_id} is {case.status}: only a case the unit holds can be passed on")
    return assignment


def _require_lead_unit(case: DispatchCase, assignment: Assignment, unit_id: str) -> None:
    if unit_id != assignment.unit_id:
        raise NotAssignedToThisUnit(
            f"case {case.case_id} is assigned to {assignment.unit_name} ({assignment.unit_id}), not to {unit_id}"
        )


def _unit_actor(command: AcknowledgeCase | ReportResult | RequestExtension | ReturnCase | TransferCase) -> Actor:
    return Actor(id=command.by, role=ActorRole.UNIT, unit_id=command.unit_id, subject=command.subject)
