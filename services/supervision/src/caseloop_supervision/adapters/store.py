"""What supervision's handlers and timers read besides the streams: the regions in emergency mode,
the cases that follow a case, what is due for a notice, a closure or a callback, the open cases of
a region. The production adapter of the service layer's ``SupervisionReads``, in SQL; the in-memory
adapter (``adapters.memory``) filters with the constants below, so the two mean the same."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import case, func, select

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.reference import HIERARCHY_LEVELS
from caseloop_events.contracts.supervision import RegionMode
from caseloop_events.runtime.database import Database
from caseloop_supervision.adapters.tables import case_links, cases, feedback_deliveries, region_modes
from caseloop_supervision.domain.clocks import FINISHED
from caseloop_supervision.domain.model import FeedbackState

#: How long the regions in emergency mode read once are taken as they are. A switch made by this
#: process is seen at once (``forget_region_modes``); one made by another replica within this time.
REGION_MODES_KEPT = 1.0

#: The mode of a region whose cases are held to the faster SLA profile.
IN_EMERGENCY = RegionMode.EMERGENCY.value

#: Statuses of cases that have left the loop: a mode switch leaves them alone.
LEFT_THE_LOOP = tuple(status.value for status in FINISHED)

#: The status of a case that waits for the citizen's evaluation (once its ``awaiting_evaluation_since`` is set).
AWAITING_EVALUATION = CaseStatus.VERIFIED.value

#: Delivery states a timer round attempts.
DUE_STATES = (FeedbackState.PENDING.value, FeedbackState.RETRYING.value)

#: The levels a notice is escalated to when it goes over the grid and the village (黄牌 to the
#: town, 红牌 to the district, as the escalation ladder names them): what counts a case as escalated.
ESCALATED_LEVELS = HIERARCHY_LEVELS[HIERARCHY_LEVELS.index("town") :]


@dataclass(frozen=True)
class TownCaseCounts:
    """A town's cases still in the loop, those whose counting clock is past its deadline, and those
    whose supervision notice went up to the town or the district — what a command centre watches."""

    town_code: str | None
    open: int
    overdue: int
    escalated: int


def by_town(counts: list[TownCaseCounts]) -> list[TownCaseCounts]:
    """The counts in town order, the cases located in no town first."""
    return sorted(counts, key=lambda c: (c.town_code is not None, c.town_code or ""))


class SupervisionStore:
    """supervision's reads on its own tables (projections and feedback deliveries)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._emergency: tuple[float, frozenset[str]] | None = None

    async def regions_in_emergency_mode(self) -> frozenset[str]:
        """The towns (and the district) in emergency mode: a handful of rows, read at most once a
        second; a switch another process commits meanwhile is seen from then on, and a case it
        missed is re-timed at its next event."""
        kept = self._emergency
        if kept is not None and time.monotonic() - kept[0] < REGION_MODES_KEPT:
            return kept[1]
        async with self._database.reading() as session:
            found = frozenset(
                await session.scalars(select(region_modes.c.region_code).where(region_modes.c.mode == IN_EMERGENCY))
            )
        self._emergency = (time.monotonic(), found)
        return found

    def forget_region_modes(self) -> None:
        self._emergency = None

    async def followers_of(self, case_id: UUID) -> list[UUID]:
        """The cases that follow this one (duplicates of it, cases merged into it), still linked."""
        async with self._database.reading() as session:
            found = await session.scalars(
                select(case_links.c.follower_case_id)
                .where(case_links.c.original_case_id == str(case_id), case_links.c.active.is_(True))
                .order_by(case_links.c.follower_case_id)
            )
            return [UUID(f) for f in found]

    async def due_for_notices(self, now: datetime, limit: int) -> list[UUID]:
        """Cases whose running clock reached its next escalation rung by ``now``."""
        return await self._case_ids(
            select(cases.c.case_id)
            .where(cases.c.next_notice_at <= now)
            .order_by(cases.c.next_notice_at, cases.c.case_id)
            .limit(limit)
        )

    async def awaiting_evaluation_since(self, before: datetime, limit: int) -> list[UUID]:
        """Verified cases waiting for the citizen's evaluation since before ``before``."""
        return await self._case_ids(
            select(cases.c.case_id)
            .where(cases.c.status == AWAITING_EVALUATION, cases.c.awaiting_evaluation_since <= before)
            .order_by(cases.c.awaiting_evaluation_since, cases.c.case_id)
            .limit(limit)
        )

    async def open_cases_in(self, town_code: str | None) -> list[UUID]:
        """The open cases of a town (of the district: ``None``)."""
        in_region = [] if town_code is None else [cases.c.town_code == town_code]
        return await self._case_ids(
            select(cases.c.case_id).where(*in_region, cases.c.status.not_in(LEFT_THE_LOOP)).order_by(cases.c.case_id)
        )

    async def case_counts_by_town(self, now: datetime) -> list[TownCaseCounts]:
        """Open, overdue and escalated cases of each town that has an open case: one grouped query."""
        overdue = func.sum(case((cases.c.due_at < now, 1), else_=0))
        escalated = func.sum(case((cases.c.notice_level.in_(ESCALATED_LEVELS), 1), else_=0))
        async with self._database.reading() as session:
            rows = await session.execute(
                select(cases.c.town_code, func.count(), overdue, escalated)
                .where(cases.c.status.not_in(LEFT_THE_LOOP))
                .group_by(cases.c.town_code)
            )
            return by_town([TownCaseCounts(town, int(n), int(o or 0), int(e or 0)) for town, n, o, e in rows])

    async def due_deliveries(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Feedback deliveries to attempt now, the longest due first."""
        async with self._database.reading() as session:
            found = await session.execute(
                select(feedback_deliveries)
                .where(feedback_deliveries.c.state.in_(DUE_STATES), feedback_deliveries.c.next_attempt_at <= now)
                .order_by(feedback_deliveries.c.next_attempt_at, feedback_deliveries.c.delivery_id)
                .limit(limit)
            )
            return [dict(row._mapping) for row in found]

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self._database.reading() as session:
            row = (
                await session.execute(
                    select(feedback_deliveries).where(feedback_deliveries.c.delivery_id == delivery_id)
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    async def _case_ids(self, query: Any) -> list[UUID]:
        async with self._database.reading() as session:
            return [UUID(c) for c in await session.scalars(query)]
