"""triage's read side: a case's latest judgment and the officers' review queue."""

from __future__ import annotations

import json
from uuid import UUID

from pydantic import AwareDatetime, BaseModel
from sqlalchemy import func, select

from caseloop_events.contracts.errors import CaseNotFound
from caseloop_events.contracts.triage import CaseJudged
from caseloop_events.runtime.database import Database
from caseloop_triage.adapters.tables import judgments, review_queue
from caseloop_triage.domain.model import Judgment


class QueuedCase(BaseModel):
    """A case awaiting an officer's judgment, and why the rules could not judge it."""

    case_id: UUID
    case_no: str
    title: str
    description: str
    grid_code: str
    town_code: str
    queued_at: AwareDatetime
    reason: str
    candidate_categories: list[str]


class ReviewQueuePage(BaseModel):
    items: list[QueuedCase]
    total: int
    limit: int
    offset: int


async def review_queue_page(database: Database, town_code: str | None, limit: int, offset: int) -> ReviewQueuePage:
    """The cases awaiting an officer, the longest waiting first."""
    where = [] if town_code is None else [review_queue.c.town_code == town_code]
    async with database.reading() as session:
        total = await session.scalar(select(func.count()).select_from(review_queue).where(*where))
        rows = await session.execute(
            select(review_queue)
            .where(*where)
            .order_by(review_queue.c.queued_at, review_queue.c.case_id)
            .limit(limit)
            .offset(offset)
        )
        items = [
            QueuedCase(
                case_id=UUID(row["case_id"]),
                case_no=row["case_no"],
                title=row["title"],
                description=row["description"],
                grid_code=row["grid_code"],
                town_code=row["town_code"],
                queued_at=row["queued_at"],
                reason=row["reason"],
                candidate_categories=json.loads(row["candidate_categories"]),
            )
            for row in rows.mappings()
        ]
    return ReviewQueuePage(items=items, total=total or 0, limit=limit, offset=offset)


async def latest_judgment(database: Database, case_id: UUID) -> Judgment:
    """The case's latest judgment; CaseNotFound when triage has not judged it."""
    async with database.reading() as session:
        row = (
            await session.execute(
                select(judgments.c.event_id, judgments.c.judged_at, judgments.c.body, judgments.c.judged_by_id).where(
                    judgments.c.case_id == str(case_id)
                )
            )
        ).first()
    if row is None:
        raise CaseNotFound(case_id)
    return Judgment(UUID(row.event_id), row.judged_at, CaseJudged.model_validate_json(row.body), row.judged_by_id)
