"""What supervision's HTTP API reads: a case's view (now, or as of a time), its events, the case
list, a region's mode and the events of a day for the daily report."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, or_, select

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import REGION_TIMEZONE
from caseloop_events.contracts.envelope import Envelope
from caseloop_events.contracts.errors import CaseNotFound
from caseloop_events.contracts.reference import EscalationLadder
from caseloop_events.contracts.supervision import RegionMode
from caseloop_events.runtime.database import Database
from caseloop_supervision.adapters.tables import cases, region_modes
from caseloop_supervision.adapters.views import CasePage, CaseView, case_view
from caseloop_supervision.domain.model import SupervisedCase, fold


async def case_now(database: Database, case_id: UUID, now: datetime) -> CaseView:
    """The case's view as projected, its clocks read at ``now``; 404 for a case supervision never saw."""
    async with database.reading() as session:
        view = await session.scalar(select(cases.c.view).where(cases.c.case_id == str(case_id)))
    if view is None:
        raise CaseNotFound(case_id)
    return CaseView.model_validate_json(view).at(now)


async def case_as_of(database: Database, case_id: UUID, as_of: datetime, ladder: EscalationLadder) -> CaseView:
    """The case as its events had made it at ``as_of``, its clocks read then (queued feedback is left
    out: a callback not attempted yet has no event)."""
    case = fold(case_id, await events_of(database, case_id, as_of))
    return case_view(case, ladder).at(as_of)


async def events_of(database: Database, case_id: UUID, as_of: datetime | None = None) -> list[Envelope]:
    """The case's recorded events in causal order, those that occurred by ``as_of``; none is 404."""
    events = await database.case_events(case_id)
    if as_of is not None:
        events = [e for e in events if e.occurred_at <= as_of]
    if not events:
        raise CaseNotFound(case_id)
    return events


async def cases_of_the_day(database: Database, day: date) -> list[tuple[SupervisedCase, list[Envelope]]]:
    """Every case an event of the day (region time) touched, folded from its events up to the day's end."""
    start = datetime.combine(day, time(0), tzinfo=REGION_TIMEZONE)
    end = start + timedelta(days=1)
    log = database.tables.case_events
    touched = select(log.c.case_id).where(log.c.occurred_at >= start, log.c.occurred_at < end).distinct()
    async with database.reading() as session:
        rows = await session.execute(
            select(log.c.case_id, log.c.envelope).where(log.c.case_id.in_(touched), log.c.occurred_at < end)
        )
        by_case: dict[str, list[Envelope]] = {}
        for case_id, envelope in rows:
            by_case.setdefault(case_id, []).append(Envelope.model_validate_json(envelope))
    folded = []
    for case_id, events in sorted(by_case.items()):
        ordered = causal_order(events)
        folded.append((fold(UUID(case_id), ordered), ordered))
    return folded


async def list_cases(
    database: Database,
    now: datetime,
    *,
    status: str | None = None,
    town_code: str | None = None,
    unit_id: str | None = None,
    campaign_id: str | None = None,
    returned_more_than_once: bool | None = None,
    overdue: bool | None = None,
    notice: str | None = None,
    level: str | None = None,
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
    if overdue is not None:
        is_overdue = cases.c.due_at < now
        conditions.append(is_overdue if overdue else or_(cases.c.due_at.is_(None), cases.c.due_at >= now))
    if notice is not None:
        conditions.append(cases.c.notice_rung == notice)
    if level is not None:
        conditions.append(cases.c.notice_level == level)
    async with database.reading() as session:
        total = await session.scalar(select(func.count()).select_from(cases).where(*conditions))
        rows = await session.scalars(
            select(cases.c.view)
            .where(*conditions)
            .order_by(cases.c.updated_at.desc(), cases.c.case_id)
            .limit(limit)
            .offset(offset)
        )
        items = [CaseView.model_validate_json(view).at(now) for view in rows]
    return CasePage(items=items, total=int(total or 0), limit=limit, offset=offset)


async def region_mode(database: Database, region_code: str) -> tuple[RegionMode, datetime | None, str | None]:
    """A region's mode, and when and by whom it was last switched (never: normal)."""
    async with database.reading() as session:
        row = (await session.execute(select(region_modes).where(region_modes.c.region_code == region_code))).first()
    if row is None:
        return RegionMode.NORMAL, None, None
    return RegionMode(row.mode), row.switched_at, row.switched_by
