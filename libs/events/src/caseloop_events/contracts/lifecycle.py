"""Where each event moves a case's status: one answer for every service that folds it.

dispatch and supervision both keep a case's status and must agree on it, or a command one of
them accepts is one the other refuses. The transitions live here, once (ADR 0006).
"""

from __future__ import annotations

from dataclasses import dataclass

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import CaseAcknowledged, CaseAssigned, CaseResultReported, CaseReturned
from caseloop_events.contracts.envelope import EventPayload
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseRejected,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened, CaseVerificationFailed, CaseVerified
from caseloop_events.contracts.triage import CaseJudged, CaseQueuedForReview

#: Statuses before a judgment: a (first) judgment or a review request moves the case on from them.
BEFORE_JUDGMENT = frozenset({CaseStatus.ACCEPTED, CaseStatus.PENDING_REVIEW})

#: Events that always put the case in one status, whatever it was.
_MOVES_TO: dict[type[EventPayload], CaseStatus] = {
    CaseRejected: CaseStatus.REJECTED,
    CaseLinkedAsDuplicate: CaseStatus.DUPLICATE,
    CaseAssigned: CaseStatus.ASSIGNED,
    CaseReturned: CaseStatus.RETURNED,
    CaseAcknowledged: CaseStatus.ACKNOWLEDGED,
    CaseResultReported: CaseStatus.RESULT_REPORTED,
    CaseVerified: CaseStatus.VERIFIED,
    # Rework: the case is back with the unit that signed for it, which reports again.
    CaseVerificationFailed: CaseStatus.ACKNOWLEDGED,
    CaseReopened: CaseStatus.REOPENED,
    CaseClosed: CaseStatus.CLOSED,
}


@dataclass(frozen=True)
class CaseProgress:
    """A case's status, and the one it had when it was merged (restored by an unmerge)."""

    status: CaseStatus | None = None
    status_before_merge: CaseStatus | None = None


def progress(current: CaseProgress, payload: EventPayload) -> CaseProgress | None:
    """The case's progress after the event, or None when the event does not move its status.

    A moving event is the one the next command on the case answers (its ``status_event``).
    """
    status = current.status
    match payload:
        case CasesMerged():
            return CaseProgress(CaseStatus.MERGED, status_before_merge=status)
        case CaseUnmerged() if status is CaseStatus.MERGED:
            return CaseProgress(current.status_before_merge or CaseStatus.ACCEPTED)
        case CaseUnmerged() if status is CaseStatus.DUPLICATE:
            # Intake follows with case.accepted (caused by this event): judged like any other case.
            return CaseProgress(CaseStatus.ACCEPTED)
        case CaseAccepted() if status in (None, CaseStatus.ACCEPTED):
            return CaseProgress(CaseStatus.ACCEPTED)
        case CaseQueuedForReview() if status is None or status in BEFORE_JUDGMENT:
            return CaseProgress(CaseStatus.PENDING_REVIEW)
        case CaseJudged() if status is None or status in BEFORE_JUDGMENT:
            return CaseProgress(CaseStatus.TRIAGED)
        case _ if type(payload) in _MOVES_TO:
            return CaseProgress(_MOVES_TO[type(payload)], current.status_before_merge)
    return None
