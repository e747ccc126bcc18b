"""intake's handlers as the runtime runs them — a supervisor's merge or unmerge decided on the cases as
stored and written with their rows at once, supervision's closures recorded from the log — on the
in-memory store of ``caseloop_events.testing.fakes``: no database, no broker.

A report's screening is not here: it reads through ``IntakeStore`` (the case's and the grid's streams,
the grid's open cases, a case number and the Idempotency-Key's claim in one SQL statement), which the
in-memory store cannot stand in for; the integration tests screen reports on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, EventPayload, event_caused_by, new_event
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import CaseClosed, CaseReopened, CaseVerified, ClosureReason
from caseloop_events.testing.fakes import FakeService, out_of_reach
from caseloop_intake.adapters.cases import IntakeStore
from caseloop_intake.adapters.tables import cases
from caseloop_intake.app import INTAKE
from caseloop_intake.config import IntakeSettings
from caseloop_intake.domain.model import IntakeCase, MergeCase, TargetAlreadyClosed, UnmergeCase, case_id_for
from caseloop_intake.service_layer.handlers import IntakeDeps

GRID = "3301100010010101"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
SUPERVISOR = "li.na"
GARBAGE = ("小区门口垃圾堆积", "垃圾三天没人清运，气味很大")

Intake = FakeService[IntakeDeps, IntakeCase]


@pytest.fixture
def intake() -> Intake:
    deps = IntakeDeps(
        reference=load_reference_data(default_reference_dir()),
        screening=IntakeSettings().screening_rules,
        store=out_of_reach(IntakeStore),
    )
    return FakeService(INTAKE, deps, ManualClock(NOW))


def report_fields(external_id: str, number: int) -> dict[str, object]:
    return {
        "case_no": f"CL2026030200000{number:02d}",
        "source_system": "hotline-12345",
        "external_id": external_id,
        "title": GARBAGE[0],
        "description": GARBAGE[1],
        "location": CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
        "callback_url": f"https://hotline.example/cases/{external_id}",
    }


def screened(payload: EventPayload, external_id: str, minutes: int = 0) -> Envelope:
    """A case's first event, as intake's screening wrote it."""
    return new_event(
        payload,
        case_id=case_id_for("hotline-12345", external_id),
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id=uuid.uuid4(),
    )


def accepted(external_id: str, number: int, minutes: int = 0) -> Envelope:
    at = T0 + timedelta(minutes=minutes)
    return screened(CaseAccepted(**report_fields(external_id, number), accepted_at=at), external_id, minutes)


def linked_as_duplicate_of(original: Envelope, external_id: str, number: int) -> Envelope:
    assert isinstance(original.payload, CaseAccepted)
    linked = CaseLinkedAsDuplicate(
        **report_fields(external_id, number),
        original_case_id=original.case_id,
        original_case_no=original.payload.case_no,
        similarity=0.93,
        reason="同一网格、相同事项",
    )
    return screened(linked, external_id, minutes=30)


def by_supervision(cause: Envelope, payload: EventPayload, minutes: int = 10) -> Envelope:
    return event_caused_by(
        cause,
        payload,
        actor=Actor.system(payload.producer),
        occurred_at=cause.occurred_at + timedelta(minutes=minutes),
        decision=payload.event_type,
    )


def merging(case: Envelope, into: Envelope) -> MergeCase:
    return MergeCase(case_id=case.case_id, into_case_id=into.case_id, by=SUPERVISOR, reason="同一事项", now=NOW)


def unmerging(case: Envelope) -> UnmergeCase:
    return UnmergeCase(case_id=case.case_id, by=SUPERVISOR, reason="不是同一事项", now=NOW + timedelta(minutes=5))


async def test_a_merge_and_its_unmerge_are_decided_on_the_stored_cases_and_move_the_case_row_each_in_one_write(
    intake: Intake,
) -> None:
    original, other = accepted("HL-1", 1), accepted("HL-2", 2, minutes=20)
    await intake.replay(original, other)
    writes = intake.store.writes

    merged = await intake.handle(merging(other, original))

    assert merged.status is CaseStatus.MERGED
    [merge] = intake.store.published
    assert isinstance(merge.payload, CasesMerged)
    assert (merge.payload.into_case_id, merge.payload.into_case_no) == (original.case_id, "CL202603020000001")
    assert merge.causation_id == other.event_id
    row = intake.store.row(cases, str(other.case_id))
    assert row is not None
    assert (row["status"], row["follows_case_id"]) == ("merged", str(original.case_id))
    assert intake.store.writes == writes + 1

    unmerged = await intake.handle(unmerging(other))

    assert unmerged.status is CaseStatus.ACCEPTED
    [_, unmerge] = intake.store.published
    assert isinstance(unmerge.payload, CaseUnmerged)
    assert unmerge.causation_id == merge.event_id
    row = intake.store.row(cases, str(other.case_id))
    assert row is not None
    assert (row["status"], row["follows_case_id"]) == ("accepted", None)
    assert intake.store.writes == writes + 2


async def test_unmerging_a_duplicate_accepts_its_kept_report_for_judgment_in_the_same_write(intake: Intake) -> None:
    original = accepted("HL-1", 1)
    duplicate = linked_as_duplicate_of(original, "HL-2", 2)
    await intake.replay(original, duplicate)
    linked = intake.store.row(cases, str(duplicate.case_id))
    assert linked is not None
    assert (linked["status"], linked["follows_case_id"], linked["accepted_at"]) == (
        "duplicate",
        str(original.case_id),
        None,
    )
    writes = intake.store.writes

    await intake.handle(unmerging(duplicate))

    unmerge, acceptance = intake.store.published
    assert isinstance(unmerge.payload, CaseUnmerged)
    assert unmerge.payload.from_case_id == original.case_id
    assert isinstance(acceptance.payload, CaseAccepted)
    assert acceptance.causation_id == unmerge.event_id
    assert (acceptance.payload.case_no, acceptance.payload.callback_url) == (
        "CL202603020000002",
        "https://hotline.example/cases/HL-2",
    ), "the report the duplicate kept, under its own number"
    assert intake.store.writes == writes + 1, "the unmerge and the acceptance are written together, or neither"
    row = intake.store.row(cases, str(duplicate.case_id))
    assert row is not None
    assert (row["status"], row["follows_case_id"], row["accepted_at"]) == ("accepted", None, unmerging(duplicate).now)


async def test_intake_records_supervisions_closure_and_reopening_of_a_case_and_a_closed_case_takes_no_merge(
    intake: Intake,
) -> None:
    original, other = accepted("HL-1", 1), accepted("HL-2", 2, minutes=20)
    await intake.replay(original, other)
    verified = by_supervision(original, CaseVerified(verified_by="s"))
    closed = by_supervision(verified, CaseClosed(reason=ClosureReason.EVALUATED))

    assert await intake.take(verified, closed) == []

    assert [e.type for e in intake.events_of(original.case_id)] == ["case.accepted", "case.closed"], (
        "only the closures and reopenings of supervision's topic are intake's concern"
    )
    row = intake.store.row(cases, str(original.case_id))
    assert row is not None
    assert row["closed_at"] == closed.occurred_at
    writes = intake.store.writes
    with pytest.raises(TargetAlreadyClosed):
        await intake.handle(merging(other, original))
    assert (intake.store.writes, intake.store.published) == (writes, [])

    reopened = by_supervision(closed, CaseReopened(reason="群众不满意", reopen_count=1))
    await intake.take(reopened)

    row = intake.store.row(cases, str(original.case_id))
    assert row is not None
    assert row["closed_at"] is None
    assert (await intake.handle(merging(other, original))).status is CaseStatus.MERGED
