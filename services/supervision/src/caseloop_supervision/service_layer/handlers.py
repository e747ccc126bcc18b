"""supervision's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, select

from caseloop_events.clock import Clock
from caseloop_events.consumer import Delivery
from caseloop_events.envelope import Envelope
from caseloop_events.errors import CaseNotFound
from caseloop_events.storage import upsert
from caseloop_events.unit_of_work import Database, UnitOfWork
from caseloop_supervision.adapters.tables import cases
from caseloop_supervision.domain.decisions import EvaluateHandling, VerifyResult, evaluate, verify
from caseloop_supervision.domain.model import SupervisedCase, fold
from caseloop_supervision.service_layer.views import CasePage, CaseView, Timeline, case_view, timeline


@dataclass(frozen=True)
class SupervisionServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    clock: Clock


async def handle_event(uow: UnitOfWork, event: Envelope, _delivery: Delivery) -> None:
    """Every event of every service joins its case's timeline and updates the case list."""
    await uow.lock_case(event.case_id)
    await uow.record(event)
    await _project(uow, fold(event.case_id, await uow.case_events(event.case_id)))


async def _project(uow: UnitOfWork, case: SupervisedCase) -> None:
    view = case_view(case)
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
                "holder_kind": view.holder.kind.value,
                "holder_id": view.holder.id,
                "accepted_at": case.stages.accepted_at,
                "closed_at": case.stages.closed_at,
                "updated_at": case.last_event_at or uow.clock.now(),
                "view": view.model_dump_json(),
            },
            ("case_id",),
            uow.dialect,
        )
    )


async def _decide(
    services: SupervisionServices, case_id: UUID, decide: Callable[[SupervisedCase], list[Envelope]]
) -> CaseView:
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.lock_case(case_id))
        if not case.known:
            raise CaseNotFound(case_id)
        new_events = decide(case)
        await uow.emit(*new_events)
        case = fold(case_id, await uow.case_events(case_id))
        await _project(uow, case)
    return case_view(case)


async def verify_result(services: SupervisionServices, case_id: UUID, command: VerifyResult) -> CaseView:
    """A supervisor verifies the reported result: passed, or back to the unit for rework."""
    return await _decide(services, case_id, lambda case: verify(case, command))


async def evaluate_handling(services: SupervisionServices, case_id: UUID, command: EvaluateHandling) -> CaseView:
    """The citizen evaluates; a satisfied or basically satisfied evaluation closes the case."""
    return await _decide(services, case_id, lambda case: evaluate(case, command))


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
    status: str | None,
    town_code: str | None,
    unit_id: str | None,
    limit: int,
    offset: int,
) -> CasePage:
    conditions = [
        column == value
        for column, value in ((cases.c.status, status), (cases.c.town_code, town_code), (cases.c.unit_id, unit_id))
        if value is not None
    ]
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
