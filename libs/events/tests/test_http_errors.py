"""Errors leave as problem+json: a database that is away or busy is a 503 the client may retry,
anything else unexpected a 500 that says nothing of the cause."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, OperationalError

from caseloop_events.runtime.http import PROBLEM_JSON, RETRY_AFTER_SECONDS, install_error_handlers


class _Deadlock(Exception):
    sqlstate = "40P01"


def an_app_whose_route_raises(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    return app


async def answer_of(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/fails")


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, ConnectionResetError("the server closed the connection")),
        DBAPIError("UPDATE cases", {}, _Deadlock("deadlock detected")),
    ],
    ids=["connection lost", "deadlock"],
)
async def test_a_database_away_busy_or_in_a_lost_race_is_a_503_to_retry(error: Exception) -> None:
    answer = await answer_of(an_app_whose_route_raises(error))
    assert answer.status_code == 503
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert answer.json()["title"] == "Service unavailable"


async def test_any_other_unexpected_error_is_a_500_that_tells_nothing_of_its_cause() -> None:
    answer = await answer_of(an_app_whose_route_raises(RuntimeError("secret detail")))
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert "secret detail" not in answer.text
