"""supervision's timers: the escalation notices, the closure of cases not evaluated in time, and
the callbacks to source systems. Each round reads what is due from the projections, then asks the
service's own command for each case, decided again on the case as it stands — so two rounds (or
two replicas) never act twice. Timers act on the current state only: a replay runs none."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import httpx

from caseloop_events.contracts.clock import Clock
from caseloop_supervision.adapters.callbacks import post_feedback
from caseloop_supervision.service_layer.commands import (
    CloseWithoutEvaluation,
    Handle,
    IssueDueNotices,
    RecordFeedbackAttempt,
)
from caseloop_supervision.service_layer.supervising import SupervisionDeps

log = logging.getLogger(__name__)

#: How many cases or deliveries one round takes on; the next round takes the rest.
BATCH_SIZE = 100

#: At most this many callbacks are awaited at once, so one slow receiver does not hold up the rest.
CONCURRENT_DELIVERIES = 10


async def issue_due_notices(handle: Handle, deps: SupervisionDeps, clock: Clock) -> int:
    """Issue every escalation notice whose rung a running clock has reached (预警, 超期, 黄牌, 红牌).
    Returns how many notices were issued."""
    due = await deps.store.due_for_notices(clock.now(), BATCH_SIZE)
    return await _each(handle, due, IssueDueNotices, "notices")


async def close_cases_not_evaluated_in_time(handle: Handle, deps: SupervisionDeps, clock: Clock) -> int:
    """Close every verified case the citizen has not evaluated within the evaluation window
    (``case.closed``, reason ``no_evaluation_in_time``, caused by the verification). Returns how many."""
    due = await deps.store.awaiting_evaluation_since(clock.now() - deps.evaluation_window, BATCH_SIZE)
    return await _each(handle, due, CloseWithoutEvaluation, "auto-closure")


async def _each(handle: Handle, case_ids: Sequence[UUID], command: Callable[[UUID], object], what: str) -> int:
    emitted = 0
    for case_id in case_ids:
        try:
            emitted += await handle(command(case_id))
        except Exception:
            log.exception("%s for case %s failed; the next round tries again", what, case_id)
    return emitted


async def deliver_due_feedback(handle: Handle, deps: SupervisionDeps, clock: Clock, http: httpx.AsyncClient) -> int:
    """Attempt every feedback delivery that is due, and record each outcome as an event.
    Returns how many attempts were recorded."""
    due = await deps.store.due_deliveries(clock.now(), BATCH_SIZE)
    slots = asyncio.Semaphore(CONCURRENT_DELIVERIES)

    async def deliver(row: dict[str, Any]) -> bool:
        async with slots:
            try:
                return await _deliver(handle, http, row)
            except Exception:
                log.exception(
                    "feedback delivery %s failed to be recorded; the next round tries again", row["delivery_id"]
                )
                return False

    recorded = await asyncio.gather(*(deliver(row) for row in due))
    return sum(recorded)


async def _deliver(handle: Handle, http: httpx.AsyncClient, row: dict[str, Any]) -> bool:
    # Outside any unit of work: a slow receiver must not hold anything up.
    outcome = await post_feedback(
        http,
        row["url"],
        delivery_id=UUID(row["delivery_id"]),
        event_type=row["about_type"],
        body=row["body"],
        attempt=row["attempts"] + 1,
    )
    recorded: bool = await handle(RecordFeedbackAttempt(row, outcome))
    return recorded
