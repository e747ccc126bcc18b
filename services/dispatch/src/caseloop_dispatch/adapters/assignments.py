"""dispatch's read side: the assignment view, its row in ``assignments`` (projected from the folded
case) and the queries units and supervisors make of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import RowMapping, func, or_, select

from caseloop_dispatch.adapters.tables import assignments
from caseloop_dispatch.domain.model import DispatchCase
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.dispatch import AssignmentRoute
from caseloop_events.contracts.errors import NotFound
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.runtime.database import Database


class AssignmentView(BaseModel):
    """Where an assigned case stands with its unit (also the API's answer)."""

    case_id: UUID
    case_no: str | None
    title: str | None
    unit_id: str
    unit_name: str
    assisting_unit_ids: list[str]
    fallback_owner: bool
    route: AssignmentRoute
    reason: str
    status: CaseStatus
    returns: int
    returned_by: list[str]
    transfers: int
    reworks: int
    reopen_count: int
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
        assisting_unit_ids=list(assignment.assisting_unit_ids),
        fallback_owner=assignment.fallback_owner,
        route=assignment.route,
        reason=assignment.reason,
        status=case.status,
        returns=case.returns,
        returned_by=list(case.returned_by),
        transfers=case.transfers,
        reworks=case.reworks,
        reopen_count=case.reopen_count,
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
        "assisting_unit_ids": _joined(view.assisting_unit_ids),
        "fallback_owner": view.fallback_owner,
        "route": view.route.value,
        "reason": view.reason,
        "status": view.status.value,
        "returns": view.returns,
        "returned_by": _joined(view.returned_by),
        "transfers": view.transfers,
        "reworks": view.reworks,
        "reopen_count": view.reopen_count,
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
        assisting_unit_ids=_split(row["assisting_unit_ids"]),
        fallback_owner=bool(row["fallback_owner"]),
        route=AssignmentRoute(row["route"]),
        reason=row["reason"],
        status=CaseStatus(row["status"]),
        returns=row["returns"],
        returned_by=_split(row["returned_by"]),
        transfers=row["transfers"],
        reworks=row["reworks"],
        reopen_count=row["reopen_count"],
        category=row["category"],
        town_code=row["town_code"],
        grid_code=row["grid_code"],
        assigned_at=_in_utc(row["assigned_at"]),
        acknowledged_at=_in_utc(row["acknowledged_at"]) if row["acknowledged_at"] else None,
        result_reported_at=_in_utc(row["result_reported_at"]) if row["result_reported_at"] else None,
        updated_at=_in_utc(row["updated_at"]),
    )


def _joined(unit_ids: list[str]) -> str:
    return f",{','.join(unit_ids)}," if unit_ids else ""


def _split(joined: str) -> list[str]:
    return [unit_id for unit_id in joined.split(",") if unit_id]


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
    """A unit's cases, those it leads and those it assists, newest assignment first."""
    if unit_id not in reference.units:
        raise NotFound(f"unit {unit_id!r} not found")
    where = [
        or_(
            assignments.c.unit_id == unit_id, assignments.c.assisting_unit_ids.contains(f",{unit_id},", autoescape=True)
        )
    ]
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
