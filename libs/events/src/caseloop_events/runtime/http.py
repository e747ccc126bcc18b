"""What every service's HTTP API shares: problem+json errors (RFC 9457), credentials and a
per-client rate limit, a body size limit, and health."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caseloop_events.contracts.errors import CaseNotFound, InvalidInput, NotFound, RuleViolation
from caseloop_events.runtime.auth import (
    Forbidden,
    NotAuthenticated,
    TooManyRequests,
)
from caseloop_events.runtime.consumer import is_transient
from caseloop_events.runtime.logs import bind_to_request

log = logging.getLogger(__name__)

#: What a 503 asks the client to wait before trying again.
RETRY_AFTER_SECONDS = 1

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
        if is_transient(error):
            # The database was away, busy, or the transaction lost a race: the transaction that
            # failed was undone, and the same request may be sent again (commands are idempotent).
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
            response = problem(503, "Service unavailable", "the database is unavailable or busy; try again")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
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

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        response = problem(error.status_code, str(error.detail), str(error.detail))
        response.headers.update(error.headers or {})
        if error.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

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


async def correlation_id(x_correlation_id: Annotated[UUID | None, Header()] = None) -> UUID:
    """The request's correlation id: the caller's ``X-Correlation-ID``, or a new one. (Every
    dependency is ``async``: FastAPI runs a plain function in a thread pool, a hop per request.)
    Every line logged for the rest of the request carries it."""
    chosen = x_correlation_id or uuid4()
    bind_to_request(correlation_id=chosen)
    return chosen


async def case_named_in_path(request: Request) -> None:
    """Every line logged for a request whose path names a case (``/cases/{case_id}/...``) carries
    its ``case_id`` (a dependency of every service router)."""
    case_id = request.path_params.get("case_id")
    if case_id is not None:
        bind_to_request(case_id=case_id)


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


# --- Error answers in the OpenAPI document ---------------------------------------------------
# Every error leaves as problem+json (install_error_handlers); the document says so once, here,
# for every route: the statuses any route may answer, and the content of every error status a
# route declares itself.


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ProblemField(BaseModel):
    """One offending input of a 422."""

    field: str = Field(description="where it is, e.g. body.location.grid_code, query.limit")
    message: str
    type: str = Field(description="what is wrong with it, e.g. missing, string_too_short, value_error")


class Problem(BaseModel):
    """An error answer: problem details (RFC 9457), media type application/problem+json."""

    type: str = Field(description="a URI naming the kind of problem; about:blank when the title says it all")
    title: str = Field(description="the kind of problem, the same for every occurrence")
    status: int = Field(ge=400, le=599, description="the HTTP status code")
    detail: str = Field(description="this occurrence of the problem")
    # Absent, never null, when they do not apply: the schema names no default.
    errors: list[ProblemField] | SkipJsonSchema[None] = Field(
        default=None, description="each offending field (422 only)", json_schema_extra=_no_default
    )
    rule: str | SkipJsonSchema[None] = Field(
        default=None, description="the rule the command broke (409 only)", json_schema_extra=_no_default
    )


PROBLEM_CONTENT: dict[str, Any] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problem_response(description: str) -> dict[str, Any]:
    """An error response for a route's or router's ``responses``: problem+json, with the description."""
    return {"description": description, "content": PROBLEM_CONTENT}


#: What every route may answer besides its own responses.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_response("the request body cannot be read as JSON (not UTF-8)"),
    404: problem_response("the case, or another thing the request names, does not exist"),
    409: problem_response("the command does not fit the case's state: the rule it breaks is named"),
    413: problem_response("the request body is larger than the service reads"),
    422: problem_response("the request has invalid fields: each is named"),
    500: problem_response("the request failed unexpectedly; it has been logged"),
    503: problem_response("the database is unavailable or busy, or lost a race with another request: try again"),
}


class ProblemDocumentedAPI(FastAPI):
    """A FastAPI app whose document holds the Problem schema, and gives every error response a
    route declares without content (e.g. ``{409: {"description": ...}}``) the problem+json content."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is not None:
            return self.openapi_schema
        document = super().openapi()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem_schema.pop("$defs", {}))
        schemas["Problem"] = problem_schema
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45" and "content" not in response:
                        response["content"] = PROBLEM_CONTENT
        return document


def allowed_methods(request: Request) -> str:
    """A 405's ``Allow``: every method some route answers on the request's path (RFC 9110). Starlette
    names only the methods of the first route whose path matches, and paths have a route per method."""
    return ", ".join(
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.router.routes
        )
    )


# --- Dates and times in requests -------------------------------------------------------------
# pydantic reads a number, or text of digits, as seconds since 1970 (``"screened_on": 0`` would be
# 1 January 1970), and takes any year from 1 to 9999, where a day's end or a shift to UTC is out of
# range (a 500). The API documents ISO 8601 text (format date, date-time) and takes only that, in
# the years a case can concern.

EARLIEST_YEAR, LATEST_YEAR = 1900, 2999

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _text_not_a_number(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("expected ISO 8601 text, not a number")
    return value


def _within_reach(value: dt.date) -> dt.date:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"expected a year from {EARLIEST_YEAR} to {LATEST_YEAR}")
    return value


#: A date as ``YYYY-MM-DD``, from 1900 to 2999.
IsoDate = Annotated[dt.date, BeforeValidator(_text_not_a_number), AfterValidator(_within_reach)]
#: A date and time with its offset, ISO 8601 (``2026-03-02T09:30:00+08:00``), from 1900 to 2999.
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_text_not_a_number), AfterValidator(_within_reach)]
