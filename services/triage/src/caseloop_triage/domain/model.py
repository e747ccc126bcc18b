"""What triage knows of a case: folded from the case's events. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from caseloop_events.contracts.intake import CaseAccepted
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.envelope import Envelope


@dataclass(frozen=True)
class Judgment:
    """A judgment as the log records it: the decision, its event and when it was made."""

    event_id: UUID
    judged_at: datetime
    decision: CaseJudged


@dataclass(frozen=True)
class TriageCase:
    case_id: UUID
    accepted_event: Envelope | None = None
    report: CaseAccepted | None = None
    judgment: Judgment | None = None

    @property
    def awaits_judgment(self) -> bool:
        return self.report is not None and self.judgment is None


def evolve(case: TriageCase, event: Envelope) -> TriageCase:
    match event.payload:
        case CaseAccepted() as accepted:
            return replace(case, accepted_event=event, report=accepted)
        case CaseJudged() as judged:
            return replace(case, judgment=Judgment(event.event_id, event.occurred_at, judged))
        case _:
            return case


def fold(case_id: UUID, events: Iterable[Envelope]) -> TriageCase:
    case = TriageCase(case_id)
    for event in events:
        case = evolve(case, event)
    return case
