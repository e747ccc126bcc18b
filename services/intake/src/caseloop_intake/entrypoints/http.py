"""intake's HTTP routes: translate requests into commands and call the handlers."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from caseloop_events.contracts.envelope import Actor, ActorRole
from caseloop_events.contracts.errors import CaseNotFound, InvalidInput
from caseloop_events.contracts.intake import Reporter
from caseloop_events.runtime.auth import Principal, Role, admits
from caseloop_events.runtime.http import CorrelationId, PageOffset
from caseloop_events.runtime.personal_data import masked_reporter, may_see_personal_data, record_read
from caseloop_events.runtime.service import Service, service_of
from caseloop_intake.adapters import idempotency
from caseloop_intake.config import IntakeSettings
from caseloop_intake.domain.model import (
    GRID_SCREENING_SOURCE,
    Hazard,
    IntakeCase,
    KeyClaim,
    LocationGiven,
    MergeCase,
    ReportCase,
    ScreenRound,
    UnmergeCase,
)
from caseloop_intake.entrypoints.schemas import (
    CaseCreate,
    CaseCreated,
    CaseRead,
    CategoryRead,
    DuplicateLinkRead,
    GridPage,
    GridRead,
    MergeCreate,
    MergeRead,
    RejectionRead,
    ScreeningCreate,
    ScreeningRead,
    UnmergeCreate,
)
from caseloop_intake.service_layer.handlers import IntakeDeps, KeyUsedBefore, ReportOutcome, require_known_category

#: The composed intake service: its commands (``handle``), database and dependencies.
Intake = Annotated[Service[IntakeSettings, IntakeDeps, IntakeCase], Depends(service_of)]

router = APIRouter(prefix="/v1", tags=["screening"])

SourceSystem = Annotated[Principal, Depends(admits(Role.SOURCE_SYSTEM))]
Supervisor = Annotated[Principal, Depends(admits(Role.SUPERVISOR))]
CaseReader = Annotated[Principal, Depends(admits(Role.SOURCE_SYSTEM, Role.SUPERVISOR, Role.TRIAGE_OFFICER))]


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="makes the request safe to retry: the same key with the same body answers the first answer "
        "again (kept at least 24 hours, per source system); the same key with another body is 422; while the first "
        "request is still being processed, 409",
    ),
]


@router.post(
    "/cases",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseCreated,
    responses={
        200: {"model": CaseCreated, "description": "the case was reported before: the same case"},
        409: {"description": "a request with the same Idempotency-Key is still being processed"},
    },
)
async def report_case(
    body: CaseCreate,
    intake: Intake,
    correlation_id: CorrelationId,
    response: Response,
    caller: SourceSystem,
    idempotency_key: IdempotencyKey = None,
) -> CaseCreated | JSONResponse:
    """Report a case: accepted for judgment, linked to the open case it repeats, or rejected (and kept).

    The same source_system and external_id always give the same case; an Idempotency-Key makes
    the request itself safe to retry. A source system reports only under its own name (403 else)."""
    caller.require_source_system(body.source_system)
    if idempotency_key is None:
        return await _report(body, intake, correlation_id, response, caller)
    scope, print_ = body.source_system, idempotency.fingerprint(body.model_dump_json().encode())
    # The usual case, a key not seen before, is claimed with what screening reads; a key used
    # before takes the long way: its stored answer, 409 while in flight, 422 for another body.
    claim = KeyClaim(scope, idempotency_key, print_, str(uuid4()), intake.clock.now())
    try:
        created = await _report(body, intake, correlation_id, response, caller, claim)
    except KeyUsedBefore:
        stored = await idempotency.begin(intake.database, scope, idempotency_key, print_, intake.clock.now())
        if stored is not None:
            headers = {"Location": stored.location} if stored.location else None
            return JSONResponse(json.loads(stored.body), status_code=stored.status_code, headers=headers)
        created = await _report_holding_the_key(body, intake, correlation_id, response, caller, scope, idempotency_key)
    except BaseException:
        # Only a request that holds the key frees it: the read claimed it before the failure.
        await idempotency.release(intake.database, scope, idempotency_key)
        raise
    answer = idempotency.StoredAnswer(
        response.status_code or status.HTTP_201_CREATED, created.model_dump_json(), response.headers.get("Location")
    )
    await idempotency.complete(intake.database, scope, idempotency_key, answer, intake.clock.now())
    return created


async def _report_holding_the_key(
    body: CaseCreate,
    intake: Intake,
    correlation_id: UUID,
    response: Response,
    caller: Principal,
    scope: str,
    idempotency_key: str,
) -> CaseCreated:
    """Report with a key ``idempotency.begin`` claimed for this request; a failure frees it."""
    try:
        return await _report(body, intake, correlation_id, response, caller)
    except BaseException:
        await idempotency.release(intake.database, scope, idempotency_key)
        raise


async def _report(
    body: CaseCreate,
    intake: Intake,
    correlation_id: UUID,
    response: Response,
    caller: Principal,
    claim: KeyClaim | None = None,
) -> CaseCreated:
    command = ReportCase(
        source_system=body.source_system,
        external_id=body.external_id,
        title=body.title,
        description=body.description,
        category=body.category,
        location=LocationGiven(body.location.grid_code, body.location.address, body.location.lat, body.location.lon),
        reporter=Reporter(name=body.reporter.name, phone=body.reporter.phone) if body.reporter else None,
        occurred_at=body.occurred_at,
        attachments=tuple(str(url) for url in body.attachments),
        callback_url=str(body.callback_url) if body.callback_url is not None else None,
        # The system reports under its name; the key it used is recorded as the actor's subject.
        reported_by=Actor(id=body.source_system, role=ActorRole.SOURCE_SYSTEM, subject=caller.subject),
        now=intake.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
        claim=claim,
    )
    outcome: ReportOutcome = await intake.handle(command)
    response.headers["Location"] = f"/v1/cases/{outcome.case.case_id}"
    response.status_code = status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK
    return _case_created(outcome.case)


@router.post(
    "/screenings",
    status_code=status.HTTP_201_CREATED,
    response_model=ScreeningRead,
    responses={200: {"model": ScreeningRead, "description": "the round was posted before: the same cases"}},
)
async def screen_round(
    body: ScreeningCreate, intake: Intake, correlation_id: CorrelationId, response: Response, caller: SourceSystem
) -> ScreeningRead:
    """A grid worker's daily screening round (日排查): each hazard is screened like a report of its own.

    201 when any hazard became a new case; the same round again answers 200 with the same cases.
    Posted by the grid workers' app, the source system ``grid-screening``."""
    caller.require_source_system(GRID_SCREENING_SOURCE)
    command = ScreenRound(
        grid_code=body.grid_code,
        worker_id=body.worker_id,
        screened_on=body.screened_on,
        round_id=body.round_id,
        hazards=tuple(
            Hazard(
                title=hazard.title,
                description=hazard.description,
                category=hazard.category,
                address=hazard.address,
                occurred_at=hazard.occurred_at,
                attachments=tuple(str(url) for url in hazard.attachments),
            )
            for hazard in body.hazards
        ),
        now=intake.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    # Every hazard is checked before any is screened, so bad input creates no case; each hazard
    # then is a report of its own, and posting the round again answers with the same cases.
    if intake.reference.place_of(command.grid_code) is None:
        raise InvalidInput("grid_code", f"unknown grid code {command.grid_code!r} (see GET /v1/grids)")
    for index, hazard in enumerate(command.hazards):
        require_known_category(intake.reference, hazard.category, f"hazards.{index}.category")
    outcomes: list[ReportOutcome] = [await intake.handle(report) for report in command.reports()]
    if not any(outcome.created for outcome in outcomes):
        response.status_code = status.HTTP_200_OK
    return ScreeningRead(
        round_id=command.round_key,
        grid_code=command.grid_code,
        worker_id=command.worker_id,
        screened_on=command.screened_on,
        cases=[_case_created(outcome.case) for outcome in outcomes],
    )


@router.get("/cases/{case_id}", response_model=CaseRead)
async def read_case(case_id: UUID, intake: Intake, caller: CaseReader, request: Request) -> CaseRead:
    """What intake holds about a case: the report, and whether it was accepted, rejected, linked or merged.

    A source system reads its own cases, supervisors and triage officers those of their region. The
    reporter's name and phone are whole for the reporting system and supervisors (each such read is
    recorded for the auditor), masked for everyone else."""
    case = await _case(intake, case_id)
    _require_access(caller, case)
    read = _case_read(case)
    if read.reporter is None:
        return read
    if may_see_personal_data(caller, source_system=read.source_system, unit_ids=(), place_code=_town_of(case)):
        await record_read(intake.database, caller, case_id, request)
        return read
    return _reporter_masked(read)


@router.post("/cases/{case_id}/merge", response_model=CaseRead, tags=["supervision"])
async def merge_case(
    case_id: UUID, body: MergeCreate, intake: Intake, correlation_id: CorrelationId, caller: Supervisor
) -> CaseRead:
    """A supervisor merges the case into an accepted, open case it repeats; the merged case stops where it stands."""
    _require_access(caller, await _case(intake, case_id))
    command = MergeCase(
        case_id=case_id,
        into_case_id=body.into_case_id,
        by=body.by,
        reason=body.reason,
        now=intake.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    merged: IntakeCase = await intake.handle(command)
    return _reporter_masked(_case_read(merged))


@router.post("/cases/{case_id}/unmerge", response_model=CaseRead, tags=["supervision"])
async def unmerge_case(
    case_id: UUID, body: UnmergeCreate, intake: Intake, correlation_id: CorrelationId, caller: Supervisor
) -> CaseRead:
    """A supervisor undoes a merge or a duplicate link; an unlinked duplicate is accepted for judgment."""
    _require_access(caller, await _case(intake, case_id))
    command = UnmergeCase(
        case_id=case_id,
        by=body.by,
        reason=body.reason,
        now=intake.clock.now(),
        correlation_id=correlation_id,
        subject=caller.subject,
    )
    unmerged: IntakeCase = await intake.handle(command)
    return _reporter_masked(_case_read(unmerged))


async def _case(intake: Intake, case_id: UUID) -> IntakeCase:
    """The case as its events leave it; 404 for a case intake never screened."""
    uow = intake.unit_of_work()
    await uow.load(case_id, verify=True)
    case = uow.loaded(case_id).state
    if not case.known:
        raise CaseNotFound(case_id)
    return case


def _town_of(case: IntakeCase) -> str | None:
    return case.report.location.town_code if case.report is not None else None


def _require_access(caller: Principal, case: IntakeCase) -> None:
    """403 unless the case is the calling system's own, or lies in the caller's region."""
    told = case.report if case.report is not None else case.rejected
    source_system = told.source_system if told is not None else None
    caller.require_case(source_system=source_system, unit_ids=(), place_code=_town_of(case))


def _reporter_masked(read: CaseRead) -> CaseRead:
    """The case with its reporter's name and phone masked (a command's answer, or a caller who may
    not see them: read the case for them whole)."""
    if read.reporter is None:
        return read
    return read.model_copy(update={"reporter": Reporter.model_validate(masked_reporter(read.reporter.model_dump()))})


def _case_created(case: IntakeCase) -> CaseCreated:
    assert case.case_no is not None
    assert case.status is not None
    return CaseCreated(
        case_id=case.case_id,
        case_no=case.case_no,
        status=case.status,
        rejection=_rejection_read(case),
        duplicate_of=_duplicate_read(case),
    )


def _case_read(case: IntakeCase) -> CaseRead:
    assert case.status is not None
    assert case.case_no is not None
    assert case.screened_at is not None
    # A rejected case keeps what its rejection carries; every other keeps the report, placed.
    report, rejected = case.report, case.rejected
    told = report if report is not None else rejected
    assert told is not None
    return CaseRead(
        case_id=case.case_id,
        case_no=case.case_no,
        status=case.status,
        source_system=told.source_system,
        external_id=told.external_id,
        title=told.title,
        description=told.description,
        reported_category=report.reported_category if report else None,
        location=report.location if report else None,
        address=report.location.address if report else rejected.address if rejected else None,
        reporter=report.reporter if report else None,
        reported_occurred_at=report.reported_occurred_at if report else None,
        attachments=list(report.attachments) if report else [],
        callback_url=report.callback_url if report else None,
        screened_at=case.screened_at,
        accepted_at=case.accepted.accepted_at if case.accepted else None,
        rejection=_rejection_read(case),
        duplicate_of=_duplicate_read(case),
        merged_into=_merge_read(case),
        closed_at=case.closed_at,
    )


def _merge_read(case: IntakeCase) -> MergeRead | None:
    merged = case.merged_into
    if merged is None:
        return None
    return MergeRead(
        case_id=merged.decision.into_case_id,
        case_no=merged.decision.into_case_no,
        merged_by=merged.decision.merged_by,
        reason=merged.decision.reason,
        merged_at=merged.merged_at,
    )


def _rejection_read(case: IntakeCase) -> RejectionRead | None:
    if case.rejected is None:
        return None
    return RejectionRead(reason_code=case.rejected.reason_code, note=case.rejected.note)


def _duplicate_read(case: IntakeCase) -> DuplicateLinkRead | None:
    linked = case.duplicate_of
    if linked is None:
        return None
    return DuplicateLinkRead(
        case_id=linked.original_case_id,
        case_no=linked.original_case_no,
        similarity=linked.similarity,
        reason=linked.reason,
    )


@router.get("/grids", response_model=GridPage, tags=["reference"])
async def list_grids(
    intake: Intake,
    town_code: Annotated[str | None, Query(max_length=32)] = None,
    village_code: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=64, description="part of a grid, group, village or town name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: PageOffset = 0,
) -> GridPage:
    """The grid codes of the region with their group, village, town and district."""
    places = [
        p
        for p in intake.reference.grids.values()
        if (town_code is None or p.town_code == town_code)
        and (village_code is None or p.village_code == village_code)
        and (q is None or any(q in name for name in (p.grid_name, p.group_name, p.village_name, p.town_name)))
    ]
    places.sort(key=lambda p: p.grid_code)
    page = places[offset : offset + limit]
    return GridPage(
        items=[GridRead.model_validate(p.model_dump()) for p in page], total=len(places), limit=limit, offset=offset
    )


@router.get("/categories", response_model=list[CategoryRead], tags=["reference"])
async def list_categories(intake: Intake) -> list[CategoryRead]:
    """The case categories a report may name."""
    return [CategoryRead(code=c.code, name=c.name) for c in intake.reference.categories.values()]
