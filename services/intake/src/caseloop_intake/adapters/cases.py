"""intake's reads and operational writes besides its streams: what screening a report needs — the
case's and the grid's streams, the grid's open cases a new report may repeat, a case number, the
claim of an Idempotency-Key — read in one statement, and a case's row in ``cases``."""

from __future__ import annotations

import functools
import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import CASELOOP_NAMESPACE
from caseloop_events.contracts.folding import StreamModel
from caseloop_events.runtime.database import LOAD_STREAMS, Database, snapshots_of
from caseloop_events.runtime.storage import dialect_insert
from caseloop_events.runtime.streams import StreamCache, StreamSnapshot
from caseloop_intake.adapters.tables import case_number_counter, cases, idempotency_keys
from caseloop_intake.domain.model import EarlierCase, IntakeCase, KeyClaim

#: Numbers taken remembered by case: far more than the screenings that can be in flight at once.
NUMBERS_REMEMBERED = 1000


def screening_stream_of(grid_code: str) -> uuid.UUID:
    """The stream (no events, a version only) every screening in a grid writes: two reports in one
    grid screened at once cannot both miss each other — the second is screened again (ADR 0014)."""
    return uuid.uuid5(CASELOOP_NAMESPACE, f"screening\x1f{grid_code}")


@dataclass(frozen=True)
class ScreeningRead:
    """What screening a report read at once."""

    #: The case's stream and the grid's screening stream.
    streams: dict[uuid.UUID, StreamSnapshot[IntakeCase]]
    #: The grid's accepted, open cases accepted since the duplicate window began.
    earlier: list[EarlierCase]
    #: The case's number, when the case is new (taken now, or by an earlier try of this screening).
    number: int | None
    #: Whether the screening may go on under its Idempotency-Key (claimed now or by an earlier try;
    #: True without a key). False: the key was used before, and says how to answer.
    key_claimed: bool


class IntakeStore:
    """intake's queries and its case-number counter, on its database."""

    def __init__(self, database: Database) -> None:
        self._database = database
        # The numbers taken lately, by case: a screening that lost a race (another screening of its
        # grid committed first) is done again and keeps the number it took, leaving no gap.
        self._numbers_taken: OrderedDict[uuid.UUID, int] = OrderedDict()

    async def read_for_screening(
        self,
        case_id: uuid.UUID,
        grid: tuple[uuid.UUID, str] | None,
        since: datetime,
        claim: KeyClaim | None,
        kept: Mapping[uuid.UUID, StreamSnapshot[IntakeCase]],
        model: StreamModel[IntakeCase],
    ) -> ScreeningRead:
        """Everything screening a report reads, and the two writes it makes before deciding — the
        claim of the request's Idempotency-Key, and the next case number when the case is new and
        the key is this request's (each committed at once; a screening done again keeps both) — in
        one statement on PostgreSQL. ``grid``: the grid's screening stream and its code; ``kept``:
        the streams as this process keeps them (their events are not read again)."""
        stream_ids = [case_id, *([grid[0]] if grid else [])]
        remembered = self._numbers_taken.get(case_id)
        if self._database.is_postgresql:
            read = await self._read_on_postgresql(case_id, stream_ids, kept, grid, since, claim, remembered is None)
        else:
            read = await self._read_on_sqlite(case_id, stream_ids, kept, model, grid, since, claim, remembered is None)
        streams, earlier, taken, claimed = read
        if taken is not None:
            self._remember(case_id, taken)
        return ScreeningRead(streams, earlier, remembered if remembered is not None else taken, claimed)

    async def _read_on_postgresql(
        self,
        case_id: uuid.UUID,
        stream_ids: list[uuid.UUID],
        kept: Mapping[uuid.UUID, StreamSnapshot[IntakeCase]],
        grid: tuple[uuid.UUID, str] | None,
        since: datetime,
        claim: KeyClaim | None,
        take_number: bool,
    ) -> tuple[dict[uuid.UUID, StreamSnapshot[IntakeCase]], list[EarlierCase], int | None, bool]:
        versions: dict[uuid.UUID, int] = {}
        logs: dict[uuid.UUID, list[str]] = {}
        earlier: list[EarlierCase] = []
        taken: int | None = None
        claimed = claim is None
        async with self._database.driver() as connection:
            rows = await connection.fetch(
                _READ_FOR_SCREENING,
                [str(i) for i in stream_ids],
                [kept[i].version if i in kept else -1 for i in stream_ids],
                str(case_id),
                grid[1] if grid else None,
                since,
                take_number,
                claim.scope if claim else None,
                claim.key if claim else None,
                claim.fingerprint if claim else None,
                claim.claim if claim else None,
                claim.started_at if claim else None,
            )
        for kind, stream_id, number, body in rows:
            if kind == "stream":
                versions[uuid.UUID(stream_id)] = number
                if body is not None:
                    logs.setdefault(uuid.UUID(stream_id), []).append(body)
            elif kind == "open":
                earlier.append(_earlier_case(json.loads(body)))
            elif kind == "number":
                taken = number
            elif kind == "claimed":
                claimed = True
        return snapshots_of(stream_ids, versions, logs, dict(kept)), earlier, taken, claimed

    async def _read_on_sqlite(
        self,
        case_id: uuid.UUID,
        stream_ids: list[uuid.UUID],
        kept: Mapping[uuid.UUID, StreamSnapshot[IntakeCase]],
        model: StreamModel[IntakeCase],
        grid: tuple[uuid.UUID, str] | None,
        since: datetime,
        claim: KeyClaim | None,
        take_number: bool,
    ) -> tuple[dict[uuid.UUID, StreamSnapshot[IntakeCase]], list[EarlierCase], int | None, bool]:
        # In the process, one statement after the other: the two writes in one transaction first.
        streams = self._database.tables.case_streams
        claimed, taken = claim is None, None
        async with self._database.transaction() as session:
            dialect = session.get_bind().dialect.name
            if claim is not None:
                await session.execute(_claim_new_key(dialect), claim.row)
                holder = await session.scalar(
                    select(idempotency_keys.c.claim).where(
                        idempotency_keys.c.scope == claim.scope, idempotency_keys.c.idempotency_key == claim.key
                    )
                )
                claimed = holder == claim.claim
            exists = await session.scalar(select(streams.c.version).where(streams.c.case_id == str(case_id)))
            if take_number and claimed and exists is None:
                taken = await session.scalar(_take_next_number(dialect), {"name": "case_no", "last_value": 1})
        cache: StreamCache[IntakeCase] = StreamCache(len(kept) or 1)
        for snapshot in kept.values():
            cache.put(snapshot)
        loaded = await self._database.load(stream_ids, cache, model, verify=True)
        earlier = await self.open_cases_in_grid(grid[1], since) if grid else []
        return loaded, earlier, taken, claimed

    def _remember(self, case_id: uuid.UUID, number: int) -> None:
        self._numbers_taken[case_id] = number
        if len(self._numbers_taken) > NUMBERS_REMEMBERED:
            self._numbers_taken.popitem(last=False)

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
        return [_earlier_case(dict(row._mapping)) for row in rows]


def _earlier_case(row: Mapping[str, Any]) -> EarlierCase:
    def moment(value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    accepted_at = moment(row["accepted_at"])
    assert accepted_at is not None
    return EarlierCase(
        case_id=uuid.UUID(row["case_id"]),
        case_no=row["case_no"],
        status=CaseStatus(row["status"]),
        grid_code=row["grid_code"],
        reported_category=row["reported_category"],
        title=row["title"],
        description=row["description"],
        accepted_at=accepted_at,
        closed_at=moment(row["closed_at"]),
    )


#: The statement behind ``IntakeStore.read_for_screening`` on PostgreSQL. The key is claimed (or
#: found claimed by this request already) first; a number is taken only for a case that has no
#: stream yet, under a key this request holds.
_READ_FOR_SCREENING = f"""
WITH claimed AS (
    INSERT INTO idempotency_keys (scope, idempotency_key, fingerprint, claim, started_at)
    SELECT $7, $8, $9, $10, $11 WHERE $8::varchar IS NOT NULL
    ON CONFLICT (scope, idempotency_key) DO NOTHING
    RETURNING claim
), held AS (
    SELECT claim FROM claimed
    UNION ALL
    SELECT claim FROM idempotency_keys WHERE scope = $7 AND idempotency_key = $8 AND claim = $10
), taken AS (
    INSERT INTO case_number_counter AS counter (name, last_value)
    SELECT 'case_no', 1
    WHERE $6 AND ($8::varchar IS NULL OR EXISTS (SELECT 1 FROM held))
        AND NOT EXISTS (SELECT 1 FROM case_streams WHERE case_id = $3)
    ON CONFLICT (name) DO UPDATE SET last_value = counter.last_value + 1
    RETURNING last_value
)
SELECT 'stream' AS kind, id, version::bigint, envelope FROM ({LOAD_STREAMS}) AS streams(id, version, envelope)
UNION ALL
SELECT 'open', c.case_id, NULL, json_build_object(
    'case_id', c.case_id, 'case_no', c.case_no, 'status', c.status, 'grid_code', c.grid_code,
    'reported_category', c.reported_category, 'title', c.title, 'description', c.description,
    'accepted_at', c.accepted_at, 'closed_at', c.closed_at)::text
FROM cases c
WHERE c.grid_code = $4 AND c.status = 'accepted' AND c.closed_at IS NULL AND c.accepted_at >= $5
UNION ALL
SELECT 'number', NULL, last_value, NULL FROM taken
UNION ALL
SELECT 'claimed', NULL, NULL, claim FROM held
"""


@functools.cache
def _claim_new_key(dialect_name: str) -> Any:
    return dialect_insert(dialect_name, idempotency_keys).on_conflict_do_nothing()


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
