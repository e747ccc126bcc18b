"""intake's reads and operational writes besides its streams: the open cases of a grid a new
report may repeat, the case-number counter, and a case's row in ``cases``."""

from __future__ import annotations

import functools
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import CASELOOP_NAMESPACE
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.storage import dialect_insert
from caseloop_intake.adapters.tables import case_number_counter, cases
from caseloop_intake.domain.model import EarlierCase, IntakeCase

#: Numbers taken remembered by case: far more than the screenings that can be in flight at once.
NUMBERS_REMEMBERED = 1000


def screening_stream_of(grid_code: str) -> uuid.UUID:
    """The stream (no events, a version only) every screening in a grid writes: two reports in one
    grid screened at once cannot both miss each other — the second is screened again (ADR 0014)."""
    return uuid.uuid5(CASELOOP_NAMESPACE, f"screening\x1f{grid_code}")


class IntakeStore:
    """intake's queries and its case-number counter, on its database."""

    def __init__(self, database: Database) -> None:
        self._database = database
        # The numbers taken lately, by case: a screening that lost a race (another screening of its
        # grid committed first) is done again and keeps the number it took, leaving no gap.
        self._numbers_taken: OrderedDict[uuid.UUID, int] = OrderedDict()

    async def open_cases_in_grid(self, grid_code: str, since: datetime) -> list[EarlierCase]:
        """The grid's accepted, open cases accepted since ``since``: what a new report may repeat."""
        async with self._database.reading() as session:
            rows = await session.execute(
                select(cases).where(
                    cases.c.grid_code == grid_code,
                    cases.c.status == CaseStatus.ACCEPTED.value,
                    cases.c.closed_at.is_(None),
                    cases.c.accepted_at >= since,
                )
            )
        return [
            EarlierCase(
                case_id=uuid.UUID(row.case_id),
                case_no=row.case_no,
                status=CaseStatus(row.status),
                grid_code=row.grid_code,
                reported_category=row.reported_category,
                title=row.title,
                description=row.description,
                accepted_at=row.accepted_at,
                closed_at=row.closed_at,
            )
            for row in rows
        ]

    async def case_number_for(self, case_id: uuid.UUID) -> int:
        """The next case number (one statement, committed at once), or the one this case took before."""
        if case_id in self._numbers_taken:
            return self._numbers_taken[case_id]
        async with self._database.one_statement() as connection:
            sequence = await connection.scalar(
                _take_next_number(connection.dialect.name), {"name": "case_no", "last_value": 1}
            )
        assert sequence is not None
        self._numbers_taken[case_id] = int(sequence)
        if len(self._numbers_taken) > NUMBERS_REMEMBERED:
            self._numbers_taken.popitem(last=False)
        return int(sequence)


@functools.cache
def _take_next_number(dialect_name: str) -> Any:
    counter = case_number_counter
    return (
        dialect_insert(dialect_name, counter)
        .on_conflict_do_update(index_elements=[counter.c.name], set_={"last_value": counter.c.last_value + 1})
        .returning(counter.c.last_value)
    )


def row_of(case: IntakeCase) -> dict[str, Any] | None:
    """The case's row; None while intake knows of the case only that it closed (replay order)."""
    if case.status is None or case.case_no is None or case.screened_at is None:
        return None
    # A rejected case keeps what its rejection carries; every other keeps the report, placed.
    report = case.report
    told = report if report is not None else case.rejected
    assert told is not None
    return {
        "case_id": str(case.case_id),
        "case_no": case.case_no,
        "source_system": told.source_system,
        "external_id": told.external_id,
        "status": case.status.value,
        "title": told.title,
        "description": told.description,
        "reported_category": report.reported_category if report else None,
        "grid_code": report.location.grid_code if report else None,
        "town_code": report.location.town_code if report else None,
        "screened_at": case.screened_at,
        "accepted_at": case.accepted.accepted_at if case.accepted else None,
        "closed_at": case.closed_at,
        "reason_code": case.rejected.reason_code.value if case.rejected else None,
        "follows_case_id": str(case.follows) if case.follows else None,
        "body": told.model_dump_json(),
    }
