"""No path loops forever (退单拉锯): whatever units, verifiers and citizens do, a case ends closed
or with its fallback owner.

Dispatch's and supervision's own decision functions play the case: units return, transfer,
report results that fail verification, citizens stay unsatisfied, in any order hypothesis
chooses, with any limits. After a few hundred such steps the case must be closed or held by a
fallback owner (a town government or the district command centre), no unit that returned the
case may have been given it again by routing, and the non-fallback assignments stay within
what the limits allow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caseloop_dispatch.domain import model as dispatch
from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import AssignmentRoute, CaseAssigned, CaseReturned
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    Producer,
    deterministic_id,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import RuleViolation
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.reference import ReferenceData, default_reference_dir, load_reference_data
from caseloop_events.contracts.supervision import Rating
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_supervision.domain import decisions as supervision
from caseloop_supervision.domain.model import SupervisedCase
from caseloop_supervision.domain.model import evolve as supervision_evolve
from caseloop_supervision.domain.model import fold as supervision_fold

REFERENCE: ReferenceData = load_reference_data(default_reference_dir())
CATEGORIES = sorted(REFERENCE.categories)
GRIDS = sorted(REFERENCE.grids)[::97]
UNITS = sorted(REFERENCE.units)
STEPS = 120
DISPUTES = ("return", "transfer", "fail_verification", "unsatisfied")


@dataclass
class PlayedCase:
    """One case's log, played by the real decision functions of dispatch and supervision."""

    limits: dispatch.DisputeLimits
    case_id: uuid.UUID = field(default_factory=uuid.uuid4)
    events: list[Envelope] = field(default_factory=list)
    now: datetime = datetime(2026, 5, 6, 8, 0, tzinfo=UTC)
    refused: int = 0
    # Both services' states, evolved event by event: the log is appended in causal order (time
    # only moves on), so this equals folding the whole log, which ``assert_folds_agree`` checks.
    dispatch_case: dispatch.DispatchCase = field(init=False)
    supervised_case: SupervisedCase = field(init=False)

    def __post_init__(self) -> None:
        self.dispatch_case = dispatch.DispatchCase(self.case_id)
        self.supervised_case = SupervisedCase(self.case_id)

    def tick(self) -> datetime:
        self.now += timedelta(minutes=7)
        return self.now

    def append(self, *events: Envelope) -> None:
        for event in events:
            self.events.append(event)
            self.dispatch_case = dispatch.evolve(self.dispatch_case, event)
            self.supervised_case = supervision_evolve(self.supervised_case, event)

    def record(self, *events: Envelope) -> None:
        """Events of a command or a decision, then whatever dispatch decides on its own because of them."""
        self.append(*events)
        reaction = dispatch.react(self.dispatch_case, REFERENCE, self.limits, self.tick())
        if reaction is not None:
            self.append(reaction)
            assert dispatch.react(self.dispatch_case, REFERENCE, self.limits, self.tick()) is None

    def assert_folds_agree(self) -> None:
        ordered = causal_order(self.events)
        assert ordered == self.events
        assert dispatch.fold(self.case_id, ordered) == self.dispatch_case
        assert supervision_fold(self.case_id, ordered) == self.supervised_case

    def lead(self) -> str:
        assignment = self.dispatch_case.assignment
        assert assignment is not None
        return assignment.unit_id

    def try_command(self, command: str, target: str) -> bool:
        """A unit, a verifier or a citizen acts; a refused command (409) must leave the log as it was."""
        before = list(self.events)
        try:
            self._act(command, target)
        except RuleViolation:
            assert self.events == before
            self.refused += 1
            return False
        return True

    def _act(self, command: str, target: str) -> None:
        if (
            command in ("fail_verification", "unsatisfied", "satisfied")
            and self.dispatch_case.status is CaseStatus.ASSIGNED
        ):
            self._act("acknowledge", target)  # a result needs an acknowledgement first
        case, lead, now = self.dispatch_case, self.lead(), self.tick()
        match command:
            case "acknowledge":
                self.record(dispatch.acknowledge(case, dispatch.AcknowledgeCase(self.case_id, lead, "u", now)))
            case "return":
                command_ = dispatch.ReturnCase(self.case_id, lead, "u", "不属于本单位", now)
                self.record(*dispatch.return_case(case, command_, REFERENCE, self.limits))
            case "transfer":
                command__ = dispatch.TransferCase(self.case_id, lead, "u", target, "转派", now)
                self.record(*dispatch.transfer_case(case, command__, REFERENCE, self.limits))
            case "fail_verification":
                self._report_result(case, lead, now)
                self._verify(passed=False)
            case "unsatisfied" | "satisfied":
                self._report_result(case, lead, now)
                self._verify(passed=True)
                rating = Rating.UNSATISFIED if command == "unsatisfied" else Rating.SATISFIED
                evaluation = supervision.EvaluateHandling(
                    case_id=self.case_id, rating=rating, comment="", now=self.tick(), correlation_id=uuid.uuid4()
                )
                self.record(*supervision.evaluate(self.supervised(), evaluation))

    def _report_result(self, case: dispatch.DispatchCase, lead: str, now: datetime) -> None:
        result = dispatch.ReportResult(self.case_id, lead, "u", "已处理", (), now)
        self.record(dispatch.report_result(case, result))

    def _verify(self, *, passed: bool) -> None:
        verification = supervision.VerifyResult(
            case_id=self.case_id, passed=passed, by="supervisor", note="", now=self.tick(), correlation_id=uuid.uuid4()
        )
        self.record(*supervision.verify(self.supervised(), verification))

    def supervised(self) -> SupervisedCase:
        return self.supervised_case

    def assignments(self) -> list[CaseAssigned]:
        return [e.payload for e in self.events if isinstance(e.payload, CaseAssigned)]


def a_judged_case(limits: dispatch.DisputeLimits, category: str, grid: str) -> PlayedCase:
    played = PlayedCase(limits)
    place = REFERENCE.grids[grid]
    accepted = new_event(
        CaseAccepted(
            case_no="CL202605060000001",
            source_system="hotline-12345",
            external_id=str(played.case_id),
            title="t",
            description="d",
            location=CaseLocation(
                grid_code=grid,
                village_code=place.village_code,
                town_code=place.town_code,
                district_code=place.district_code,
            ),
            accepted_at=played.now,
        ),
        case_id=played.case_id,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=played.now,
        correlation_id=uuid.uuid4(),
        event_id=deterministic_id(played.case_id, "accepted"),
    )
    judged = event_caused_by(
        accepted,
        CaseJudged(
            category=category,
            risk_level=3,
            handling_level=HandlingLevel.TOWN,
            sla_tier=SlaTierName.GENERAL,
            judged_by=JudgedBy.RULES,
            confidence=0.8,
        ),
        actor=Actor.system(Producer.TRIAGE),
        occurred_at=played.tick(),
        decision="judged",
    )
    played.append(accepted)
    played.record(judged)
    return played


def is_fallback_owner(unit_id: str) -> bool:
    return dispatch.is_fallback_owner(REFERENCE.units[unit_id])


limits_strategy = st.builds(
    dispatch.DisputeLimits,
    returns=st.integers(1, 4),
    transfers=st.integers(0, 4),
    reworks=st.integers(0, 3),
    reopenings=st.integers(0, 3),
)
moves_strategy = st.lists(st.tuples(st.sampled_from(DISPUTES), st.sampled_from(UNITS)), max_size=STEPS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=limits_strategy, category=st.sampled_from(CATEGORIES), grid=st.sampled_from(GRIDS), moves=moves_strategy)
def test_whatever_the_disputes_the_case_changes_hands_a_bounded_number_of_times(
    limits: dispatch.DisputeLimits, category: str, grid: str, moves: list[tuple[str, str]]
) -> None:
    played = a_judged_case(limits, category, grid)

    for command, target in moves:
        played.try_command(command, target)

    played.assert_folds_agree()
    assignments = played.assignments()
    non_fallback = [a for a in assignments if not a.fallback_owner]
    # The first routing, re-routes before the return limit, transfers, reopenings sent back to the unit.
    assert len(non_fallback) <= 1 + (limits.returns - 1) + limits.transfers + limits.reopenings, [
        (a.route, a.unit_id) for a in assignments
    ]
    assert len([a for a in assignments if a.route is AssignmentRoute.RESPONSIBILITY_LIST]) <= limits.returns
    returned_so_far: set[str] = set()
    for event in causal_order(played.events):
        match event.payload:
            case CaseAssigned() as assigned if assigned.route is AssignmentRoute.RESPONSIBILITY_LIST:
                assert assigned.unit_id not in returned_so_far, "routing gave the case back to a unit that returned it"
            case CaseReturned() as returned:
                returned_so_far.add(returned.unit_id)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=limits_strategy,
    category=st.sampled_from(CATEGORIES),
    grid=st.sampled_from(GRIDS),
    moves=moves_strategy,
    preferences=st.lists(st.permutations(DISPUTES), min_size=1, max_size=8),
    target=st.sampled_from(UNITS),
)
def test_a_holder_that_keeps_disputing_leaves_the_case_with_its_fallback_owner(
    limits: dispatch.DisputeLimits,
    category: str,
    grid: str,
    moves: list[tuple[str, str]],
    preferences: list[list[str]],
    target: str,
) -> None:
    played = a_judged_case(limits, category, grid)
    for command, unit in moves:
        played.try_command(command, unit)

    # From wherever the random disputes left it, every holder disputes the case in turn, each by
    # the first dispute of its preference that is not refused.
    for round_ in range(60):
        order = preferences[round_ % len(preferences)]
        assert any(played.try_command(command, target) for command in order), "every dispute was refused"

    assert played.dispatch_case.status is not CaseStatus.CLOSED
    assert is_fallback_owner(played.lead()), [(a.route, a.unit_id) for a in played.assignments()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=limits_strategy, category=st.sampled_from(CATEGORIES), grid=st.sampled_from(GRIDS), moves=moves_strategy)
def test_a_satisfied_citizen_closes_the_case_whichever_path_it_took(
    limits: dispatch.DisputeLimits, category: str, grid: str, moves: list[tuple[str, str]]
) -> None:
    played = a_judged_case(limits, category, grid)
    for command, target in moves:
        played.try_command(command, target)

    assert played.try_command("satisfied", "")

    assert played.dispatch_case.status is CaseStatus.CLOSED
    assert played.supervised().status is CaseStatus.CLOSED
