"""Idempotency-Key for POST /v1/cases, as the IETF draft "The Idempotency-Key HTTP Header Field"
describes it: the same key with the same request answers the first answer again; the same key
with another request is refused (422); a request still in flight under the key is refused (409).

Keys are scoped per calling system (the report's ``source_system``), kept at least as long as
``INTAKE_IDEMPOTENCY_RETENTION`` (24 h at the least), and only for answers that created or found
a case: a request that failed leaves no key behind, so the client may send it again.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from caseloop_events.contracts.errors import InvalidInput, RuleViolation
from caseloop_events.runtime.database import Database
from caseloop_events.runtime.storage import dialect_insert, insert_row_ignoring_duplicates
from caseloop_intake.adapters.tables import idempotency_keys

#: A request under a key that has not answered within this time is taken to have died with its
#: process: the key may be used again.
IN_FLIGHT_TIMEOUT = timedelta(minutes=1)


class IdempotencyKeyInFlight(RuleViolation):
    """A request with this Idempotency-Key is still being processed: retry a little later."""


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: str
    location: str | None


def fingerprint(request_body: bytes) -> str:
    return hashlib.sha256(request_body).hexdigest()


async def begin(database: Database, scope: str, key: str, print_: str, now: datetime) -> StoredAnswer | None:
    """Claim the key for this request (None: go ahead), or give the answer it already has."""
    claim = str(uuid.uuid4())
    new_key = {"scope": scope, "idempotency_key": key, "fingerprint": print_, "claim": claim, "started_at": now}
    # The usual case, a key not seen before, is one statement committed on its own: the row is
    # written, and so claimed, or it was there already and the transaction below reads it. That
    # transaction writes the row again if it went in between (the other request failed and
    # released it, or it expired), so it always finds one.
    async with database.one_statement() as connection:
        claimed = await connection.scalar(_claim_new_key(connection.dialect.name), new_key)
    if claimed is not None:
        return None
    async with database.transaction() as session:
        await insert_row_ignoring_duplicates(session, idempotency_keys, new_key)
        row = (
            await session.execute(
                select(idempotency_keys)
                .where(idempotency_keys.c.scope == scope, idempotency_keys.c.idempotency_key == key)
                .with_for_update()
            )
        ).one()
        if row.fingerprint != print_:
            raise InvalidInput("Idempotency-Key", "this key was used with another request; use a new key")
        if row.completed_at is not None:
            return StoredAnswer(row.status_code, row.response_body, row.location)
        if row.claim == claim:
            return None  # just claimed by this request
        if now - row.started_at < IN_FLIGHT_TIMEOUT:
            raise IdempotencyKeyInFlight("a request with this Idempotency-Key is still being processed")
        await session.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.scope == scope, idempotency_keys.c.idempotency_key == key)
            .values(claim=claim, started_at=now)
        )
        return None


@functools.cache
def _claim_new_key(dialect_name: str) -> Any:
    return dialect_insert(dialect_name, idempotency_keys).on_conflict_do_nothing().returning(idempotency_keys.c.claim)


async def complete(database: Database, scope: str, key: str, answer: StoredAnswer, now: datetime) -> None:
    async with database.one_statement() as connection:
        await connection.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.scope == scope, idempotency_keys.c.idempotency_key == key)
            .values(
                status_code=answer.status_code, response_body=answer.body, location=answer.location, completed_at=now
            )
        )


async def release(database: Database, scope: str, key: str) -> None:
    """The request failed: forget the key, so the same request may be sent again."""
    async with database.transaction() as session:
        await session.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.scope == scope,
                idempotency_keys.c.idempotency_key == key,
                idempotency_keys.c.completed_at.is_(None),
            )
        )


async def forget_expired(database: Database, now: datetime, retention: timedelta) -> int:
    """Drop answered keys older than the retention; returns how many."""
    async with database.transaction() as session:
        result = await session.execute(
            delete(idempotency_keys).where(idempotency_keys.c.completed_at < now - retention)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
