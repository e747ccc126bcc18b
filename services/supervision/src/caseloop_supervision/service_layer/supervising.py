"""Supervising a case as its events come (督办): its clocks follow where it stands, a duplicate of a
closed case closes with it, and whatever supervision decides is kept with what follows from it —
the clocks, the feedback owed to the source system, the closure of the cases that follow it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.intake import CaseLinkedAsDuplicate, CasesMerged
from caseloop_events.contracts.supervision import CaseClosed
from caseloop_events.runtime.unit_of_work import UnitOfWork
from caseloop_supervision.adapters.store import TownCaseCounts
from caseloop_supervision.adapters.tables import case_links, feedback_deliveries
from caseloop_supervision.domain.clocks import CLOCK_DECISIONS, ClockRules, reconcile_clocks
from caseloop_supervision.domain.decisions import close_with_original
from caseloop_supervision.domain.feedback import FeedbackPolicy, FeedbackRequest, feedback_for
from caseloop_supervision.domain.model import FeedbackState, SupervisedCase


class SupervisionReads(Protocol):
    """What supervision's handlers, commands and timers read besides the streams: its projections
    (the region modes, the links between cases, the case list) and its feedback deliveries, as they
    were last written. ``adapters.store.SupervisionStore`` answers in SQL, ``adapters.memory`` from
    an in-memory store's rows."""

    async def regions_in_emergency_mode(self) -> frozenset[str]:
        """The towns (and the district) in emergency mode; another process's switch may show a moment late."""

    def forget_region_modes(self) -> None:
        """This process switched a region's mode: the next ``regions_in_emergency_mode`` reads it."""

    async def followers_of(self, case_id: UUID) -> list[UUID]:
        """The cases still linked to this one (its duplicates, the cases merged into it), by id."""

    async def due_for_notices(self, now: datetime, limit: int) -> list[UUID]:
        """Cases whose running clock reached its next escalation rung by ``now``, the earliest first."""

    async def awaiting_evaluation_since(self, before: datetime, limit: int) -> list[UUID]:
        """Verified cases waiting for the citizen's evaluation since before ``before``, the longest first."""

    async def open_cases_in(self, town_code: str | None) -> list[UUID]:
        """The cases of a town (of the district: ``None``) that have not left the loop, by id."""

    async def due_deliveries(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Feedback deliveries to attempt now (pending or retrying), the longest due first."""

    async def case_counts_by_town(self, now: datetime) -> list[TownCaseCounts]:
        """Each town's open cases, those overdue at ``now`` and those escalated (``/metrics``), in
        town order; the cases of no town first."""

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """A feedback delivery's row as last written, to tell an attempt recorded meanwhile."""


@dataclass(frozen=True)
class SupervisionDeps:
    """What supervision's handlers use besides their unit of work; built once, in app.py."""

    rules: ClockRules
    store: SupervisionReads
    evaluation_window: timedelta = timedelta(hours=72)
    feedback_policy: FeedbackPolicy = field(default_factory=FeedbackPolicy)


Work = UnitOfWork[SupervisionDeps, SupervisedCase]


async def supervise(event: Envelope, uow: Work) -> None:
    """Another service's event of a case: a link to a case that is closed already closes the linked
    case at once; otherwise the case's clocks follow where it now stands."""
    original_id = _original_named_by(event)
    if original_id is not None:
        # The link rests on the original's state: written only if the original did not change
        # meanwhile, so a closure of the original and the link never miss each other.
        original = await uow.state(original_id)
        uow.depend_on(original_id)
        case = await uow.state(event.case_id)
        if original.status is CaseStatus.CLOSED and original.status_event is not None:
            closing = close_with_original(case, original.status_event, uow.now())
            if closing:
                await decided(uow, case.case_id, closing)
                return
    case = await uow.state(event.case_id)
    emergency = await in_emergency_mode(uow, case)
    clock_events = reconcile_clocks(case, event, emergency=emergency, rules=uow.deps.rules, now=uow.now())
    if clock_events:
        await decided(uow, case.case_id, clock_events)


async def in_emergency_mode(uow: Work, case: SupervisedCase) -> bool:
    """Whether the case's town, or the whole district, is in emergency mode now."""
    regions = [code for code in (case.town_code, case.district_code) if code is not None]
    if not regions:
        return False
    in_emergency = await uow.deps.store.regions_in_emergency_mode()
    return any(code in in_emergency for code in regions)


def _original_named_by(event: Envelope) -> UUID | None:
    match event.payload:
        case CaseLinkedAsDuplicate() as linked:
            return linked.original_case_id
        case CasesMerged() as merged:
            return merged.into_case_id
        case _:
            return None


async def decided(uow: Work, case_id: UUID, new_events: Sequence[Envelope]) -> SupervisedCase:
    """Keep what supervision decided for a case, with what follows from it in the same unit of work:
    the clocks that follow the new state, the feedback owed to the source system, and the closure of
    the cases that follow a closed one. Returns the case as it leaves it."""
    uow.emit(*new_events)
    stream = await uow.stream(case_id)
    case = stream.state
    if not all(isinstance(e.payload, CLOCK_DECISIONS) for e in new_events):
        emergency = await in_emergency_mode(uow, case)
        clock_events = reconcile_clocks(case, new_events[-1], emergency=emergency, rules=uow.deps.rules, now=uow.now())
        if clock_events:
            uow.emit(*clock_events)
            case = stream.state
    for event in new_events:
        request = feedback_for(case, event)
        if request is not None:
            _queue_feedback(uow, request)
    for event in new_events:
        if isinstance(event.payload, CaseClosed):
            await _close_followers(uow, event)
    return stream.state


async def _close_followers(uow: Work, closure: Envelope) -> None:
    followers = await uow.deps.store.followers_of(closure.case_id)
    # Links this unit of work put and has not written yet count too.
    for row in uow.pending(case_links):
        follower = UUID(row["follower_case_id"])
        if row["original_case_id"] == str(closure.case_id) and row["active"] and follower not in followers:
            followers.append(follower)
    for follower_id in sorted(followers):
        closing = close_with_original(await uow.state(follower_id), closure, uow.now())
        if closing:
            # A follower's closure is a closure too: its own followers close and its source hears of it.
            await decided(uow, follower_id, closing)


def _queue_feedback(uow: Work, request: FeedbackRequest) -> None:
    now = uow.now()
    uow.put(
        feedback_deliveries,
        {
            "delivery_id": str(request.delivery_id),
            "case_id": str(request.case_id),
            "url": request.url,
            "about_event_id": str(request.about.event_id),
            "about_type": request.about.type,
            "body": request.body.model_dump_json(),
            "attempts": 0,
            "state": FeedbackState.PENDING.value,
            "next_attempt_at": now,
            "last_status_code": None,
            "last_error": None,
            "created_at": now,
            "updated_at": now,
        },
    )
