"""What every service's HTTP API shares: problem+json errors (RFC 9457), credentials and a
per-client rate limit, a body size limit, and health."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caseloop_events.auth import Authenticator, Forbidden, NotAuthenticated, RateLimiter, TooManyRequests, authenticated
from caseloop_events.errors import CaseNotFound, InvalidInput, NotFound, RuleViolation
from caseloop_events.runtime import ServiceRuntime

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

#: The deepest page a list answers: beyond it the databases' integer types overflow.
MAX_OFFSET = 1_000_000

#: Route parameter alias for a list's offset.
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RequestBody(BaseModel):
    """Base of every request body: unknown fields and control characters are refused (422)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text; no case text needs control characters.
        if isinstance(value, str) and _CONTROL_CHARACTERS.search(value):
            raise ValueError("control characters are not allowed")
        return value


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

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return problem(500, "Internal error", "the request failed unexpectedly; it has been logged")

    async def body_too_large(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, BodyTooLarge)
        return problem(413, "Request body too large", str(error.detail))

    async def not_authenticated(_: Request, error: Exception) -> JSONResponse:
        response = problem(401, "Not authenticated", str(error))
        response.headers["WWW-Authenticate"] = 'Bearer, ApiKey header="X-API-Key"'
        return response

    async def forbidden(_: Request, error: Exception) -> JSONResponse:
        return problem(403, "Forbidden", str(error))

    async def too_many_requests(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, TooManyRequests)
        response = problem(429, "Too many requests", str(error))
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    async def http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem(error.status_code, str(error.detail), str(error.detail))

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(InvalidInput, invalid_input)
    app.add_exception_handler(CaseNotFound, case_not_found)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(RuleViolation, rule_violation)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(TooManyRequests, too_many_requests)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


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


#: The largest request body a service reads unless configured otherwise (CASELOOP_MAX_BODY_BYTES).
DEFAULT_MAX_BODY_BYTES = 1_048_576


class BodyTooLarge(StarletteHTTPException):
    """A streamed request body passed the limit (an HTTP error, so body parsing lets it through)."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


class BodySizeLimit:
    """Refuses a request body larger than ``max_bytes`` with 413 problem+json, before it is read
    whole: at once when Content-Length says so, else as soon as the streamed body passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Raised where the route reads its body: the error handlers answer 413.
                raise BodyTooLarge(self._detail())
            return message

        await self.app(scope, limited, send)

    def _detail(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    def _too_large(self) -> JSONResponse:
        return problem(413, "Request body too large", self._detail())


#: What every route but /healthz may answer besides its own responses.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no credentials, or credentials that are not valid"},
    403: {"description": "the caller's role, system, unit or region may not do this"},
    429: {"description": "the client's rate limit is used up: see Retry-After"},
}


def service_app(
    *,
    title: str,
    summary: str,
    runtime: ServiceRuntime,
    services: object,
    routers: Sequence[APIRouter],
    authenticator: Authenticator,
    rate_limiter: RateLimiter,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """A service's FastAPI app: its runtime as lifespan, its handlers' dependencies in
    ``app.state.services``, problem+json errors, a body size limit, ``/healthz`` open to probes,
    and its routers behind credentials and the per-client rate limit."""
    app = FastAPI(title=title, summary=summary, version="0.1.0", lifespan=runtime.lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.state.services = services
    app.state.runtime = runtime
    app.state.authenticator = authenticator
    app.state.rate_limiter = rate_limiter
    install_error_handlers(app)
    app.include_router(health_router(runtime.health))
    for router in routers:
        app.include_router(router, dependencies=[Depends(authenticated)], responses=COMMON_RESPONSES)
    return app
