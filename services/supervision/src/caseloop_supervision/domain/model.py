"""A supervised case: folded from every event of every service, in causal order. Pure."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import CaseAcknowledged, CaseAssigned, CaseResultReported
from caseloop_events.contracts.intake import CaseAccepted, CaseRejected
from caseloop_events.contracts.supervision import (
    CaseClosed,
    CaseEvaluated,
    CaseVerificationFailed,
    CaseVerified,
    Rating,
)
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.envelope import Envelope


class HolderKind(StrEnum):
    """Who must act next on the case."""

    SERVICE = "service"
    UNIT = "unit"
    CITIZEN = "citizen"
    NOBODY = "nobody"


@dataclass(frozen=True)
class Holder:
    kind: HolderKind
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Stages:
    """When the case reached each stage of the loop (the latest time, after rework)."""

    accepted_at: datetime | None = None
    judged_at: datetime | None = None
    assigned_at: datetime | None = None
    acknowledged_at: datetime | None = None
    result_reported_at: datetime | None = None
    verified_at: datetime | None = None
    evaluated_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class SupervisedCase:
    case_id: uuid.UUID
    status: CaseStatus | None = None
    case_no: str | None = None
    title: str | None = None
    source_system: str | None = None
    grid_code: str | None = None
    village_code: str | None = None
    town_code: str | None = None
    category: str | None = None
    risk_level: int | None = None
    sla_tier: str | None = None
    campaign_ids: tuple[str, ...] = ()
    unit_id: str | None = None
    unit_name: str | None = None
    rating: Rating | None = None
    stages: Stages = Stages()
    #: The event that put the case in its current status: the cause of the next command.
    status_event: Envelope | None = None
    event_count: int = 0
    last_event_at: datetime | None = None

    @property
    def known(self) -> bool:
        return self.event_count > 0

    @property
    def holder(self) -> Holder:
        match self.status:
            case CaseStatus.ACCEPTED:
                return Holder(HolderKind.SERVICE, "triage", "judgment")
            case CaseStatus.TRIAGED:
                return Holder(HolderKind.SERVICE, "dispatch", "assignment")
            case CaseStatus.ASSIGNED | CaseStatus.ACKNOWLEDGED:
                return Holder(HolderKind.UNIT, self.unit_id, self.unit_name)
            case CaseStatus.RESULT_REPORTED:
                return Holder(HolderKind.SERVICE, "supervision", "verification")
            case CaseStatus.VERIFIED if self.rating is None:
                return Holder(HolderKind.CITIZEN, None, "evaluation")
            case CaseStatus.VERIFIED:
                # Rated unsatisfied: supervision decides on reopening (重办), a stage still to be built.
                return Holder(HolderKind.SERVICE, "supervision", "reopening")
            case _:
                return Holder(HolderKind.NOBODY)


def evolve(case: SupervisedCase, event: Envelope) -> SupervisedCase:
    case = replace(case, event_count=case.event_count + 1, last_event_at=event.occurred_at)
    at = event.occurred_at
    match event.payload:
        case CaseAccepted() as accepted:
            return replace(
                case,
                status=case.status or CaseStatus.ACCEPTED,
                status_event=case.status_event or event,
                case_no=accepted.case_no,
                title=accepted.title,
                source_system=accepted.source_system,
                grid_code=accepted.location.grid_code,
                village_code=accepted.location.village_code,
                town_code=accepted.location.town_code,
                stages=replace(case.stages, accepted_at=at),
            )
        case CaseRejected() as rejected:
            return _moved(
                replace(case, case_no=rejected.case_no, title=rejected.title, source_system=rejected.source_system),
                CaseStatus.REJECTED,
                event,
            )
        case CaseJudged() as judged:
            judged_case = replace(
                case,
                category=judged.category,
                risk_level=judged.risk_level,
                sla_tier=judged.sla_tier.value,
                campaign_ids=judged.campaign_ids,
                stages=replace(case.stages, judged_at=at),
            )
            if case.status in (None, CaseStatus.ACCEPTED):
                return _moved(judged_case, CaseStatus.TRIAGED, event)
            return judged_case
        case CaseAssigned() as assigned:
            return _moved(
                replace(
                    case,
                    unit_id=assigned.unit_id,
                    unit_name=assigned.unit_name,
                    stages=replace(case.stages, assigned_at=at),
                ),
                CaseStatus.ASSIGNED,
                event,
            )
        case CaseAcknowledged():
            return _moved(
                replace(case, stages=replace(case.stages, acknowledged_at=at)), CaseStatus.ACKNOWLEDGED, event
            )
        case CaseResultReported():
            return _moved(
                replace(case, stages=replace(case.stages, result_reported_at=at)), CaseStatus.RESULT_REPORTED, event
            )
        case CaseVerified():
            return _moved(replace(case, stages=replace(case.stages, verified_at=at)), CaseStatus.VERIFIED, event)
        case CaseVerificationFailed():
            # Rework: the same unit handles the case again and reports a new result.
            return _moved(case, CaseStatus.ACKNOWLEDGED, event)
        case CaseEvaluated() as evaluated:
            return replace(
                case, rating=evaluated.rating, status_event=event, stages=replace(case.stages, evaluated_at=at)
            )
        case CaseClosed():
            return _moved(replace(case, stages=replace(case.stages, closed_at=at)), CaseStatus.CLOSED, event)
        case _:
            return case


def _moved(case: SupervisedCase, status: CaseStatus, event: Envelope) -> SupervisedCase:
    return replace(case, status=status, status_event=event)


def fold(case_id: uuid.UUID, events: Iterable[Envelope]) -> SupervisedCase:
    """The case as its events, in causal order, make it."""
    case = SupervisedCase(case_id)
    for event in events:
        case = evolve(case, event)
    return case
