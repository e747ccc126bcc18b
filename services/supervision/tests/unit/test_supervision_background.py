"""The parts of the background jobs that need neither broker nor database: the round loop and the
callback adapter (answered by an httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import suppress

import httpx
import pytest

from caseloop_events.contracts.reference import default_reference_dir, load_reference_data
from caseloop_events.runtime.service import run_periodically
from caseloop_events.testing.fixtures import eventually
from caseloop_supervision.adapters.callbacks import post_feedback
from caseloop_supervision.app import warn_about_the_calendar

DELIVERY = uuid.uuid4()
BODY = json.dumps({"case_id": str(uuid.uuid4()), "status": "verified"})


async def test_a_round_that_fails_is_logged_and_the_job_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []

    async def step() -> int:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("database unavailable")
        return 0

    job = asyncio.create_task(run_periodically("auto-closure", 0.01, step))
    try:
        await eventually(lambda: len(rounds) >= 3, timeout=5)
    finally:
        job.cancel()
        with suppress(asyncio.CancelledError):
            await job
    assert "auto-closure: this round failed" in caplog.text
    assert "database unavailable" in caplog.text


async def test_a_callback_gets_the_body_the_idempotency_key_and_the_event_type() -> None:
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        outcome = await post_feedback(
            http, "http://source.example/cb", delivery_id=DELIVERY, event_type="case.closed", body=BODY, attempt=3
        )
    assert outcome.delivered
    assert outcome.status_code == 202
    [request] = seen
    assert request.method == "POST"
    assert request.content == BODY.encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == str(DELIVERY)
    assert request.headers["X-Caseloop-Event-Type"] == "case.closed"
    assert request.headers["X-Caseloop-Delivery-Attempt"] == "3"


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ReadTimeout("timed out"), "ReadTimeout"),
        (httpx.ConnectError("connection refused"), "ConnectError"),
    ],
)
async def test_a_callback_that_times_out_or_cannot_be_reached_is_a_failed_attempt(
    failure: httpx.HTTPError, expected: str
) -> None:
    def receiver(request: httpx.Request) -> httpx.Response:
        raise failure

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        outcome = await post_feedback(
            http, "http://source.example/cb", delivery_id=DELIVERY, event_type="case.verified", body=BODY, attempt=1
        )
    assert not outcome.delivered
    assert outcome.status_code is None
    assert outcome.error is not None
    assert outcome.error.startswith(expected)


async def test_a_callback_url_that_is_not_http_is_a_failed_attempt_not_a_crash() -> None:
    async with httpx.AsyncClient() as http:
        outcome = await post_feedback(
            http, "ftp://source.example/cb", delivery_id=DELIVERY, event_type="case.verified", body=BODY, attempt=1
        )
    assert outcome.error is not None
    assert outcome.error.startswith("UnsupportedProtocol")


async def test_a_non_2xx_answer_is_not_a_delivery() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(302))) as http:
        outcome = await post_feedback(
            http, "http://source.example/cb", delivery_id=DELIVERY, event_type="case.verified", body=BODY, attempt=1
        )
    assert not outcome.delivered
    assert outcome.status_code == 302


def test_supervision_warns_at_start_when_the_calendar_lacks_next_year_or_has_it_only_provisionally(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = load_reference_data(default_reference_dir()).calendar
    with caplog.at_level("WARNING"):
        warn_about_the_calendar(calendar, 2026)
    assert [r.getMessage()[:40] for r in caplog.records] == ["calendar.json's 2027 holidays are provis"]
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_about_the_calendar(calendar, 2027)
    assert "no holidays for 2028" in caplog.text
