"""triage's handlers: the judgment an officer makes, the rules' judgment of an accepted case, and
the projection of a case into its judgment row and the review queue."""

from __future__ import annotations

import json
from dataclasses import dataclass

from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.runtime.streams import Stream
from caseloop_events.runtime.unit_of_work import UnitOfWork
from caseloop_triage.adapters.tables import judgments, review_queue
from caseloop_triage.domain.model import JudgeCase, Judgment, TriageCase, judge_by_officer, judge_by_rules


@dataclass(frozen=True)
class TriageDeps:
    """What triage's handlers use besides their unit of work; built once, in app.py."""

    reference: ReferenceData
    review_below_confidence: float


Work = UnitOfWork[TriageDeps, TriageCase]


async def judge_case(command: JudgeCase, uow: Work) -> Judgment:
    """An officer judges a case the rules sent for review, or re-judges a judged one."""
    stream = await uow.stream(command.case_id)
    uow.emit(judge_by_officer(stream.state, command, uow.deps.reference))
    judgment = stream.state.judgment
    assert judgment is not None
    return judgment


async def judge_when_due(event: Envelope, uow: Work) -> None:
    """An accepted case not judged yet is judged by the rules, or queued for an officer when they
    are not confident; any other change of the case (a closure, an unmerge) is only recorded."""
    case = (await uow.stream(event.case_id)).state
    decided = judge_by_rules(case, uow.deps.reference, uow.deps.review_below_confidence, uow.now())
    if decided is not None:
        uow.emit(decided)


async def project(stream: Stream[TriageCase], uow: Work) -> None:
    """Bring the case's judgment row and its place in the review queue in line with its folded state."""
    case = stream.state
    judgment = case.judgment
    if judgment is not None:
        decision = judgment.decision
        uow.put(
            judgments,
            {
                "case_id": str(case.case_id),
                "category": decision.category,
                "risk_level": decision.risk_level,
                "sla_tier": decision.sla_tier.value,
                "handling_level": decision.handling_level.value,
                "campaign_ids": json.dumps(list(decision.campaign_ids)),
                "judged_by": decision.judged_by.value,
                "judged_by_id": judgment.judged_by_id,
                "confidence": decision.confidence,
                "judged_at": judgment.judged_at,
                "event_id": str(judgment.event_id),
                "body": decision.model_dump_json(),
            },
        )
    review, report = case.review, case.report
    if not case.awaits_officer or review is None or report is None or case.review_event is None:
        uow.remove(review_queue, case_id=str(case.case_id))
        return
    uow.put(
        review_queue,
        {
            "case_id": str(case.case_id),
            "case_no": report.case_no,
            "title": report.title,
            "description": report.description,
            "grid_code": report.location.grid_code,
            "town_code": report.location.town_code,
            "queued_at": case.review_event.occurred_at,
            "reason": review.reason,
            "candidate_categories": json.dumps(list(review.candidate_categories)),
            "event_id": str(case.review_event.event_id),
        },
    )
