"""What every service's HTTP API shares: problem+json errors (RFC 9457) and health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from caseloop_events.errors import CaseNotFound, InvalidInput, NotFound, RuleViolation
from caseloop_events.runtime import ServiceRuntime

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as problem+json; a 422 names each offending field."""

    async def invalid_request(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        fields = [
            {"field": ".".join(str(part) for part in item["loc"]), "message": item["msg"], "type": item["type"]}
            for item in error.errors()
        ]
        return problem(422, "Invalid request", "the request has invalid fields", errors=fields)

    async def invalid_input(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, InvalidInput)
        fields = [{"field": error.field, "message": error.message, "type": "value_error"}]
        return problem(422, "Invalid request", str(error), errors=fields)

    async def case_not_found(_: Request, error: Exception) -> JSONResponse:
        return problem(404, "Case not found", str(error))

    async def not_found(_: Request, error: Exception) -> JSONResponse:
        return problem(404, "Not found", str(error))

    async def rule_violation(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RuleViolation)
        return problem(409, "Command does not fit the case's state", error.reason, rule=error.rule)

    async def http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem(error.status_code, str(error.detail), str(error.detail))

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(CaseNotFound, case_not_found)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(RuleViolation, rule_violation)
    app.add_exception_handler(StarletteHTTPException, http_error)


HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


def health_router(check: HealthCheck) -> APIRouter:
    """``GET /healthz``: 200 when the database answers, with relay and consumer figures."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        report = await check()
        return JSONResponse(report, status_code=200 if report.get("status") == "ok" else 503)

    return router


def correlation_id(x_correlation_id: Annotated[UUID | None, Header()] = None) -> UUID:
    """The request's correlation id: the caller's ``X-Correlation-ID``, or a new one."""
    return x_correlation_id or uuid4()


#: Route parameter alias: the correlation id of the request being handled.
CorrelationId = Annotated[UUID, Depends(correlation_id)]


def service_app(
    *, title: str, summary: str, runtime: ServiceRuntime, services: object, routers: Sequence[APIRouter]
) -> FastAPI:
    """A service's FastAPI app: its runtime as lifespan, its handlers' dependencies in
    ``app.state.services``, problem+json errors, ``/healthz`` and its routers."""
    app = FastAPI(title=title, summary=summary, version="0.1.0", lifespan=runtime.lifespan)
    app.state.services = services
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(health_router(runtime.health))
    for router in routers:
        app.include_router(router)
    return app
