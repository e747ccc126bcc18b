"""dispatch's read side: the assignment view, projected from the folded case and queried by units."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import RowMapping, func, select

from caseloop_dispatch.adapters.tables import assignments
from caseloop_dispatch.domain.model import DispatchCase
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import AssignmentRoute
from caseloop_events.errors import NotFound
from caseloop_events.reference import ReferenceData
from caseloop_events.unit_of_work import Database


class AssignmentView(BaseModel):
    """Where an assigned case stands with its unit (also the API's answer)."""

    case_id: UUID
    case_no: str | None
    title: str | None
    unit_id: str
    unit_name: str
    route: AssignmentRoute
    reason: str
    status: CaseStatus
    category: str | None
    town_code: str
    grid_code: str | None
    assigned_at: AwareDatetime
    acknowledged_at: AwareDatetime | None
    result_reported_at: AwareDatetime | None
    updated_at: AwareDatetime


class InboxPage(BaseModel):
    items: list[AssignmentView]
    total: int
    limit: int
    offset: int


def view_of(case: DispatchCase) -> AssignmentView | None:
    """The view of a case once it is assigned; None before."""
    assignment = case.assignment
    if assignment is None or case.status is None or case.last_event_at is None:
        return None
    return AssignmentView(
        case_id=case.case_id,
        case_no=case.location.case_no if case.location else None,
        title=case.location.title if case.location else None,
        unit_id=assignment.unit_id,
        unit_name=assignment.unit_name,
        route=assignment.route,
        reason=assignment.reason,
        status=case.status,
        category=case.judgment.category if case.judgment else None,
        town_code=assignment.town_code,
        grid_code=case.location.grid_code if case.location else None,
        assigned_at=assignment.assigned_at,
        acknowledged_at=case.acknowledged_at,
        result_reported_at=case.result_reported_at,
        updated_at=case.last_event_at,
    )


def row_of(view: AssignmentView) -> dict[str, Any]:
    return {
        "case_id": str(view.case_id),
        "case_no": view.case_no,
        "title": view.title,
        "unit_id": view.unit_id,
        "unit_name": view.unit_name,
        "route": view.route.value,
        "reason": view.reason,
        "status": view.status.value,
        "category": view.category,
        "town_code": view.town_code,
        "grid_code": view.grid_code,
        "assigned_at": view.assigned_at,
        "acknowledged_at": view.acknowledged_at,
        "result_reported_at": view.result_reported_at,
        "updated_at": view.updated_at,
    }


def _from_row(row: RowMapping) -> AssignmentView:
    return AssignmentView(
        case_id=UUID(row["case_id"]),
        case_no=row["case_no"],
        title=row["title"],
        unit_id=row["unit_id"],
        unit_name=row["unit_name"],
        route=AssignmentRoute(row["route"]),
        reason=row["reason"],
        status=CaseStatus(row["status"]),
        category=row["category"],
        town_code=row["town_code"],
        grid_code=row["grid_code"],
        assigned_at=_in_utc(row["assigned_at"]),
        acknowledged_at=_in_utc(row["acknowledged_at"]) if row["acknowledged_at"] else None,
        result_reported_at=_in_utc(row["result_reported_at"]) if row["result_reported_at"] else None,
        updated_at=_in_utc(row["updated_at"]),
    )


def _in_utc(value: datetime) -> datetime:
    # SQLite hands back the stored UTC times without their zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def assignment(database: Database, case_id: UUID) -> AssignmentView:
    """The case's assignment; NotFound when it has none (yet)."""
    async with database.reading() as session:
        rows = await session.execute(select(assignments).where(assignments.c.case_id == str(case_id)))
        row = rows.mappings().first()
    if row is None:
        raise NotFound(f"case {case_id} has no assignment")
    return _from_row(row)


async def unit_inbox(
    database: Database, reference: ReferenceData, unit_id: str, status: CaseStatus | None, limit: int, offset: int
) -> InboxPage:
    """A unit's cases, newest assignment first."""
    if unit_id not in reference.units:
        raise NotFound(f"unit {unit_id!r} not found")
    where = [assignments.c.unit_id == unit_id]
    if status is not None:
        where.append(assignments.c.status == status.value)
    async with database.reading() as session:
        total = await session.scalar(select(func.count()).select_from(assignments).where(*where))
        rows = await session.execute(
            select(assignments)
            .where(*where)
            .order_by(assignments.c.assigned_at.desc(), assignments.c.case_id)
            .limit(limit)
            .offset(offset)
        )
        items = [_from_row(row) for row in rows.mappings()]
    return InboxPage(items=items, total=total or 0, limit=limit, offset=offset)
