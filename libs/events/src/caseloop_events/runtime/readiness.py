"""``GET /readyz``: whether the service can do its work now — its database answers ``SELECT 1`` and
its Kafka broker answers a metadata request (ADR 0017).

Kubernetes sends no traffic to a replica that is not ready, and restarts none for it: that is the
liveness probe's ``/healthz``, which says the process is up. The answer is kept for a moment
(``KEPT_FOR``), and probes that come meanwhile share one check, so probes from every node never
make a round trip each to the database and the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

#: How long an answer is given again without checking.
KEPT_FOR = 1.5
#: How long one dependency may take to answer before it counts as not answering: a broker or a
#: database that is gone is often not refused but silent, and a probe must answer in time.
ANSWER_WITHIN = 2.0

#: A check of one dependency: returns when it answers, raises when it does not.
DependencyCheck = Callable[[], Awaitable[Any]]


class Readiness:
    """Checks each dependency at most once per ``kept_for`` seconds; answers with what failed."""

    def __init__(
        self,
        checks: Mapping[str, DependencyCheck],
        *,
        kept_for: float = KEPT_FOR,
        answer_within: float = ANSWER_WITHIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._kept_for = kept_for
        self._answer_within = answer_within
        self._clock = clock
        self._kept: tuple[float, dict[str, Any]] | None = None
        self._checking = asyncio.Lock()

    async def report(self) -> dict[str, Any]:
        """``{"status": "ready" | "not ready", "<dependency>": "ok" | "unavailable: ...", "failed": [...]}``."""
        async with self._checking:
            if self._kept is not None and self._clock() - self._kept[0] < self._kept_for:
                return self._kept[1]
            names = list(self._checks)
            outcomes = await asyncio.gather(*(self._check(self._checks[name]) for name in names))
            report: dict[str, Any] = dict(zip(names, outcomes, strict=True))
            failed = [name for name, outcome in report.items() if outcome != "ok"]
            report = {"status": "not ready" if failed else "ready", **report, "failed": failed}
            self._kept = (self._clock(), report)
            return report

    async def _check(self, check: DependencyCheck) -> str:
        try:
            async with asyncio.timeout(self._answer_within):
                await check()
        except TimeoutError:
            return f"unavailable: no answer within {self._answer_within:g}s"
        except Exception as error:  # whatever the failure, the probe reports it, it does not raise
            return f"unavailable: {error.__class__.__name__}"
        return "ok"


def readiness_router(readiness: Readiness) -> APIRouter:
    """``GET /readyz``: 200 when every dependency answers, else 503 naming those that did not. Open
    to probes, like ``/healthz``; left out of the OpenAPI document (not part of the API)."""
    router = APIRouter()

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        report = await readiness.report()
        return JSONResponse(report, status_code=503 if report["failed"] else 200)

    return router
