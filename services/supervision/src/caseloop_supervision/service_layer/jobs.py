"""supervision's background jobs: the notice timer, the auto-closure timer and the feedback deliveries.

Each round reads what is due from the projection, then decides case by case in its own
transaction on the locked, re-folded case, so two rounds (or two replicas) never act twice.
Timers act on the current state only: a replay rebuilds projections and runs no job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import Select, select, update

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.supervision import FeedbackDelivered, FeedbackFailed
from caseloop_events.runtime.service import run_periodically
from caseloop_supervision.adapters.callbacks import post_feedback
from caseloop_supervision.adapters.tables import cases, feedback_deliveries
from caseloop_supervision.domain.clocks import due_notices
from caseloop_supervision.domain.decisions import close_if_evaluation_overdue
from caseloop_supervision.domain.feedback import attempt_recorded
from caseloop_supervision.domain.model import FeedbackState, SupervisedCase, fold
from caseloop_supervision.service_layer.handlers import SupervisionServices, commit_new_events

log = logging.getLogger(__name__)

__all__ = ["close_cases_not_evaluated_in_time", "deliver_due_feedback", "issue_due_notices", "run_periodically"]

#: How many cases or deliveries one round takes on; the next round takes the rest.
BATCH_SIZE = 100

#: At most this many callbacks are awaited at once, so one slow receiver does not hold up the rest.
CONCURRENT_DELIVERIES = 10

_DUE_STATES = (FeedbackState.PENDING.value, FeedbackState.RETRYING.value)


async def close_cases_not_evaluated_in_time(services: SupervisionServices) -> int:
    """Close every verified case the citizen has not evaluated within the evaluation window
    (``case.closed``, reason ``no_evaluation_in_time``, caused by the verification). Returns how many."""
    due_before = services.clock.now() - services.evaluation_window
    due = (
        select(cases.c.case_id)
        .where(cases.c.status == CaseStatus.VERIFIED.value, cases.c.awaiting_evaluation_since <= due_before)
        .order_by(cases.c.awaiting_evaluation_since, cases.c.case_id)
    )
    # Re-checked on the locked case: an evaluation may have arrived since the scan.
    return await _decide_on_due_cases(
        services,
        due,
        lambda case: close_if_evaluation_overdue(case, services.clock.now(), services.evaluation_window),
        "auto-closure",
    )


async def issue_due_notices(services: SupervisionServices) -> int:
    """Issue every escalation notice whose rung a running clock has reached (预警, 超期, 黄牌, 红牌).
    Returns how many notices were issued."""
    due = (
        select(cases.c.case_id)
        .where(cases.c.next_notice_at <= services.clock.now())
        .order_by(cases.c.next_notice_at, cases.c.case_id)
    )
    # Decided on the locked case: a notice already issued (by another round, before a restart)
    # is in its log, and the ladder issues each rung once per deadline.
    return await _decide_on_due_cases(
        services, due, lambda case: due_notices(case, services.rules, services.clock.now()), "notices"
    )


async def _decide_on_due_cases(
    services: SupervisionServices,
    due: Select[Any],
    decide: Callable[[SupervisedCase], list[Envelope]],
    what: str,
) -> int:
    """A timer's round: the cases the projection says are due (a batch), each decided on again
    in its own transaction on the locked, re-folded case. Returns how many events were emitted."""
    async with services.database.reading() as session:
        case_ids = [UUID(c) for c in await session.scalars(due.limit(BATCH_SIZE))]
    emitted = 0
    for case_id in case_ids:
        try:
            async with services.database.transaction() as uow:
                decided = decide(fold(case_id, await uow.lock_case(case_id)))
                if decided:
                    await commit_new_events(uow, case_id, decided, services.rules)
                    emitted += len(decided)
        except Exception:
            log.exception("%s for case %s failed; the next round tries again", what, case_id)
    return emitted


async def deliver_due_feedback(services: SupervisionServices, http: httpx.AsyncClient) -> int:
    """Attempt every feedback delivery that is due, and record each outcome as an event.
    Returns how many attempts were recorded."""
    now = services.clock.now()
    async with services.database.reading() as session:
        due = (
            await session.execute(
                select(feedback_deliveries)
                .where(feedback_deliveries.c.state.in_(_DUE_STATES), feedback_deliveries.c.next_attempt_at <= now)
                .order_by(feedback_deliveries.c.next_attempt_at, feedback_deliveries.c.delivery_id)
                .limit(BATCH_SIZE)
            )
        ).all()
    slots = asyncio.Semaphore(CONCURRENT_DELIVERIES)

    async def deliver(row: Any) -> bool:
        async with slots:
            try:
                return await _deliver(services, http, row)
            except Exception:
                log.exception("feedback delivery %s failed to be recorded; the next round tries again", row.delivery_id)
                return False

    recorded = await asyncio.gather(*(deliver(row) for row in due))
    return sum(recorded)


async def _deliver(services: SupervisionServices, http: httpx.AsyncClient, row: Any) -> bool:
    attempt = row.attempts + 1
    delivery_id = UUID(row.delivery_id)
    # Outside any transaction: a slow receiver must not hold a database lock.
    outcome = await post_feedback(
        http, row.url, delivery_id=delivery_id, event_type=row.about_type, body=row.body, attempt=attempt
    )
    case_id = UUID(row.case_id)
    async with services.database.transaction() as uow:
        events = await uow.lock_case(case_id)
        current = (
            await uow.session.execute(
                select(feedback_deliveries.c.attempts, feedback_deliveries.c.state).where(
                    feedback_deliveries.c.delivery_id == row.delivery_id
                )
            )
        ).one()
        if current.attempts != row.attempts or current.state not in _DUE_STATES:
            return False  # another round or replica recorded this attempt: the receiver de-duplicates
        about = next((e for e in events if str(e.event_id) == row.about_event_id), None)
        if about is None:
            raise LookupError(f"delivery {row.delivery_id} is about event {row.about_event_id}, not in case {case_id}")
        now = services.clock.now()
        recorded = attempt_recorded(about, row.url, attempt, outcome, now, services.feedback_policy)
        match recorded.payload:
            case FeedbackDelivered():
                state, next_attempt_at = FeedbackState.DELIVERED, None
            case FeedbackFailed() as failed:
                state = FeedbackState.GAVE_UP if failed.gave_up else FeedbackState.RETRYING
                next_attempt_at = failed.next_attempt_at
            case _:
                raise AssertionError(f"unexpected feedback outcome {recorded.type}")
        await uow.session.execute(
            update(feedback_deliveries)
            .where(feedback_deliveries.c.delivery_id == row.delivery_id)
            .values(
                attempts=attempt,
                state=state.value,
                next_attempt_at=next_attempt_at,
                last_status_code=outcome.status_code,
                last_error=outcome.error,
                updated_at=now,
            )
        )
        await commit_new_events(uow, case_id, [recorded], services.rules)
    return True
