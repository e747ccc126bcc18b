"""supervision's handlers: commands from HTTP and events from the log, each in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, or_, select

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.clock import REGION_TIMEZONE, Clock
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, new_event
from caseloop_events.contracts.errors import CaseNotFound, NotFound
from caseloop_events.contracts.intake import CaseLinkedAsDuplicate, CasesMerged
from caseloop_events.contracts.supervision import CaseClosed, RegionMode, RegionModeSwitched, region_stream_id
from caseloop_events.contracts.timeline import CaseTimeline, build_timeline
from caseloop_events.runtime.consumer import Delivery
from caseloop_events.runtime.storage import insert_row_ignoring_duplicates, upsert_row
from caseloop_events.runtime.unit_of_work import Database, UnitOfWork
from caseloop_supervision.adapters.tables import case_links, cases, feedback_deliveries, region_modes
from caseloop_supervision.domain.clocks import (
    CLOCK_DECISIONS,
    FINISHED,
    ClockRules,
    DecideExtension,
    UrgeCase,
    change_profile,
    decide_extension,
    next_notice_at,
    reconcile_clocks,
    urge,
)
from caseloop_supervision.domain.decisions import (
    EvaluateHandling,
    VerifyResult,
    close_with_original,
    evaluate,
    verify,
)
from caseloop_supervision.domain.feedback import FeedbackPolicy, FeedbackRequest, feedback_for
from caseloop_supervision.domain.model import Feedback, FeedbackState, SupervisedCase, fold
from caseloop_supervision.domain.report import DailyReport, daily_report
from caseloop_supervision.service_layer.views import CasePage, CaseView, case_view


@dataclass(frozen=True)
class SupervisionServices:
    """What the handlers need; built once, in app.py."""

    database: Database
    clock: Clock
    rules: ClockRules
    evaluation_window: timedelta = timedelta(hours=72)
    feedback_policy: FeedbackPolicy = field(default_factory=FeedbackPolicy)


# ---------------------------------------------------------------------------------------- events


async def handle_event(services: SupervisionServices, uow: UnitOfWork, event: Envelope, delivery: Delivery) -> None:
    """Every event of every service joins its case's timeline and updates the case list. A link
    to a case that is closed already closes the linked case at once, and the case's clocks follow
    where it stands (never during a replay: a replay folds the clock events that were decided)."""
    if isinstance(event.payload, RegionModeSwitched):
        await uow.lock_case(event.case_id)
        await uow.record(event)
        await _project_region_mode(uow, event, event.payload)
        return
    original = None
    original_id = _original_named_by(event)
    if original_id is not None and not delivery.replaying:
        # The original first: the order in which closing an original locks its followers, so the
        # two never deadlock, and neither misses the other (the link is seen, or the closure is).
        original = fold(original_id, await uow.lock_case(original_id))
    await uow.lock_case(event.case_id)
    await uow.record(event)
    case = fold(event.case_id, await uow.case_events(event.case_id))
    if original is not None and original.status is CaseStatus.CLOSED and original.status_event is not None:
        closing = close_with_original(case, original.status_event, uow.clock.now())
        if closing:
            await commit_new_events(uow, case.case_id, closing, services.rules)
            return
    if not delivery.replaying:
        emergency = await in_emergency_mode(uow, case.town_code, case.district_code)
        clock_events = reconcile_clocks(case, event, emergency=emergency, rules=services.rules, now=uow.clock.now())
        if clock_events:
            await commit_new_events(uow, case.case_id, clock_events, services.rules)
            return
    await project(uow, case, services.rules)


async def in_emergency_mode(uow: UnitOfWork, town_code: str | None, district_code: str | None) -> bool:
    """Whether the case's town, or the whole district, is in emergency mode now."""
    regions = [code for code in (town_code, district_code) if code is not None]
    if not regions:
        return False
    in_emergency = await _regions_in_emergency_mode(uow)
    return any(code in in_emergency for code in regions)


#: The transaction's memo key of the regions in emergency mode.
_EMERGENCY_REGIONS = object()


async def _regions_in_emergency_mode(uow: UnitOfWork) -> frozenset[str]:
    """Read once per transaction (a consumer's poll handles many events in one): a handful of rows
    at most, written only by this service, which drops the memo when it switches a mode in the same
    transaction. A switch another transaction commits meanwhile is seen from the next transaction
    on; a case it missed is re-timed at its next event, as ``switch_region_mode`` says."""
    regions: frozenset[str] | None = uow.memo.get(_EMERGENCY_REGIONS)
    if regions is None:
        found = await uow.session.scalars(
            select(region_modes.c.region_code).where(region_modes.c.mode == RegionMode.EMERGENCY.value)
        )
        regions = uow.memo[_EMERGENCY_REGIONS] = frozenset(found)
    return regions


async def _project_region_mode(uow: UnitOfWork, event: Envelope, switched: RegionModeSwitched) -> None:
    uow.memo.pop(_EMERGENCY_REGIONS, None)
    await upsert_row(
        uow.session,
        region_modes,
        {
            "region_code": switched.region_code,
            "region_level": switched.region_level,
            "mode": switched.mode.value,
            "switched_at": event.occurred_at,
            "switched_by": switched.switched_by,
            "switch_event_id": str(event.event_id),
        },
        ("region_code",),
    )


def _original_named_by(event: Envelope) -> UUID | None:
    match event.payload:
        case CaseLinkedAsDuplicate() as linked:
            return linked.original_case_id
        case CasesMerged() as merged:
            return merged.into_case_id
        case _:
            return None


async def commit_new_events(
    uow: UnitOfWork, case_id: UUID, new_events: Sequence[Envelope], rules: ClockRules
) -> CaseView:
    """Emit what supervision decided for a case (the case is locked), with what follows from it in
    the same transaction: the clocks that follow the new state, the feedback owed to the source
    system, and the closure of the cases that follow a closed one. Only here, never when reading
    the log, so a replay sends nothing."""
    await uow.emit(*new_events)
    case = fold(case_id, await uow.case_events(case_id))
    if not all(isinstance(e.payload, CLOCK_DECISIONS) for e in new_events):
        emergency = await in_emergency_mode(uow, case.town_code, case.district_code)
        clock_events = reconcile_clocks(case, new_events[-1], emergency=emergency, rules=rules, now=uow.clock.now())
        if clock_events:
            await uow.emit(*clock_events)
            case = fold(case_id, await uow.case_events(case_id))
    for event in new_events:
        request = feedback_for(case, event)
        if request is not None:
            await _queue_feedback(uow, request)
    view = await project(uow, case, rules)
    for event in new_events:
        if isinstance(event.payload, CaseClosed):
            await _close_followers(uow, event, rules)
    return view


async def _close_followers(uow: UnitOfWork, closure: Envelope, rules: ClockRules) -> None:
    follower_ids = await uow.session.scalars(
        select(case_links.c.follower_case_id)
        .where(case_links.c.original_case_id == str(closure.case_id), case_links.c.active.is_(True))
        .order_by(case_links.c.follower_case_id)
    )
    for follower_id in [UUID(f) for f in follower_ids]:
        follower = fold(follower_id, await uow.lock_case(follower_id))
        closing = close_with_original(follower, closure, uow.clock.now())
        if closing:
            # A follower's closure is a closure too: its own followers close and its source hears of it.
            await commit_new_events(uow, follower_id, closing, rules)


async def _queue_feedback(uow: UnitOfWork, request: FeedbackRequest) -> None:
    now = uow.clock.now()
    await insert_row_ignoring_duplicates(
        uow.session,
        feedback_deliveries,
        {
            "delivery_id": str(request.delivery_id),
            "case_id": str(request.case_id),
            "url": request.url,
            "about_event_id": str(request.about.event_id),
            "about_type": request.about.type,
            "body": request.body.model_dump_json(),
            "attempts": 0,
            "state": FeedbackState.PENDING.value,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )


async def project(uow: UnitOfWork, case: SupervisedCase, rules: ClockRules) -> CaseView:
    """Bring the case list (and the case's link to the case it follows) up to the folded case."""
    view = case_view(case, rules.reference.escalation_ladder, await _queued_feedback(uow, case))
    running = view.deadline
    await upsert_row(
        uow.session,
        cases,
        {
            "case_id": str(case.case_id),
            "case_no": case.case_no,
            "status": (case.status.value if case.status else "unknown"),
            "title": case.title,
            "source_system": case.source_system,
            "town_code": case.town_code,
            "village_code": case.village_code,
            "grid_code": case.grid_code,
            "category": case.category,
            "risk_level": case.risk_level,
            "unit_id": case.unit_id,
            "assisting_unit_ids": _as_members(case.assisting_unit_ids),
            "campaign_ids": _as_members(case.campaign_ids),
            "returns": case.returns,
            "holder_kind": view.holder.kind.value,
            "holder_id": view.holder.id,
            "accepted_at": case.stages.accepted_at,
            "awaiting_evaluation_since": case.awaiting_evaluation_since,
            "closed_at": case.stages.closed_at,
            "due_at": running.due_at if running is not None and running.counting else None,
            "notice_rung": view.notice.rung if view.notice is not None else None,
            "notice_level": view.notice.level if view.notice is not None else None,
            "next_notice_at": next_notice_at(case, rules),
            "sla_profile": case.sla_profile,
            "updated_at": case.last_event_at or uow.clock.now(),
            "view": view.model_dump_json(),
        },
        ("case_id",),
    )
    link = case.follows
    if link is not None:
        await upsert_row(
            uow.session,
            case_links,
            {
                "follower_case_id": str(case.case_id),
                "original_case_id": str(link.original.case_id),
                "kind": link.kind.value,
                "active": True,
                "updated_at": uow.clock.now(),
            },
            ("follower_case_id",),
        )
    elif case.was_linked:
        # Unlinked: the row goes, so a replay that folds the link and the unmerge in one go (and
        # never writes the row) leaves the same table as the live service did.
        await uow.session.execute(delete(case_links).where(case_links.c.follower_case_id == str(case.case_id)))
    return view


def _as_members(ids: Sequence[str]) -> str:
    """``,A,B,``: each member between commas, so ``LIKE '%,A,%'`` finds exactly A."""
    return "," + "".join(f"{i}," for i in ids)


async def _queued_feedback(uow: UnitOfWork, case: SupervisedCase) -> list[Feedback]:
    """Deliveries queued but not yet attempted: no event tells of them yet. A case whose source
    system asked for no feedback has none (``feedback_for``): no query for it."""
    if case.callback_url is None:
        return []
    rows = await uow.session.execute(
        select(feedback_deliveries.c.about_event_id, feedback_deliveries.c.about_type, feedback_deliveries.c.url)
        .where(feedback_deliveries.c.case_id == str(case.case_id), feedback_deliveries.c.attempts == 0)
        .order_by(feedback_deliveries.c.created_at, feedback_deliveries.c.delivery_id)
    )
    return [
        Feedback(about_event_id=UUID(about), about_type=about_type, url=url, state=FeedbackState.PENDING)
        for about, about_type, url in rows
    ]


# -------------------------------------------------------------------------------------- commands


async def _decide(
    services: SupervisionServices, case_id: UUID, decide: Callable[[SupervisedCase], list[Envelope]]
) -> CaseView:
    async with services.database.transaction() as uow:
        case = fold(case_id, await uow.lock_case(case_id))
        if not case.known:
            raise CaseNotFound(case_id)
        return await commit_new_events(uow, case_id, decide(case), services.rules)


async def verify_result(services: SupervisionServices, case_id: UUID, command: VerifyResult) -> CaseView:
    """A supervisor verifies the reported result: passed, or back to the unit for rework."""
    return await _decide(services, case_id, lambda case: verify(case, command))


async def evaluate_handling(services: SupervisionServices, case_id: UUID, command: EvaluateHandling) -> CaseView:
    """The citizen evaluates: satisfied or basically satisfied closes the case, unsatisfied reopens it."""
    return await _decide(services, case_id, lambda case: evaluate(case, command))


async def urge_case(services: SupervisionServices, case_id: UUID, command: UrgeCase) -> CaseView:
    """A supervisor urges the unit holding the case (催办)."""
    return await _decide(services, case_id, lambda case: urge(case, command))


async def decide_on_extension(services: SupervisionServices, case_id: UUID, command: DecideExtension) -> CaseView:
    """A supervisor approves (moving the handling deadline) or refuses the unit's extension request."""
    return await _decide(services, case_id, lambda case: decide_extension(case, command))


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


@dataclass(frozen=True)
class RegionModeView:
    region_code: str
    region_level: str
    mode: RegionMode
    switched_at: datetime | None
    switched_by: str | None
    #: How many open cases the switch moved onto the other profile.
    cases_affected: int = 0


#: Statuses of cases that have left the loop: a mode switch leaves them alone.
_LEFT_THE_LOOP = tuple(status.value for status in FINISHED)


async def switch_region_mode(services: SupervisionServices, command: SwitchRegionMode) -> RegionModeView:
    """Switch a town or the district into emergency mode (平战转换) or back. The switch is an event
    (``region.mode_switched``); then every open case whose profile it changes gets ``case.sla_profile_changed``
    and its clocks re-timed, each case in its own transaction (locked alone, as everywhere else)."""
    level = _region_level(services, command.region_code)
    stream = region_stream_id(command.region_code)
    async with services.database.transaction() as uow:
        await uow.lock_case(stream)
        current = await _region_mode(uow, command.region_code, level)
        if current.mode is command.mode:
            return current  # already so: nothing to switch, nothing emitted
        switch = new_event(
            RegionModeSwitched(
                region_code=command.region_code,
                region_level=level,
                mode=command.mode,
                switched_by=command.by,
                reason=command.reason,
            ),
            case_id=stream,
            actor=Actor(id=command.by, role=ActorRole.SUPERVISOR),
            occurred_at=command.now,
            correlation_id=command.correlation_id,
        )
        await uow.emit(switch)
        await _project_region_mode(uow, switch, switch.payload)  # type: ignore[arg-type]
        view = await _region_mode(uow, command.region_code, level)
    # Each case re-timed in a transaction of its own, after the switch is committed: cases are
    # locked one at a time, as everywhere else, and a failure leaves the switch in place (the
    # next event of a case missed here re-times it from the mode then).
    in_region = [] if level == "district" else [cases.c.town_code == command.region_code]
    async with services.database.reading() as session:
        case_ids = list(
            await session.scalars(
                select(cases.c.case_id)
                .where(*in_region, cases.c.status.not_in(_LEFT_THE_LOOP))
                .order_by(cases.c.case_id)
            )
        )
    affected = 0
    for case_id in (UUID(c) for c in case_ids):
        async with services.database.transaction() as uow:
            case = fold(case_id, await uow.lock_case(case_id))
            emergency = await in_emergency_mode(uow, case.town_code, case.district_code)
            region = command.region_code
            changed = change_profile(
                case, switch, emergency=emergency, region_code=region, rules=services.rules, now=command.now
            )
            if changed:
                await commit_new_events(uow, case_id, changed, services.rules)
                affected += 1
    return RegionModeView(**{**view.__dict__, "cases_affected": affected})


async def get_region_mode(services: SupervisionServices, region_code: str) -> RegionModeView:
    level = _region_level(services, region_code)
    async with services.database.transaction() as uow:
        return await _region_mode(uow, region_code, level)


def _region_level(services: SupervisionServices, region_code: str) -> str:
    reference = services.rules.reference
    if region_code == reference.district.code:
        return "district"
    if any(town.code == region_code for town in reference.towns):
        return "town"
    raise UnknownRegion(region_code)


async def _region_mode(uow: UnitOfWork, region_code: str, level: str) -> RegionModeView:
    row = (
        await uow.session.execute(select(region_modes).where(region_modes.c.region_code == region_code))
    ).one_or_none()
    if row is None:
        return RegionModeView(region_code, level, RegionMode.NORMAL, None, None)
    return RegionModeView(region_code, level, RegionMode(row.mode), row.switched_at, row.switched_by)


# --------------------------------------------------------------------------------------- queries


async def get_case(services: SupervisionServices, case_id: UUID, as_of: datetime | None = None) -> CaseView:
    """The case as it stands now, or as its events had made it at ``as_of``, its clocks read then."""
    if as_of is not None:
        case = fold(case_id, await _events_as_of(services, case_id, as_of))
        # Queued feedback is left out: no event tells when it was queued.
        return case_view(case, services.rules.reference.escalation_ladder).at(as_of)
    async with services.database.reading() as session:
        view = await session.scalar(select(cases.c.view).where(cases.c.case_id == str(case_id)))
    if view is None:
        raise CaseNotFound(case_id)
    return CaseView.model_validate_json(view).at(services.clock.now())


async def get_timeline(services: SupervisionServices, case_id: UUID, as_of: datetime | None = None) -> CaseTimeline:
    """The case's events in causal order with their causes and stages; up to ``as_of`` when given."""
    return build_timeline(case_id, await _events_as_of(services, case_id, as_of))


async def _events_as_of(services: SupervisionServices, case_id: UUID, as_of: datetime | None) -> list[Envelope]:
    """The case's recorded events in causal order, those that occurred by ``as_of``; none is 404."""
    events = await services.database.case_events(case_id)
    if as_of is not None:
        events = [e for e in events if e.occurred_at <= as_of]
    if not events:
        raise CaseNotFound(case_id)
    return events


async def get_daily_report(
    services: SupervisionServices, day: date, *, town_code: str | None = None, unit_id: str | None = None
) -> DailyReport:
    """The daily report (日报告) for a day in region time, from the events that occurred up to its end."""
    start = datetime.combine(day, time(0), tzinfo=REGION_TIMEZONE)
    end = start + timedelta(days=1)
    log = services.database.tables.case_events
    touched = select(log.c.case_id).where(log.c.occurred_at >= start, log.c.occurred_at < end).distinct()
    async with services.database.reading() as session:
        rows = await session.execute(
            select(log.c.case_id, log.c.envelope).where(log.c.case_id.in_(touched), log.c.occurred_at < end)
        )
        by_case: dict[str, list[Envelope]] = {}
        for case_id, envelope in rows:
            by_case.setdefault(case_id, []).append(Envelope.model_validate_json(envelope))
    folded = []
    for case_id, events in sorted(by_case.items()):
        ordered = causal_order(events)
        folded.append((fold(UUID(case_id), ordered), ordered))
    ladder = services.rules.reference.escalation_ladder
    overdue_rung = next((rung.rung for rung in ladder.rungs if rung.at_share >= 1), "overdue")
    return daily_report(day, start, end, folded, town_code=town_code, unit_id=unit_id, overdue_rung=overdue_rung)


def day_is_over(day: date, now: datetime) -> bool:
    return now >= datetime.combine(day + timedelta(days=1), time(0), tzinfo=REGION_TIMEZONE)


async def list_cases(
    services: SupervisionServices,
    *,
    status: str | None = None,
    town_code: str | None = None,
    unit_id: str | None = None,
    campaign_id: str | None = None,
    returned_more_than_once: bool | None = None,
    overdue: bool | None = None,
    notice: str | None = None,
    level: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> CasePage:
    """Cases, most recently changed first; ``unit_id`` matches the lead and the assisting units."""
    conditions: list[Any] = []
    if status is not None:
        conditions.append(cases.c.status == status)
    if town_code is not None:
        conditions.append(cases.c.town_code == town_code)
    if unit_id is not None:
        conditions.append(
            or_(cases.c.unit_id == unit_id, cases.c.assisting_unit_ids.contains(f",{unit_id},", autoescape=True))
        )
    if campaign_id is not None:
        conditions.append(cases.c.campaign_ids.contains(f",{campaign_id},", autoescape=True))
    if returned_more_than_once is not None:
        conditions.append(cases.c.returns >= 2 if returned_more_than_once else cases.c.returns < 2)
    now = services.clock.now()
    if overdue is not None:
        is_overdue = cases.c.due_at < now
        conditions.append(is_overdue if overdue else or_(cases.c.due_at.is_(None), cases.c.due_at >= now))
    if notice is not None:
        conditions.append(cases.c.notice_rung == notice)
    if level is not None:
        conditions.append(cases.c.notice_level == level)
    async with services.database.reading() as session:
        total = await session.scalar(select(func.count()).select_from(cases).where(*conditions))
        rows = await session.scalars(
            select(cases.c.view)
            .where(*conditions)
            .order_by(cases.c.updated_at.desc(), cases.c.case_id)
            .limit(limit)
            .offset(offset)
        )
        items = [CaseView.model_validate_json(view).at(now) for view in rows]
    return CasePage(items=items, total=int(total or 0), limit=limit, offset=offset)
