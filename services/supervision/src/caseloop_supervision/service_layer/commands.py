"""supervision's commands: what supervisors and citizens ask (verification, evaluation, urging,
extension decisions, emergency mode) and what its timers ask (notices, closures without evaluation,
recording a callback's attempt). Each works in the unit of work it is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, new_event
from caseloop_events.contracts.errors import CaseNotFound, NotFound
from caseloop_events.contracts.supervision import (
    FeedbackDelivered,
    FeedbackFailed,
    RegionMode,
    RegionModeSwitched,
    region_stream_id,
)
from caseloop_supervision.adapters.store import DUE_STATES
from caseloop_supervision.adapters.tables import feedback_deliveries
from caseloop_supervision.adapters.views import CaseView
from caseloop_supervision.domain.clocks import (
    DecideExtension,
    UrgeCase,
    change_profile,
    decide_extension,
    due_notices,
    urge,
)
from caseloop_supervision.domain.decisions import (
    EvaluateHandling,
    VerifyResult,
    close_if_evaluation_overdue,
    evaluate,
    verify,
)
from caseloop_supervision.domain.feedback import AttemptOutcome, attempt_recorded
from caseloop_supervision.domain.model import FeedbackState, SupervisedCase
from caseloop_supervision.service_layer.projection import view_of
from caseloop_supervision.service_layer.supervising import SupervisionReads, Work, decided, in_emergency_mode

# --- what people ask --------------------------------------------------------------------------


async def _decide_on(uow: Work, case_id: UUID, decide: Callable[[SupervisedCase], list[Envelope]]) -> CaseView:
    stream = await uow.stream(case_id)
    if not stream.state.known:
        raise CaseNotFound(case_id)
    await decided(uow, case_id, decide(stream.state))
    return view_of(stream, uow)


async def verify_result(command: VerifyResult, uow: Work) -> CaseView:
    """A supervisor verifies the reported result: passed, or back to the unit for rework."""
    return await _decide_on(uow, command.case_id, lambda case: verify(case, command))


async def evaluate_handling(command: EvaluateHandling, uow: Work) -> CaseView:
    """The citizen evaluates: satisfied or basically satisfied closes the case, unsatisfied reopens it."""
    return await _decide_on(uow, command.case_id, lambda case: evaluate(case, command))


async def urge_case(command: UrgeCase, uow: Work) -> CaseView:
    """A supervisor urges the unit holding the case (催办)."""
    return await _decide_on(uow, command.case_id, lambda case: urge(case, command))


async def decide_on_extension(command: DecideExtension, uow: Work) -> CaseView:
    """A supervisor approves (moving the handling deadline) or refuses the unit's extension request."""
    return await _decide_on(uow, command.case_id, lambda case: decide_extension(case, command))


# --- emergency mode ---------------------------------------------------------------------------


class UnknownRegion(NotFound):
    def __init__(self, region_code: str) -> None:
        super().__init__(f"region {region_code!r} is neither the district nor one of its towns")


@dataclass(frozen=True)
class SwitchRegionMode:
    region_code: str
    mode: RegionMode
    by: str
    reason: str
    now: datetime
    correlation_id: UUID
    subject: str | None = None


@dataclass(frozen=True)
class RegionModeView:
    region_code: str
    region_level: str
    mode: RegionMode
    switched_at: datetime | None
    switched_by: str | None
    #: How many open cases the switch moved onto the other profile.
    cases_affected: int = 0


@dataclass(frozen=True)
class Switched:
    """What a switch command did: the region's mode now, and the switch (None: it was in that mode)."""

    view: RegionModeView
    switch: Envelope | None


@dataclass(frozen=True)
class ChangeProfile:
    """A case of a region that switched mode is held to the region's profile now (re-timed)."""

    case_id: UUID
    switch: Envelope


def region_level(uow: Work, region_code: str) -> str:
    reference = uow.deps.rules.reference
    if region_code == reference.district.code:
        return "district"
    if any(town.code == region_code for town in reference.towns):
        return "town"
    raise UnknownRegion(region_code)


async def switch_mode(command: SwitchRegionMode, uow: Work) -> Switched:
    """Switch a town or the district into emergency mode (平战转换) or back: an event of the region's
    own stream, which the projection turns into its mode. Nothing when it is in that mode already."""
    level = region_level(uow, command.region_code)
    stream = await uow.stream(region_stream_id(command.region_code))
    switches = [(e, e.payload) for e in stream.events if isinstance(e.payload, RegionModeSwitched)]
    mode, at, by = (
        (switches[-1][1].mode, switches[-1][0].occurred_at, switches[-1][1].switched_by)
        if switches
        else (
            RegionMode.NORMAL,
            None,
            None,
        )
    )
    if mode is command.mode:
        return Switched(RegionModeView(command.region_code, level, mode, at, by), None)
    switch = new_event(
        RegionModeSwitched(
            region_code=command.region_code,
            region_level=level,
            mode=command.mode,
            switched_by=command.by,
            reason=command.reason,
        ),
        case_id=stream.stream_id,
        actor=Actor(id=command.by, role=ActorRole.SUPERVISOR, subject=command.subject),
        occurred_at=command.now,
        correlation_id=command.correlation_id,
    )
    uow.emit(switch)
    return Switched(RegionModeView(command.region_code, level, command.mode, command.now, command.by), switch)


async def hold_to_the_region_profile(command: ChangeProfile, uow: Work) -> bool:
    """Re-time a case of a region that switched mode; whether its profile changed."""
    case = await uow.state(command.case_id)
    switched = command.switch.payload
    assert isinstance(switched, RegionModeSwitched)
    emergency = await in_emergency_mode(uow, case)
    changed = change_profile(
        case,
        command.switch,
        emergency=emergency,
        region_code=switched.region_code,
        rules=uow.deps.rules,
        now=command.switch.occurred_at,
    )
    if changed:
        await decided(uow, command.case_id, changed)
    return bool(changed)


Handle = Callable[[object], Awaitable[Any]]


async def switch_region_mode(handle: Handle, store: SupervisionReads, command: SwitchRegionMode) -> RegionModeView:
    """The switch, committed on its own; then every open case whose profile it changes gets
    ``case.sla_profile_changed`` and its clocks re-timed, each case in a unit of work of its own: a
    failure leaves the switch in place (the next event of a case missed here re-times it)."""
    switched: Switched = await handle(command)
    if switched.switch is None:
        return switched.view
    store.forget_region_modes()
    town = None if switched.view.region_level == "district" else command.region_code
    affected = 0
    for case_id in await store.open_cases_in(town):
        affected += bool(await handle(ChangeProfile(case_id, switched.switch)))
    return replace(switched.view, cases_affected=affected)


# --- what the timers ask ----------------------------------------------------------------------


@dataclass(frozen=True)
class IssueDueNotices:
    """Issue the escalation notices a case's running clocks have reached (预警, 超期, 黄牌, 红牌)."""

    case_id: UUID


@dataclass(frozen=True)
class CloseWithoutEvaluation:
    """Close a verified case the citizen has not evaluated within the evaluation window."""

    case_id: UUID


async def issue_due_notices(command: IssueDueNotices, uow: Work) -> int:
    """Decided on the case as it stands: a notice issued already (by another round, before a
    restart) is in its log, and the ladder issues each rung once per deadline."""
    return await _decide_if_due(uow, command.case_id, lambda case: due_notices(case, uow.deps.rules, uow.now()))


async def close_without_evaluation(command: CloseWithoutEvaluation, uow: Work) -> int:
    """Re-checked on the case as it stands: an evaluation may have arrived since the scan."""
    window = uow.deps.evaluation_window
    return await _decide_if_due(uow, command.case_id, lambda case: close_if_evaluation_overdue(case, uow.now(), window))


async def _decide_if_due(uow: Work, case_id: UUID, decide: Callable[[SupervisedCase], list[Envelope]]) -> int:
    decisions = decide(await uow.state(case_id))
    if decisions:
        await decided(uow, case_id, decisions)
    return len(decisions)


@dataclass(frozen=True)
class RecordFeedbackAttempt:
    """Record what one callback attempt gave, as an event of the case (once per attempt)."""

    delivery: dict[str, Any]
    outcome: AttemptOutcome


async def record_feedback_attempt(command: RecordFeedbackAttempt, uow: Work) -> bool:
    """False when another round or replica recorded this attempt already (the receiver de-duplicates)."""
    row = command.delivery
    case_id = UUID(row["case_id"])
    stream = await uow.stream(case_id)
    current = await uow.deps.store.delivery(row["delivery_id"])
    if current is None or current["attempts"] != row["attempts"] or current["state"] not in DUE_STATES:
        return False
    about = next((e for e in stream.events if str(e.event_id) == row["about_event_id"]), None)
    if about is None:
        raise LookupError(
            f"delivery {row['delivery_id']} is about event {row['about_event_id']}, not in case {case_id}"
        )
    attempt, now = row["attempts"] + 1, uow.now()
    recorded = attempt_recorded(about, row["url"], attempt, command.outcome, now, uow.deps.feedback_policy)
    match recorded.payload:
        case FeedbackDelivered():
            state, next_attempt_at = FeedbackState.DELIVERED, None
        case FeedbackFailed() as failed:
            state = FeedbackState.GAVE_UP if failed.gave_up else FeedbackState.RETRYING
            next_attempt_at = failed.next_attempt_at
        case _:
            raise AssertionError(f"unexpected feedback outcome {recorded.type}")
    uow.put(
        feedback_deliveries,
        {
            **current,
            "attempts": attempt,
            "state": state.value,
            "next_attempt_at": next_attempt_at,
            "last_status_code": command.outcome.status_code,
            "last_error": command.outcome.error,
            "updated_at": now,
        },
    )
    await decided(uow, case_id, [recorded])
    return True
