"""supervision's HTTP routes: translate requests into commands and call the handlers."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from caseloop_events.contracts.clock import REGION_TIMEZONE
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.errors import CaseNotFound
from caseloop_events.contracts.reference import HandlingLevel
from caseloop_events.contracts.supervision import Rating, RegionMode
from caseloop_events.contracts.timeline import CaseTimeline, build_timeline, render_text
from caseloop_events.runtime.auth import Caller, Principal, Role, admits
from caseloop_events.runtime.http import CorrelationId, IsoDate, IsoDateTime, PageOffset, RequestBody
from caseloop_events.runtime.personal_data import (
    holds_personal_data,
    may_see_personal_data,
    record_read,
    with_personal_data_masked,
)
from caseloop_events.runtime.service import Service, service_of
from caseloop_supervision.adapters import queries
from caseloop_supervision.adapters.views import CasePage, CaseView
from caseloop_supervision.config import SupervisionSettings
from caseloop_supervision.domain.clocks import DecideExtension, UrgeCase
from caseloop_supervision.domain.decisions import EvaluateHandling, VerifyResult
from caseloop_supervision.domain.model import SupervisedCase
from caseloop_supervision.domain.report import daily_report as report_of_the_day
from caseloop_supervision.service_layer import commands
from caseloop_supervision.service_layer.commands import RegionModeView, SwitchRegionMode
from caseloop_supervision.service_layer.supervising import SupervisionDeps

#: The composed supervision service: its commands (``handle``), database and dependencies.
Supervision = Annotated[Service[SupervisionSettings, SupervisionDeps, SupervisedCase], Depends(service_of)]


class VerificationIn(RequestBody):
    passed: bool
    by: str = Field(min_length=1, max_length=64, description="the verifying supervisor")
    note: str = Field(default="", max_length=2000)


class EvaluationIn(RequestBody):
    rating: Rating
    comment: str = Field(default="", max_length=2000)


class UrgingIn(RequestBody):
    by: str = Field(min_length=1, max_length=64, description="the urging supervisor")
    note: str = Field(min_length=1, max_length=2000, description="what the unit is urged to do")


class ExtensionDecisionIn(RequestBody):
    approved: bool
    by: str = Field(min_length=1, max_length=64, description="the deciding supervisor")
    note: str = Field(default="", max_length=2000)
    due_at: IsoDateTime | None = Field(
        default=None, description="the deadline granted, if not the one the unit asked for (approval only)"
    )


class RegionModeIn(RequestBody):
    mode: RegionMode
    by: str = Field(min_length=1, max_length=64, description="the supervisor switching the mode")
    reason: str = Field(min_length=1, max_length=2000)


class RegionModeOut(BaseModel):
    region_code: str
    region_level: str
    mode: RegionMode
    switched_at: dt.datetime | None
    switched_by: str | None
    cases_affected: int = Field(description="open cases the switch moved onto the other SLA profile")


class DailyReportOut(BaseModel):
    date: dt.date
    town_code: str | None
    unit_id: str | None
    complete: bool = Field(description="false while the day is not over: its figures can still grow")
    new_cases: int
    rejected: int
    repeat_cases: int = Field(description="reports linked as duplicates and cases merged into another (重复件)")
    closed: int
    closed_on_time: int
    on_time_rate: float | None = Field(description="closed on time / closed cases that had a handling deadline")
    overdue: int = Field(description="cases that went past a deadline that day")
    notices: dict[str, int] = Field(description="notices issued, by rung")
    urgings: int
    returns: int
    reopened: int
    extensions_requested: int
    extensions_approved: int
    evaluations: int
    satisfied: int
    satisfaction_rate: float | None = Field(description="satisfied or basically satisfied / evaluations")


case_router = APIRouter(prefix="/v1/cases", tags=["supervision"])
region_router = APIRouter(prefix="/v1/regions", tags=["emergency mode"])
report_router = APIRouter(prefix="/v1/reports", tags=["reports"])
router = case_router

Supervisor = Annotated[Principal, Depends(admits(Role.SUPERVISOR))]
ListReader = Annotated[Principal, Depends(admits(Role.SUPERVISOR, Role.UNIT))]
CaseReader = Annotated[Principal, Depends(admits(Role.SUPERVISOR, Role.UNIT, Role.SOURCE_SYSTEM))]
TimelineReader = Annotated[Principal, Depends(admits(Role.SUPERVISOR, Role.UNIT, Role.SOURCE_SYSTEM, Role.OPERATOR))]
Evaluator = Annotated[Principal, Depends(admits(Role.SUPERVISOR, Role.SOURCE_SYSTEM))]


def _units_of(view: CaseView) -> list[str | None]:
    return [view.unit_id, *view.assisting_unit_ids]


async def _require_case_access(supervision: Supervision, caller: Principal, case_id: UUID) -> CaseView:
    """The case as it stands, if the caller may see it: the system that reported it, a unit it is
    assigned to, a supervisor of its region (operators read timelines, masked); 403 else."""
    view = await queries.case_now(supervision.database, case_id, supervision.clock.now())
    caller.require_case(source_system=view.source_system, unit_ids=_units_of(view), place_code=view.town_code)
    return view


async def _require_command_access(supervision: Supervision, caller: Principal, case_id: UUID) -> None:
    """What ``_require_case_access`` checks, on the case as supervision keeps it in memory (no
    database round trip for a case it handled lately); a refusal is checked again on the case as
    stored."""

    def may_command(case: SupervisedCase) -> None:
        if not case.known:
            raise CaseNotFound(case_id)
        units = [case.unit_id, *case.assisting_unit_ids]
        caller.require_case(source_system=case.source_system, unit_ids=units, place_code=case.town_code)

    await supervision.check(case_id, may_command)


@router.get("", response_model=CasePage)
async def list_cases(
    supervision: Supervision,
    caller: ListReader,
    status: CaseStatus | None = None,
    town_code: Annotated[str | None, Query(max_length=32)] = None,
    unit_id: Annotated[str | None, Query(max_length=64, description="the lead or an assisting unit")] = None,
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    returned_more_than_once: Annotated[
        bool | None, Query(description="true: returned twice or more (退单拉锯); false: at most once")
    ] = None,
    overdue: Annotated[bool | None, Query(description="true: a clock counting now is past its deadline")] = None,
    notice: Annotated[
        str | None,
        Query(
            max_length=32,
            description="the highest rung reached by a clock still counting: warning, overdue, yellow, red",
        ),
    ] = None,
    level: Annotated[HandlingLevel | None, Query(description="the level that highest notice is addressed to")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: PageOffset = 0,
) -> CasePage:
    """Cases, most recently changed first, filtered by status, town, unit, campaign, returns, deadline and notices.

    A unit lists its own cases, a supervisor scoped to a town that town's (403 for another's)."""
    if caller.role is Role.UNIT:
        caller.require_unit([unit_id or caller.unit_id])
        unit_id = caller.unit_id
    return await queries.list_cases(
        supervision.database,
        supervision.clock.now(),
        status=status.value if status else None,
        town_code=caller.narrowed_to_region(town_code),
        unit_id=unit_id,
        campaign_id=campaign_id,
        returned_more_than_once=returned_more_than_once,
        overdue=overdue,
        notice=notice,
        level=level,
        limit=limit,
        offset=offset,
    )


AsOf = Annotated[
    IsoDateTime | None,
    Query(
        description="a time with its offset (e.g. 2026-11-27T09:30:00+08:00): the case as its events up to then "
        "made it; 404 when it had none by then"
    ),
]


class TimelineFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


@router.get("/{case_id}", response_model=CaseView)
async def read_case(case_id: UUID, supervision: Supervision, caller: CaseReader, as_of: AsOf = None) -> CaseView:
    """Where the case stands, who holds it, how it got there, and where its feedback stands.

    With ``as_of``: the case folded from its events up to that time, its clocks' time left or overdue
    as they stood then (feedback queued but not yet attempted is not shown: no event records it).
    """
    view = await _require_case_access(supervision, caller, case_id)
    if as_of is None:
        return view
    return await queries.case_as_of(
        supervision.database, case_id, as_of, supervision.deps.rules.reference.escalation_ladder
    )


@router.get(
    "/{case_id}/timeline",
    response_model=CaseTimeline,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def read_timeline(
    case_id: UUID,
    supervision: Supervision,
    caller: TimelineReader,
    request: Request,
    output: Annotated[
        TimelineFormat,
        Query(alias="format", description="json (the default), or text: one line per event, for a terminal"),
    ] = TimelineFormat.JSON,
    as_of: AsOf = None,
) -> CaseTimeline | PlainTextResponse:
    """Every event of the case in causal order: who acted, what caused each and how deep in the chain it
    sits; the status they lead to and how long each stage took in its latest round.

    ``format=text`` answers the same as plain text; ``as_of`` keeps the events that occurred by then.
    The reporter's name and phone are whole for the reporting system, the case's units and its
    region's supervisors (each such read is recorded for the auditor), masked for operators.
    """
    view = await _require_case_access(supervision, caller, case_id)
    timeline = build_timeline(case_id, await queries.events_of(supervision.database, case_id, as_of))
    if holds_personal_data(timeline):
        entitled = may_see_personal_data(
            caller, source_system=view.source_system, unit_ids=_units_of(view), place_code=view.town_code
        )
        if entitled:
            await record_read(supervision.database, caller, case_id, request)
        else:
            timeline = with_personal_data_masked(timeline)
    if output is TimelineFormat.TEXT:
        return PlainTextResponse(render_text(timeline))
    return timeline


@router.post("/{case_id}/verification", response_model=CaseView)
async def verify_result(
    case_id: UUID, body: VerificationIn, supervision: Supervision, correlation_id: CorrelationId, caller: Supervisor
) -> CaseView:
    """Verify the unit's reported result (核查); failing sends the case back for rework."""
    await _require_command_access(supervision, caller, case_id)
    command = VerifyResult(
        case_id=case_id,
        passed=body.passed,
        by=body.by,
        note=body.note,
        now=supervision.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: CaseView = await supervision.handle(command)
    return view


@router.post("/{case_id}/evaluation", response_model=CaseView)
async def evaluate_handling(
    case_id: UUID, body: EvaluationIn, supervision: Supervision, correlation_id: CorrelationId, caller: Evaluator
) -> CaseView:
    """The citizen's evaluation (回访评价); satisfied or basically satisfied closes the case, unsatisfied
    reopens it (重办). Posted by a supervisor, or by the source system the citizen answered."""
    await _require_command_access(supervision, caller, case_id)
    command = EvaluateHandling(
        case_id=case_id,
        rating=body.rating,
        comment=body.comment,
        now=supervision.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: CaseView = await supervision.handle(command)
    return view


@router.post("/{case_id}/urge", response_model=CaseView)
async def urge_case(
    case_id: UUID, body: UrgingIn, supervision: Supervision, correlation_id: CorrelationId, caller: Supervisor
) -> CaseView:
    """Urge the unit holding the case (催办), at any time while the case is open."""
    await _require_command_access(supervision, caller, case_id)
    command = UrgeCase(
        case_id=case_id,
        by=body.by,
        note=body.note,
        now=supervision.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: CaseView = await supervision.handle(command)
    return view


@router.post("/{case_id}/extension/decision", response_model=CaseView)
async def decide_on_extension(
    case_id: UUID,
    body: ExtensionDecisionIn,
    supervision: Supervision,
    correlation_id: CorrelationId,
    caller: Supervisor,
) -> CaseView:
    """Approve or refuse the unit's extension request (延期审批); approval moves the handling deadline."""
    await _require_command_access(supervision, caller, case_id)
    command = DecideExtension(
        case_id=case_id,
        approved=body.approved,
        by=body.by,
        note=body.note,
        due_at=body.due_at,
        now=supervision.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view: CaseView = await supervision.handle(command)
    return view


RegionCode = Annotated[str, Path(pattern=r"^\d{6}(\d{3})?$", description="the district's code or a town's")]


@region_router.post("/{region_code}/mode", response_model=RegionModeOut)
async def switch_region_mode(
    region_code: RegionCode,
    body: RegionModeIn,
    supervision: Supervision,
    correlation_id: CorrelationId,
    caller: Supervisor,
) -> RegionModeOut:
    """Switch a town or the district into emergency mode (平战转换) or back to normal; its open cases
    move onto the emergency SLA profile (or back) at once. Switching to the mode it is in changes nothing.
    A supervisor switches only within their region (a town's supervisor: that town)."""
    caller.require_region(region_code)
    command = SwitchRegionMode(
        region_code=region_code,
        mode=body.mode,
        by=body.by,
        reason=body.reason,
        now=supervision.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    view = await commands.switch_region_mode(supervision.handle, supervision.deps.store, command)
    return RegionModeOut.model_validate(view, from_attributes=True)


@region_router.get("/{region_code}/mode", response_model=RegionModeOut)
async def read_region_mode(region_code: RegionCode, supervision: Supervision, _: Caller) -> RegionModeOut:
    """The mode a town or the district is in."""
    level = _region_level(supervision, region_code)
    mode, switched_at, switched_by = await queries.region_mode(supervision.database, region_code)
    view = RegionModeView(region_code, level, mode, switched_at, switched_by)
    return RegionModeOut.model_validate(view, from_attributes=True)


def _region_level(supervision: Supervision, region_code: str) -> str:
    reference = supervision.reference
    if region_code == reference.district.code:
        return "district"
    if any(town.code == region_code for town in reference.towns):
        return "town"
    raise commands.UnknownRegion(region_code)


@report_router.get("/daily", response_model=DailyReportOut)
async def daily_report(
    supervision: Supervision,
    caller: Supervisor,
    date: Annotated[IsoDate, Query(description="the day, region time (YYYY-MM-DD)")],
    town_code: Annotated[str | None, Query(max_length=32)] = None,
    unit_id: Annotated[str | None, Query(max_length=64, description="the lead unit at the end of the day")] = None,
) -> DailyReportOut:
    """The daily report (日报告), computed from the events: the same for a past day whenever it is asked."""
    town = caller.narrowed_to_region(town_code)
    start = dt.datetime.combine(date, dt.time(0), tzinfo=REGION_TIMEZONE)
    end = start + dt.timedelta(days=1)
    ladder = supervision.deps.rules.reference.escalation_ladder
    overdue_rung = next((rung.rung for rung in ladder.rungs if rung.at_share >= 1), "overdue")
    folded = await queries.cases_of_the_day(supervision.database, date)
    report = report_of_the_day(date, start, end, folded, town_code=town, unit_id=unit_id, overdue_rung=overdue_rung)
    complete = supervision.clock.now() >= end
    return DailyReportOut(
        **{name: getattr(report, name) for name in DailyReportOut.model_fields if name != "complete"},
        complete=complete,
    )
