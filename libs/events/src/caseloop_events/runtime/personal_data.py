"""A reporter's name and phone: shown whole only to who needs them, masked elsewhere, every
whole read recorded for the auditor.

Who sees them whole, on a single case's read: the source system that reported the case, the
units it is assigned to (they call the citizen back), and supervisors of its region (they verify
and evaluate). Everyone else, and every list, report, log line and the command line, sees them
masked (``王*``, ``139****0000``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import insert, select

from caseloop_events.contracts.timeline import CaseTimeline
from caseloop_events.runtime.auth import Principal, Role, admits, client_address
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.http import IsoDateTime, PageOffset

#: The payload fields that hold personal data, and how each is masked.
REPORTER_FIELD = "reporter"


def mask_name(name: str) -> str:
    """Keep the first character: enough to tell two reporters apart, not to name one."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_phone(phone: str) -> str:
    """Keep the first three and last four digits, the way Chinese public notices print a number."""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= 7:
        return "*" * len(digits)
    return "".join(digits[:3]) + "*" * (len(digits) - 7) + "".join(digits[-4:])


def masked_reporter(reporter: Any) -> Any:
    """A reporter (a mapping with ``name`` and ``phone``) with both masked; anything else as is."""
    if not isinstance(reporter, dict):
        return reporter
    masked = dict(reporter)
    if isinstance(masked.get("name"), str):
        masked["name"] = mask_name(masked["name"])
    if isinstance(masked.get("phone"), str):
        masked["phone"] = mask_phone(masked["phone"])
    return masked


def mask_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """An event payload with any reporter masked (for timelines, logs and the command line)."""
    if REPORTER_FIELD not in payload:
        return payload
    return {**payload, REPORTER_FIELD: masked_reporter(payload[REPORTER_FIELD])}


def holds_personal_data(timeline: CaseTimeline) -> bool:
    return any(entry.payload.get(REPORTER_FIELD) for entry in timeline.events)


def with_personal_data_masked(timeline: CaseTimeline) -> CaseTimeline:
    """The timeline with every reporter in its payloads masked."""
    events = [entry.model_copy(update={"payload": mask_payload(entry.payload)}) for entry in timeline.events]
    return timeline.model_copy(update={"events": events})


def may_see_personal_data(
    principal: Principal, *, source_system: str | None, unit_ids: Iterable[str | None], place_code: str | None
) -> bool:
    """Whether ``principal`` sees the case's reporter whole (the rule in this module's docstring)."""
    if principal.role is Role.SOURCE_SYSTEM:
        return source_system is not None and principal.source_system == source_system
    if principal.role is Role.UNIT:
        return principal.unit_id in set(unit_ids)
    if principal.role is Role.SUPERVISOR:
        return principal.covers_region(place_code)
    return False


async def record_read(database: Database, principal: Principal, case_id: UUID, request: Request) -> None:
    """Append who read the case's personal data, when and from where (committed on its own: the
    record stands even if answering fails afterwards)."""
    table = database.tables.personal_data_reads
    async with database.one_statement() as connection:
        await connection.execute(
            insert(table).values(
                read_at=database.clock.now(),
                subject=principal.subject,
                role=principal.role.value,
                unit_id=principal.unit_id,
                source_system=principal.source_system,
                case_id=str(case_id),
                resource=f"{request.method} {request.url.path}"[:200],
                client_address=client_address(request),
            )
        )


class PersonalDataRead(BaseModel):
    position: int
    read_at: dt.datetime
    subject: str = Field(description="the API key's id or the token's subject")
    role: str
    unit_id: str | None
    source_system: str | None
    case_id: UUID
    resource: str = Field(description="the method and path that answered the personal data")
    client_address: str | None


class PersonalDataReadPage(BaseModel):
    items: list[PersonalDataRead]
    limit: int
    offset: int


Auditor = Annotated[Principal, Depends(admits(Role.AUDITOR))]


def audit_router() -> APIRouter:
    """``GET /v1/audit/personal-data-reads``, for the auditor role: oldest first, filtered."""
    router = APIRouter(prefix="/v1/audit", tags=["audit"])

    @router.get("/personal-data-reads", response_model=PersonalDataReadPage)
    async def personal_data_reads(
        request: Request,
        _: Auditor,
        case_id: UUID | None = None,
        subject: Annotated[str | None, Query(max_length=128)] = None,
        since: Annotated[IsoDateTime | None, Query(description="reads at or after this time")] = None,
        until: Annotated[IsoDateTime | None, Query(description="reads before this time")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: PageOffset = 0,
    ) -> PersonalDataReadPage:
        """Every read of a reporter's name and phone this service answered: who, when, which case, from where."""
        database: Database = request.app.state.service.database
        table = database.tables.personal_data_reads
        query = select(table).order_by(table.c.position).limit(limit).offset(offset)
        if case_id is not None:
            query = query.where(table.c.case_id == str(case_id))
        if subject is not None:
            query = query.where(table.c.subject == subject)
        if since is not None:
            query = query.where(table.c.read_at >= since)
        if until is not None:
            query = query.where(table.c.read_at < until)
        async with database.reading() as session:
            rows = (await session.execute(query)).mappings().all()
        return PersonalDataReadPage(
            items=[PersonalDataRead.model_validate(dict(row)) for row in rows], limit=limit, offset=offset
        )

    return router
