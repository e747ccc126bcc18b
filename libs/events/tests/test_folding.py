"""Folding resumes from the last fold of a case only when the log starts with the very events
that fold saw; anything else folds from the start."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, new_event
from caseloop_events.contracts.folding import Folder
from caseloop_events.contracts.supervision import CaseVerified

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def an_event(case_id: uuid.UUID, minutes: int) -> Envelope:
    return new_event(
        CaseVerified(verified_by=f"supervisor-{minutes}"),
        case_id=case_id,
        actor=Actor(id="supervisor-1", role=ActorRole.SUPERVISOR),
        occurred_at=T0 + timedelta(minutes=minutes),
        correlation_id=uuid.uuid4(),
    )


class CountingFolder:
    """Folds into the tuple of who verified, counting the events evolved."""

    def __init__(self, max_cases: int = 10) -> None:
        self.evolved = 0
        self.fold = Folder(lambda _case_id: (), self._evolve, max_cases)

    def _evolve(self, state: tuple[str, ...], event: Envelope) -> tuple[str, ...]:
        self.evolved += 1
        assert isinstance(event.payload, CaseVerified)
        return (*state, event.payload.verified_by)


def test_a_longer_log_with_the_same_events_first_folds_only_the_new_ones() -> None:
    folder, case_id = CountingFolder(), uuid.uuid4()
    one, two, three = (an_event(case_id, m) for m in (1, 2, 3))
    assert folder.fold(case_id, [one, two]) == ("supervisor-1", "supervisor-2")
    assert folder.fold(case_id, [one, two, three]) == ("supervisor-1", "supervisor-2", "supervisor-3")
    assert folder.evolved == 3


def test_a_log_that_differs_before_its_end_folds_from_the_start() -> None:
    folder, case_id = CountingFolder(), uuid.uuid4()
    one, two, three = (an_event(case_id, m) for m in (1, 2, 3))
    folder.fold(case_id, [one, three])
    assert folder.fold(case_id, [one, two, three]) == ("supervisor-1", "supervisor-2", "supervisor-3")
    assert folder.evolved == 2 + 3, "an event slotted in before the end: all three again"
    assert folder.fold(case_id, [one]) == ("supervisor-1",), "a shorter log is not a continuation"


def test_equal_events_that_are_other_objects_fold_from_the_start() -> None:
    """The same event parsed again (a log read afresh) may not be trusted to be the same event."""
    folder, case_id = CountingFolder(), uuid.uuid4()
    one = an_event(case_id, 1)
    folder.fold(case_id, [one])
    assert folder.fold(case_id, [Envelope.model_validate_json(one.model_dump_json())]) == ("supervisor-1",)
    assert folder.evolved == 2


def test_only_the_most_recently_folded_cases_are_kept() -> None:
    folder = CountingFolder(max_cases=1)
    a, b = uuid.uuid4(), uuid.uuid4()
    first_of_a = an_event(a, 1)
    folder.fold(a, [first_of_a])
    folder.fold(b, [an_event(b, 1)])
    folder.fold(a, [first_of_a, an_event(a, 2)])
    assert folder.evolved == 1 + 1 + 2, "a was dropped to keep b: folded from the start"
