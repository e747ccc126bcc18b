"""The in-memory adapter of the service layer's ``SupervisionReads``: the same answers as
``SupervisionStore``'s SQL, from the projection rows of an in-memory store (the
``InMemoryStore`` of ``caseloop_events.testing.fakes``, which ``FakeService`` writes) — so the
handlers that ask which regions are in emergency mode, which cases follow a closed one, which cases
a mode switch re-times and what a feedback attempt finds, and the timers, run without a database.

cosmicpython keeps its fakes beside the tests; this one lives with the adapters because two suites
use it — the unit tests of the handlers and timers, and the integration test that holds it to the
SQL adapter on the same rows (SQLite and PostgreSQL) — and supervision's tests are not a package
one suite could import the other's helper from. Production code may not import the testing part of
libs/events, so it reads any holder of rows (``ProjectionRows``); and it filters with
``adapters.store``'s constants, so what "in emergency mode", "left the loop", "awaiting evaluation"
and "due" mean is written once for both adapters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import Table

from caseloop_supervision.adapters.store import (
    AWAITING_EVALUATION,
    DUE_STATES,
    ESCALATED_LEVELS,
    IN_EMERGENCY,
    LEFT_THE_LOOP,
    TownCaseCounts,
    by_town,
)
from caseloop_supervision.adapters.tables import case_links, cases, feedback_deliveries, region_modes


class ProjectionRows(Protocol):
    """Where the rows of supervision's tables are kept, as last written."""

    def rows(self, table: Table) -> Sequence[Mapping[str, Any]]: ...


class InMemorySupervisionStore:
    """supervision's reads on the rows of an in-memory store. Every answer is read afresh, so a
    switch is seen at once and ``forget_region_modes`` has nothing to forget."""

    def __init__(self, store: ProjectionRows) -> None:
        self._store = store

    async def regions_in_emergency_mode(self) -> frozenset[str]:
        return frozenset(row["region_code"] for row in self._store.rows(region_modes) if row["mode"] == IN_EMERGENCY)

    def forget_region_modes(self) -> None:
        pass

    async def followers_of(self, case_id: UUID) -> list[UUID]:
        found = [
            row["follower_case_id"]
            for row in self._store.rows(case_links)
            if row["original_case_id"] == str(case_id) and row["active"]
        ]
        return [UUID(follower) for follower in sorted(found)]

    async def due_for_notices(self, now: datetime, limit: int) -> list[UUID]:
        due = [
            (row["next_notice_at"], row["case_id"])
            for row in self._store.rows(cases)
            if row["next_notice_at"] is not None and row["next_notice_at"] <= now
        ]
        return [UUID(case_id) for _, case_id in sorted(due)[:limit]]

    async def awaiting_evaluation_since(self, before: datetime, limit: int) -> list[UUID]:
        waiting = [
            (row["awaiting_evaluation_since"], row["case_id"])
            for row in self._store.rows(cases)
            if row["status"] == AWAITING_EVALUATION
            and row["awaiting_evaluation_since"] is not None
            and row["awaiting_evaluation_since"] <= before
        ]
        return [UUID(case_id) for _, case_id in sorted(waiting)[:limit]]

    async def open_cases_in(self, town_code: str | None) -> list[UUID]:
        found = [
            row["case_id"]
            for row in self._store.rows(cases)
            if (town_code is None or row["town_code"] == town_code) and row["status"] not in LEFT_THE_LOOP
        ]
        return [UUID(case_id) for case_id in sorted(found)]

    async def case_counts_by_town(self, now: datetime) -> list[TownCaseCounts]:
        towns: dict[str | None, list[Mapping[str, Any]]] = {}
        for row in self._store.rows(cases):
            if row["status"] not in LEFT_THE_LOOP:
                towns.setdefault(row["town_code"], []).append(row)
        return by_town(
            [
                TownCaseCounts(
                    town_code,
                    open=len(rows),
                    overdue=sum(1 for row in rows if row["due_at"] is not None and row["due_at"] < now),
                    escalated=sum(1 for row in rows if row["notice_level"] in ESCALATED_LEVELS),
                )
                for town_code, rows in towns.items()
            ]
        )

    async def due_deliveries(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        due = [
            row
            for row in self._store.rows(feedback_deliveries)
            if row["state"] in DUE_STATES and row["next_attempt_at"] is not None and row["next_attempt_at"] <= now
        ]
        due.sort(key=lambda row: (row["next_attempt_at"], row["delivery_id"]))
        # Copies, as a query's rows are: a caller's change to one is not a write.
        return [dict(row) for row in due[:limit]]

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        found = next((row for row in self._store.rows(feedback_deliveries) if row["delivery_id"] == delivery_id), None)
        return dict(found) if found is not None else None
