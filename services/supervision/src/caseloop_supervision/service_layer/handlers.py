"""supervision's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, or_, select, update

from caseloop_events.clock import Clock
from caseloop_events.consumer import Delivery
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.intake import CaseLinkedAsDuplicate, CasesMerged
from caseloop_events.contracts.supervision import CaseClosed
from caseloop_events.envelope import Envelope
from caseloop_events.errors import CaseNotFound
from caseloop_events.storage import insert_ignoring_duplicates, upsert
from caseloop_events.unit_of_work import Database, UnitOfWork
from caseloop_supervision.adapters.tables import case_links, cases, feedback_deliveries
from caseloop_supervision.domain.decisions import (
    EvaluateHandling,
    VerifyResult,
    close_with_original,
    evaluate,
    verify,
)
from caseloop_supervision.domain.feedback import FeedbackPolicy, FeedbackRequest, feedback_for
from caseloop_supervision.domain.model import Feedback, FeedbackState, SupervisedCase, fold
from caseloop_supervision.service_layer.views import CasePage, CaseView, Timeline, case_view, timeline


@dataclass(frozen=True)
class SupervisionServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    clock: Clock
    evaluation_window: timedelta = timedelta(hours=72)
    feedback_policy: FeedbackPolicy = field(default_factory=FeedbackPolicy)


# ---------------------------------------------------------------------------------------- events


async def handle_event(uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
    """Every event of every service joins its case's timeline and updates the case list. A link
    to a case that is closed already closes the linked case at once (never during a replay)."""
    original = None
    original_id = _original_named_by(event)
    if original_id is not None and not delivery.replaying:
        # The original first: the order in which closing an original locks its followers, so the
        # two never deadlock, and neither misses the other (the link is seen, or the closure is).
        original = fold(original_id, await uow.lock_case(original_id))
    await uow.lock_case(event.case_id)
    await uow.record(event)
    case = fold(event.case_id, await uow.case_events(event.case_id))
    if original is not None and original.status is CaseStatus.CLOSED and original.status_event is not None:
        closing = close_with_original(case, original.status_event, uow.clock.now())
        if closing:
            await commit_new_events(uow, case.case_id, closing)
            return
    await project(uow, case)


def _original_named_by(event: Envelope) -> UUID | None:
    match event.payload:
        case CaseLinkedAsDuplicate() as linked:
            return linked.original_case_id
        case CasesMerged() as merged:
            return merged.into_case_id
        case _:
            return None


async def commit_new_events(uow: UnitOfWork, case_id: UUID, new_events: Sequence[Envelope]) -> CaseView:
    """Emit what supervision decided for a case (the case is locked), with what follows from it in
    the same transaction: the feedback owed to the source system, and the closure of the cases
    that follow a closed one. Only here, never when reading the log, so a replay sends nothing."""
    await uow.emit(*new_events)
    case = fold(case_id, await uow.case_events(case_id))
    for event in new_events:
        request = feedback_for(case, event)
        if request is not None:
            await _queue_feedback(uow, request)
    view = await project(uow, case)
    for event in new_events:
        if isinstance(event.payload, CaseClosed):
            await _close_followers(uow, event)
    return view


async def _close_followers(uow: UnitOfWork, closure: Envelope) -> None:
    follower_ids = await uow.session.scalars(
        select(case_links.c.follower_case_id)
        .where(case_links.c.original_case_id == str(closure.case_id), case_links.c.active.is_(True))
        .order_by(case_links.c.follower_case_id)
    )
    for follower_id in [UUID(f) for f in follower_ids]:
        follower = fold(follower_id, await uow.lock_case(follower_id))
        closing = close_with_original(follower, closure, uow.clock.now())
        if closing:
            # A follower's closure is a closure too: its own followers close and its source hears of it.
            await commit_new_events(uow, follower_id, closing)


async def _queue_feedback(uow: UnitOfWork, request: FeedbackRequest) -> None:
    now = uow.clock.now()
    await uow.session.execute(
        insert_ignoring_duplicates(
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
                "created_at": now,
                "updated_at": now,
            },
            uow.dialect,
        )
    )


async def project(uow: UnitOfWork, case: SupervisedCase) -> CaseView:
    """Bring the case list (and the case's link to the case it follows) up to the folded case."""
    view = case_view(case, await _queued_feedback(uow, case.case_id))
    await uow.session.execute(
        upsert(
            cases,
            {
                "case_id": str(case.case_id),
                "case_no": case.case_no,
                "status": (case.status.value if case.status else "unknown"),
                "title": case.title,
                "source_system": case.source_system,
                "town_code": case.town_code,
                "village_code": case.village_code,
                "grid_code": case.grid_code,
                "category": case.category,
                "risk_level": case.risk_level,
                "unit_id": case.unit_id,
                "assisting_unit_ids": _as_members(case.assisting_unit_ids),
                "campaign_ids": _as_members(case.campaign_ids),
                "returns": case.returns,
                "holder_kind": view.holder.kind.value,
                "holder_id": view.holder.id,
                "accepted_at": case.stages.accepted_at,
                "awaiting_evaluation_since": case.awaiting_evaluation_since,
                "closed_at": case.stages.closed_at,
                "updated_at": case.last_event_at or uow.clock.now(),
                "view": view.model_dump_json(),
            },
            ("case_id",),
            uow.dialect,
        )
    )
    link = case.follows
    if link is not None:
        await uow.session.execute(
            upsert(
                case_links,
                {
                    "follower_case_id": str(case.case_id),
                    "original_case_id": str(link.original.case_id),
                    "kind": link.kind.value,
                    "active": True,
                    "updated_at": uow.clock.now(),
                },
                ("follower_case_id",),
                uow.dialect,
            )
        )
    else:
        await uow.session.execute(
            update(case_links)
            .where(case_links.c.follower_case_id == str(case.case_id), case_links.c.active.is_(True))
            .values(active=False, updated_at=uow.clock.now())
        )
    return view


def _as_members(ids: Sequence[str]) -> str:
    """``,A,B,``: each member between commas, so ``LIKE '%,A,%'`` finds exactly A."""
    return "," + "".join(f"{i}," for i in ids)


async def _queued_feedback(uow: UnitOfWork, case_id: UUID) -> list[Feedback]:
    """Deliveries queued but not yet attempted: no event tells of them yet."""
    rows = await uow.session.execute(
        select(feedback_deliveries.c.about_event_id, feedback_deliveries.c.about_type, feedback_deliveries.c.url)
        .where(feedback_deliveries.c.case_id == str(case_id), feedback_deliveries.c.attempts == 0)
        .order_by(feedback_deliveries.c.created_at, feedback_deliveries.c.delivery_id)
    )
    return [
        Feedback(about_event_id=UUID(about), about_type=about_type, url=url, state=FeedbackState.PENDING)
        for about, about_type, url in rows
    ]


# -------------------------------------------------------------------------------------- commands


async def _decide(
    services: SupervisionServices, case_id: UUID, decide: Callable[[SupervisedCase], list[Envelope]]
) -> CaseView:
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.lock_case(case_id))
        if not case.known:
            raise CaseNotFound(case_id)
        return await commit_new_events(uow, case_id, decide(case))


async def verify_result(services: SupervisionServices, case_id: UUID, command: VerifyResult) -> CaseView:
    """A supervisor verifies the reported result: passed, or back to the unit for rework."""
    return await _decide(services, case_id, lambda case: verify(case, command))


async def evaluate_handling(services: SupervisionServices, case_id: UUID, command: EvaluateHandling) -> CaseView:
    """The citizen evaluates: satisfied or basically satisfied closes the case, unsatisfied reopens it."""
    return await _decide(services, case_id, lambda case: evaluate(case, command))


# --------------------------------------------------------------------------------------- queries


async def get_case(services: SupervisionServices, case_id: UUID) -> CaseView:
    async with services.database.reading() as session:
        view = await session.scalar(select(cases.c.view).where(cases.c.case_id == str(case_id)))
    if view is None:
        raise CaseNotFound(case_id)
    return CaseView.model_validate_json(view)


async def get_timeline(services: SupervisionServices, case_id: UUID) -> Timeline:
    async with services.database.transaction() as uow:
        events = await uow.case_events(case_id)
    if not events:
        raise CaseNotFound(case_id)
    return timeline(fold(case_id, events), events)


async def list_cases(
    services: SupervisionServices,
    *,
    status: str | None = None,
    town_code: str | None = None,
    unit_id: str | None = None,
    campaign_id: str | None = None,
    returned_more_than_once: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> CasePage:
    """Cases, most recently changed first; ``unit_id`` matches the lead and the assisting units."""
    conditions: list[Any] = []
    if status is not None:
        conditions.append(cases.c.status == status)
    if town_code is not None:
        conditions.append(cases.c.town_code == town_code)
    if unit_id is not None:
        conditions.append(
            or_(cases.c.unit_id == unit_id, cases.c.assisting_unit_ids.contains(f",{unit_id},", autoescape=True))
        )
    if campaign_id is not None:
        conditions.append(cases.c.campaign_ids.contains(f",{campaign_id},", autoescape=True))
    if returned_more_than_once is not None:
        conditions.append(cases.c.returns >= 2 if returned_more_than_once else cases.c.returns < 2)
    async with services.database.reading() as session:
        total = await session.scalar(select(func.count()).select_from(cases).where(*conditions))
        rows = await session.scalars(
            select(cases.c.view)
            .where(*conditions)
            .order_by(cases.c.updated_at.desc(), cases.c.case_id)
            .limit(limit)
            .offset(offset)
        )
        items = [CaseView.model_validate_json(view) for view in rows]
    return CasePage(items=items, total=int(total or 0), limit=limit, offset=offset)
