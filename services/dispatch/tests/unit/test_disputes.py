"""Assignment disputes, pure: returns, transfers, joint assignment, rework, reopening, re-judgment, merges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from caseloop_dispatch.domain.model import (
    AcknowledgeCase,
    AssignJointly,
    CaseFollowsAnother,
    DispatchCase,
    DisputeLimits,
    ExtensionAlreadyPending,
    FallbackOwnerCannotReturn,
    JointAssignmentRefused,
    NotAcknowledged,
    NotAssignedToThisUnit,
    NotWithTheUnit,
    ReportResult,
    RequestExtension,
    ReturnCase,
    TransferCase,
    TransferLimitReached,
    TransferTargetRefused,
    acknowledge,
    assign_jointly,
    fold,
    react,
    report_result,
    request_extension,
    return_case,
    transfer_case,
)
from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import CaseStatus, HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAssigned,
    CaseReturned,
    CaseTransferred,
    ExtensionRequested,
)
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    EventPayload,
    Producer,
    deterministic_id,
    event_answering,
    event_caused_by,
    new_event,
)
from caseloop_events.contracts.errors import InvalidInput
from caseloop_events.contracts.intake import (
    CaseAccepted,
    CaseLinkedAsDuplicate,
    CaseLocation,
    CasesMerged,
    CaseUnmerged,
)
from caseloop_events.contracts.reference import (
    DISTRICT_COMMAND_UNIT_ID,
    ReferenceData,
    default_reference_dir,
    load_reference_data,
)
from caseloop_events.contracts.supervision import CaseReopened, CaseVerificationFailed, ExtensionDecided
from caseloop_events.contracts.triage import CaseJudged, JudgedBy

REFERENCE: ReferenceData = load_reference_data(default_reference_dir())
LIMITS = DisputeLimits(returns=2, transfers=3, reworks=2, reopenings=2)
GRID = "3301100010010101"
TOWN = GRID[:9]
TOWN_GOVERNMENT = f"U-TOWN-{TOWN}"
CATEGORY = "sanitation"  # three departments answer for it in this town
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CASE_ID = uuid.UUID("2c7e3f4a-1b2c-4d5e-8f90-a1b2c3d4e5f6")
SUPERVISOR = Actor(id="li.na", role=ActorRole.SUPERVISOR)


class History:
    """A case's log as the test builds it; each step a minute after the last."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self.now = T0

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    @property
    def case(self) -> DispatchCase:
        return fold(CASE_ID, causal_order(self.events))

    def add(self, *events: Envelope) -> History:
        self.events.extend(events)
        return self

    def react(self, limits: DisputeLimits = LIMITS) -> Envelope | None:
        reaction = react(self.case, REFERENCE, limits, self.tick())
        if reaction is not None:
            self.add(reaction)
        return reaction

    def caused(self, payload: EventPayload, decision: str, actor: Actor = SUPERVISOR) -> Envelope:
        event = event_caused_by(self.events[-1], payload, actor=actor, occurred_at=self.tick(), decision=decision)
        self.add(event)
        return event

    @property
    def lead(self) -> str:
        assignment = self.case.assignment
        assert assignment is not None
        return assignment.unit_id


def report(history: History) -> CaseAccepted:
    return CaseAccepted(
        case_no="CL202603020000007",
        source_system="hotline-12345",
        external_id="HL-7",
        title="垃圾堆积",
        description="小区门口垃圾三天没清运",
        location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=TOWN, district_code=GRID[:6]),
        accepted_at=history.now,
    )


def accepted_case() -> History:
    history = History()
    history.add(
        new_event(
            report(history),
            case_id=CASE_ID,
            actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
            occurred_at=T0,
            correlation_id=uuid.uuid4(),
            event_id=deterministic_id(CASE_ID, "accepted"),
        )
    )
    return history


def judgment(category: str = CATEGORY, **changes: object) -> CaseJudged:
    fields: dict[str, object] = {
        "category": category,
        "risk_level": 3,
        "handling_level": HandlingLevel.TOWN,
        "sla_tier": SlaTierName.GENERAL,
        "judged_by": JudgedBy.RULES,
        "confidence": 0.8,
    }
    return CaseJudged.model_validate({**fields, **changes})


def assigned_case(category: str = CATEGORY) -> History:
    history = accepted_case()
    history.caused(judgment(category), "judged", Actor.system(Producer.TRIAGE))
    assert history.react() is not None
    return history


def acknowledged_case(category: str = CATEGORY) -> History:
    history = assigned_case(category)
    return acknowledge_by_lead(history)


def acknowledge_by_lead(history: History) -> History:
    command = AcknowledgeCase(case_id=CASE_ID, unit_id=history.lead, by="wang.wei", now=history.tick())
    return history.add(acknowledge(history.case, command))


def return_by_lead(history: History, limits: DisputeLimits = LIMITS) -> list[Envelope]:
    command = ReturnCase(
        case_id=CASE_ID, unit_id=history.lead, by="wang.wei", reason="不属于本单位", now=history.tick()
    )
    events = return_case(history.case, command, REFERENCE, limits)
    history.add(*events)
    return events


def transfer_by_lead(history: History, to_unit_id: str) -> list[Envelope]:
    command = TransferCase(
        case_id=CASE_ID,
        unit_id=history.lead,
        by="wang.wei",
        to_unit_id=to_unit_id,
        reason="应由对方处理",
        now=history.tick(),
    )
    events = transfer_case(history.case, command, REFERENCE, LIMITS)
    history.add(*events)
    return events


def fail_verification(history: History) -> None:
    command = ReportResult(
        case_id=CASE_ID, unit_id=history.lead, by="wang.wei", summary="已处理", evidence=(), now=history.tick()
    )
    history.add(report_result(history.case, command))
    history.caused(CaseVerificationFailed(verified_by="li.na", note="仍未处理"), "verification_failed")


def answering_units() -> list[str]:
    return [unit.unit_id for unit in REFERENCE.units_answering(CATEGORY, TOWN)]


def test_a_returned_case_is_routed_to_the_next_unit_that_answers_for_it_caused_by_the_return() -> None:
    history = assigned_case()
    first, second, _third = answering_units()
    assert history.lead == first

    returned, reassigned = return_by_lead(history)

    assert isinstance(returned.payload, CaseReturned)
    assert returned.payload.unit_id == first
    assert returned.payload.reason == "不属于本单位"
    assert isinstance(reassigned.payload, CaseAssigned)
    assert reassigned.payload.unit_id == second
    assert reassigned.payload.route is AssignmentRoute.RESPONSIBILITY_LIST
    assert reassigned.payload.returns_so_far == 1
    assert not reassigned.payload.fallback_owner
    assert first in reassigned.payload.reason
    assert reassigned.causation_id == returned.event_id
    assert reassigned.event_id == deterministic_id(returned.event_id, "assigned")
    assert history.case.status is CaseStatus.ASSIGNED
    assert history.case.returned_by == (first,)


def test_an_acknowledged_case_can_still_be_returned() -> None:
    history = acknowledged_case()

    _returned, reassigned = return_by_lead(history)

    assert isinstance(reassigned.payload, CaseAssigned)
    assert reassigned.payload.unit_id == answering_units()[1]
    assert history.case.acknowledged_at is None


def test_reaching_the_return_limit_sends_the_case_to_the_town_government_which_cannot_return_it() -> None:
    history = assigned_case()
    return_by_lead(history)

    _returned, reassigned = return_by_lead(history)

    assert isinstance(reassigned.payload, CaseAssigned)
    assert reassigned.payload.unit_id == TOWN_GOVERNMENT
    assert reassigned.payload.route is AssignmentRoute.TOWN_FALLBACK
    assert reassigned.payload.fallback_owner
    assert reassigned.payload.returns_so_far == 2
    with pytest.raises(FallbackOwnerCannotReturn):
        return_by_lead(history)


def test_a_return_limit_of_three_reroutes_twice_never_back_to_a_unit_that_returned() -> None:
    limits = DisputeLimits(returns=3)
    history = assigned_case()
    leads = [history.lead]
    for _ in range(3):
        return_by_lead(history, limits)
        leads.append(history.lead)

    assert leads == [*answering_units(), TOWN_GOVERNMENT]


def test_a_case_no_other_unit_answers_goes_to_the_fallback_owner_on_its_first_return() -> None:
    history = assigned_case("road_damage")  # one department only

    _returned, reassigned = return_by_lead(history)

    assert isinstance(reassigned.payload, CaseAssigned)
    assert reassigned.payload.unit_id == TOWN_GOVERNMENT
    assert reassigned.payload.fallback_owner


def test_only_the_lead_returns_and_only_while_it_holds_the_case() -> None:
    history = acknowledged_case()
    with pytest.raises(NotAssignedToThisUnit):
        return_case(
            history.case,
            ReturnCase(case_id=CASE_ID, unit_id="U-POLICE", by="x", reason="r", now=history.tick()),
            REFERENCE,
            LIMITS,
        )
    history.add(
        report_result(
            history.case,
            ReportResult(case_id=CASE_ID, unit_id=history.lead, by="w", summary="s", evidence=(), now=history.tick()),
        )
    )
    with pytest.raises(NotWithTheUnit):
        return_by_lead(history)


def test_a_transfer_hands_the_case_to_the_named_unit_which_must_acknowledge_it() -> None:
    history = acknowledged_case()

    transferred, reassigned = transfer_by_lead(history, "U-HOUSING")

    assert isinstance(transferred.payload, CaseTransferred)
    assert transferred.payload.to_unit_id == "U-HOUSING"
    assert isinstance(reassigned.payload, CaseAssigned)
    assert reassigned.payload.route is AssignmentRoute.TRANSFER
    assert reassigned.payload.unit_id == "U-HOUSING"
    assert reassigned.causation_id == transferred.event_id
    assert history.case.status is CaseStatus.ASSIGNED
    assert history.case.transfers == 1


def test_a_case_is_not_transferred_to_its_holder_nor_to_a_unit_that_returned_it() -> None:
    history = assigned_case()
    first = history.lead
    with pytest.raises(TransferTargetRefused):
        transfer_by_lead(history, first)
    return_by_lead(history)
    with pytest.raises(TransferTargetRefused, match=first):
        transfer_by_lead(history, first)


def test_transfers_stop_at_the_transfer_limit() -> None:
    history = assigned_case()
    for target in ("U-HOUSING", "U-TRANSPORT", "U-HOUSING"):
        transfer_by_lead(history, target)

    with pytest.raises(TransferLimitReached):
        transfer_by_lead(history, "U-TRANSPORT")
    assert history.case.transfers == 3


def test_a_dispatcher_assigns_a_lead_and_assisting_units_before_acknowledgement() -> None:
    history = assigned_case()
    command = AssignJointly(
        case_id=CASE_ID,
        lead_unit_id="U-HOUSING",
        assisting_unit_ids=("U-TRANSPORT", TOWN_GOVERNMENT),
        by="dispatcher-1",
        reason="联合处置",
        now=history.tick(),
    )

    joint = assign_jointly(history.case, command, REFERENCE)
    history.add(joint)

    assert isinstance(joint.payload, CaseAssigned)
    assert joint.payload.route is AssignmentRoute.DISPATCHER
    assert joint.payload.assisting_unit_ids == ("U-TRANSPORT", TOWN_GOVERNMENT)
    assert joint.actor == Actor(id="dispatcher-1", role=ActorRole.SUPERVISOR)
    assert history.lead == "U-HOUSING"
    with pytest.raises(NotAssignedToThisUnit):
        acknowledge(history.case, AcknowledgeCase(CASE_ID, "U-TRANSPORT", by="assistant", now=history.tick()))
    acknowledge_by_lead(history)
    with pytest.raises(JointAssignmentRefused):
        assign_jointly(history.case, command, REFERENCE)


def test_rework_stays_with_the_unit_until_the_rework_limit_then_goes_to_the_fallback_owner() -> None:
    history = acknowledged_case()
    first = history.lead
    for _ in range(LIMITS.reworks):
        fail_verification(history)
        assert history.react() is None
        assert history.lead == first
        assert history.case.status is CaseStatus.ACKNOWLEDGED

    fail_verification(history)
    fallback = history.react()

    assert fallback is not None
    assert isinstance(fallback.payload, CaseAssigned)
    assert fallback.payload.unit_id == TOWN_GOVERNMENT
    assert fallback.payload.fallback_owner
    assert "rework limit" in fallback.payload.reason
    assert fallback.causation_id == history.events[-2].event_id
    assert history.case.reworks == 0


def test_a_reopened_case_goes_back_to_its_unit_until_the_reopening_limit_then_up_the_fallback_chain() -> None:
    history = acknowledged_case()
    first = history.lead
    routes = []
    for count in range(1, LIMITS.reopenings + 3):
        history.caused(CaseReopened(reason="市民不满意", reopen_count=count), "reopened")
        reassigned = history.react()
        assert reassigned is not None
        assert isinstance(reassigned.payload, CaseAssigned)
        assert reassigned.causation_id == history.events[-2].event_id
        routes.append((reassigned.payload.route, reassigned.payload.unit_id))
        acknowledge_by_lead(history)

    assert routes == [
        (AssignmentRoute.REOPENED, first),
        (AssignmentRoute.REOPENED, first),
        (AssignmentRoute.TOWN_FALLBACK, TOWN_GOVERNMENT),
        (AssignmentRoute.DISTRICT_FALLBACK, DISTRICT_COMMAND_UNIT_ID),
    ]


def test_a_rejudged_case_moves_to_the_unit_of_its_new_category_once() -> None:
    history = acknowledged_case("road_damage")
    assert history.lead == "U-TRANSPORT"
    first_judgment = history.events[1]

    rejudged = history.caused(
        judgment(
            "streetlight",
            judged_by=JudgedBy.OFFICER,
            supersedes_event_id=first_judgment.event_id,
            rejudgment_reason="x",
        ),
        "rejudged",
        Actor(id="officer-1", role=ActorRole.TRIAGE_OFFICER),
    )
    moved = history.react()

    assert moved is not None
    assert isinstance(moved.payload, CaseAssigned)
    assert moved.payload.unit_id == REFERENCE.units_answering("streetlight", TOWN)[0].unit_id
    assert "re-judged as streetlight" in moved.payload.reason
    assert moved.causation_id == rejudged.event_id
    assert history.react() is None


def test_a_rejudgment_to_a_category_the_holder_also_answers_for_moves_nothing() -> None:
    history = assigned_case()
    history.caused(judgment(CATEGORY, risk_level=2), "rejudged")

    assert history.react() is None


def test_a_duplicate_is_never_assigned_until_it_is_unmerged_and_accepted() -> None:
    history = History()
    base = report(history).model_dump(exclude={"accepted_at"})
    linked = new_event(
        CaseLinkedAsDuplicate(
            **base, original_case_id=uuid.uuid4(), original_case_no="CL1", similarity=0.9, reason="r"
        ),
        case_id=CASE_ID,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=T0,
        correlation_id=uuid.uuid4(),
    )
    history.add(linked)
    assert history.case.status is CaseStatus.DUPLICATE
    assert history.react() is None

    unmerged = history.caused(CaseUnmerged(from_case_id=uuid.uuid4(), unmerged_by="li.na", reason="不同事项"), "u")
    history.add(
        event_caused_by(
            unmerged,
            CaseAccepted(**base, accepted_at=history.tick()),
            actor=SUPERVISOR,
            occurred_at=history.now,
            decision="accepted",
        )
    )
    history.caused(judgment(), "judged", Actor.system(Producer.TRIAGE))

    assert history.react() is not None
    assert history.lead == answering_units()[0]


def test_a_merged_case_is_frozen_for_its_unit_and_an_unmerge_gives_it_back_as_it_was() -> None:
    history = acknowledged_case()
    merged = event_answering(
        history.events[-1],
        CasesMerged(into_case_id=uuid.uuid4(), into_case_no="CL1", merged_by="li.na", reason="同一事项"),
        actor=SUPERVISOR,
        occurred_at=history.tick(),
        correlation_id=uuid.uuid4(),
    )
    history.add(merged)

    assert history.case.status is CaseStatus.MERGED
    with pytest.raises(CaseFollowsAnother):
        return_by_lead(history)

    history.caused(CaseUnmerged(from_case_id=uuid.uuid4(), unmerged_by="li.na", reason="不是同一事项"), "unmerged")

    assert history.case.status is CaseStatus.ACKNOWLEDGED
    assert history.react() is None


# --- extensions ----------------------------------------------------------------------------


def ask_for_extension(history: History, unit_id: str | None = None, days: int = 3) -> Envelope:
    command = RequestExtension(
        case_id=CASE_ID,
        unit_id=unit_id or history.lead,
        by="wang.wei",
        reason="需协调物业",
        due_at=history.now + timedelta(days=days),
        now=history.tick(),
    )
    event = request_extension(history.case, command)
    history.add(event)
    return event


def test_the_lead_unit_that_signed_for_a_case_asks_for_an_extension_answering_the_acknowledgement() -> None:
    history = acknowledged_case()
    acknowledgement = history.events[-1]

    asked = ask_for_extension(history)

    assert isinstance(asked.payload, ExtensionRequested)
    assert asked.causation_id == acknowledgement.event_id
    assert (asked.payload.unit_id, asked.payload.reason) == (history.lead, "需协调物业")
    assert asked.actor.role is ActorRole.UNIT
    assert history.case.pending_extension == asked
    assert history.case.status is CaseStatus.ACKNOWLEDGED, "asking changes nothing until a supervisor decides"


def test_an_extension_is_asked_for_once_at_a_time_until_supervision_decides() -> None:
    history = acknowledged_case()
    asked = ask_for_extension(history)
    with pytest.raises(ExtensionAlreadyPending):
        ask_for_extension(history)
    history.caused(
        ExtensionDecided(request_event_id=asked.event_id, approved=False, decided_by="li.na", note="no"), "decided"
    )
    assert history.case.pending_extension is None
    assert isinstance(ask_for_extension(history, days=5).payload, ExtensionRequested)


def test_an_extension_needs_an_acknowledged_case_its_lead_unit_and_a_future_deadline() -> None:
    history = assigned_case()
    with pytest.raises(NotAcknowledged):
        ask_for_extension(history)
    acknowledge_by_lead(history)
    other = answering_units()[1]
    with pytest.raises(NotAssignedToThisUnit):
        ask_for_extension(history, unit_id=other)
    with pytest.raises(InvalidInput, match="due_at"):
        ask_for_extension(history, days=-1)
    assert history.case.pending_extension is None
