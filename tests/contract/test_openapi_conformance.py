"""Every service answers as its OpenAPI document says, whatever it is sent (Schemathesis).

Each service runs in-process, built by its composition root, with a real broker and a SQLite
database. Schemathesis reads the service's ``/openapi.json`` and sends every operation:

- the schema's examples, what they leave out generated (the examples phase);
- boundary values, every constraint broken one at a time, methods the path does not have (the
  coverage phase);
- requests Hypothesis generates, valid and invalid (fuzzing), then again on a case the service
  holds, so that the answers about a real case are checked too, not only 404s.

Every answer must be no 5xx, with a documented status code, content type, headers and body;
invalid input must be refused with a 4xx. The generation is deterministic: the same requests in
the same order every run, so what fails once fails every time.

Schemathesis's pytest plugin is not used: with pytest 9.2 its fixture-made schemas fail
(``Function._nodeid`` is gone) and its items lose the operation from their node id. The cases come
from the same public parts (``get_strategies_from_examples``, ``iter_coverage_cases``,
``APIOperation.as_strategy``, ``Case.validate_response``), so one failing operation does not hide
the others' failures.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema

from caseloop_dispatch.app import create_app as create_dispatch
from caseloop_dispatch.config import DispatchSettings
from caseloop_events.contracts.clock import ManualClock
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import (
    AssignmentRoute,
    CaseAcknowledged,
    CaseAssigned,
    CaseResultReported,
)
from caseloop_events.contracts.envelope import Envelope, EventPayload, Producer
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.testing.fixtures import causal_chain, development_key_for, eventually, publish
from caseloop_intake.app import create_app as create_intake
from caseloop_intake.config import IntakeSettings
from caseloop_supervision.app import create_app as create_supervision
from caseloop_supervision.config import SupervisionSettings
from caseloop_triage.app import create_app as create_triage
from caseloop_triage.config import TriageSettings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE_URL = "http://testserver"
GRID = "3301100010010101"
UNIT = "U-TRANSPORT"
SOURCE_SYSTEM = "hotline-12345"
#: Requests Hypothesis generates per operation and generation mode (valid, invalid) in each pass.
FUZZ_EXAMPLES = 20

# Schemathesis's own strategies touch `random`; Hypothesis seeds it for each example, so the
# requests stay the same from run to run (the order and bodies of every request were compared).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)


def credentials_for(service: str, method: str, path: str) -> dict[str, str]:
    """The headers that authenticate a request to ``method path`` of ``service``; ``path`` as the
    OpenAPI document names it (``/v1/cases/{case_id}/acknowledge``) or as sent.

    Every request of this test goes through here, generated or not. For now: the development
    profile's keys (``caseloop_events.testing`` starts services in it), of the caller who would
    send the request in real use — the hotline for reports, the unit the seeded case is assigned
    to for unit commands, a triage officer for judgments, a district supervisor for the rest.
    """
    if path == "/v1/units/{unit_id}/cases":
        return {"X-API-Key": "dev:supervisor"}  # a unit reads only its own inbox, a supervisor any
    return {"X-API-Key": development_key_for(method, path, {"source_system": SOURCE_SYSTEM, "unit_id": UNIT})}


Operation = APIOperation[Any, Any, Any, Any]
GeneratedCase = Case[Any]
AppFactory = Callable[[dict[str, Any], KafkaSettings, ManualClock], FastAPI]

SERVICES: dict[str, AppFactory] = {
    "intake": lambda given, kafka, clock: create_intake(IntakeSettings(**given), kafka, clock),
    "triage": lambda given, kafka, clock: create_triage(TriageSettings(**given), kafka, clock),
    "dispatch": lambda given, kafka, clock: create_dispatch(DispatchSettings(**given), kafka, clock),
    "supervision": lambda given, kafka, clock: create_supervision(SupervisionSettings(**given), kafka, clock),
}

#: What Schemathesis checks on every answer.
CONFIG = schemathesis.Config.from_dict(
    {
        # Credentials come from credentials_for, not generated from the security schemes.
        "generation": {"deterministic": True, "database": "none", "with-security-parameters": False},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
            "missing_required_header": {"enabled": True},
            "unsupported_method": {"enabled": True},
            "allow_header_conformance": {"enabled": True},
        },
    }
)

#: The arguments of ``requests.Request`` that Schemathesis fills in for a case.
REQUEST_ARGUMENTS = ("method", "url", "headers", "files", "data", "params", "auth", "cookies", "json")


@dataclass
class Findings:
    """Check failures: the first example of each kind on each operation."""

    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, operation: Operation, failures: FailureGroup) -> None:
        for failure in failures.exceptions:
            self.examples.setdefault((operation.label, f"{failure.code} {failure.title}"), str(failures))

    def report(self) -> str:
        kinds = "\n".join(f"  {label}: {kind}" for label, kind in self.examples)
        examples = "\n".join(f"=== {label}: {kind}\n{example}" for (label, kind), example in self.examples.items())
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        return f"{len(self.examples)} kinds of failure; answers by status {answers}:\n{kinds}\n\n{examples}"

    def succeeded(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)


def latin_1(value: str | bytes) -> bytes:
    """A header value as it goes over the wire."""
    return value if isinstance(value, bytes) else value.encode("latin-1")


@dataclass
class RunningService:
    """One service with its consumer, relay and background jobs running on the portal's event loop."""

    name: str
    app: FastAPI
    kafka: KafkaSettings
    portal: BlockingPortal
    client: httpx.AsyncClient
    findings: Findings = field(default_factory=Findings)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = credentials_for(self.name, method, path)
        return self.portal.call(partial(self.client.request, method, path, headers=headers, **kwargs))

    def call_and_validate(self, case: GeneratedCase) -> None:
        """Send the case as Schemathesis serialises it, with the credentials it needs, and check the answer."""
        extra_headers = credentials_for(self.name, case.method, case.path)
        arguments = case.as_transport_kwargs(base_url=BASE_URL, headers=extra_headers)
        wire = requests.Request(**{name: arguments[name] for name in REQUEST_ARGUMENTS if name in arguments}).prepare()
        assert wire.method is not None
        assert wire.url is not None
        raw_body = wire.body
        body = raw_body.encode() if isinstance(raw_body, str) else raw_body
        assert body is None or isinstance(body, bytes)
        headers = [(name.encode("latin-1"), latin_1(value)) for name, value in wire.headers.items()]
        send = partial(self.client.request, wire.method, wire.url, headers=headers, content=body)
        response = self.portal.call(send)
        self.findings.statuses[response.status_code] += 1
        try:
            case.validate_response(response, headers=extra_headers)
        except FailureGroup as failures:
            self.findings.add(case.operation, failures)

    async def relay_is_idle(self) -> bool:
        relay = self.app.state.service.relay
        return relay is not None and await relay.pending() == 0


@pytest.fixture(params=list(SERVICES))
def running_service(
    request: pytest.FixtureRequest, kafka_settings: KafkaSettings, tmp_path: Path
) -> Iterator[RunningService]:
    """The service's app, its lifespan started, on an event loop of its own (a portal's thread):
    Schemathesis and Hypothesis drive the test synchronously, as a client of a server."""
    name: str = request.param
    given = {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'service.db'}", "CASELOOP_DATA_DIR": tmp_path}
    app = SERVICES[name](given, kafka_settings, ManualClock(NOW))
    # A 500 is an answer to check, as from a server, not an exception in the test.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        portal.wrap_async_context_manager(httpx.AsyncClient(transport=transport, base_url=BASE_URL)) as client,
    ):
        service = RunningService(name, app, kafka_settings, portal, client)
        yield service
        # Stop only once the relay is idle: on Python 3.11 its asyncio.wait_for swallows a
        # cancellation that lands just after a commit woke it, and the shutdown never ends.
        portal.call(eventually, service.relay_is_idle)


# A case the service holds, so that generated requests about it reach past the 404.

SEEDED_CASE = uuid.uuid5(uuid.NAMESPACE_URL, "caseloop:tests/contract/seeded-case")

#: Where each service shows that it holds a case.
CASE_SEEN_AT = {
    "triage": "/v1/cases/{}/judgment",
    "dispatch": "/v1/cases/{}/assignment",
    "supervision": "/v1/cases/{}",
}


def a_handled_case() -> list[Envelope]:
    """One case accepted, judged, assigned, acknowledged and reported handled, as the services tell it."""
    payloads: list[EventPayload] = [
        CaseAccepted(
            case_no="CL202603020000001",
            source_system=SOURCE_SYSTEM,
            external_id="CONTRACT-SEEDED-1",
            title="人行道塌陷",
            description="柳岸社区门口人行道塌了一个坑",
            location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
            accepted_at=NOW - timedelta(hours=1),
        ),
        CaseJudged(
            category="road_damage",
            risk_level=3,
            handling_level=HandlingLevel.TOWN,
            sla_tier=SlaTierName.GENERAL,
            judged_by=JudgedBy.RULES,
            confidence=0.95,
        ),
        CaseAssigned(
            unit_id=UNIT,
            unit_name="交通运输局",
            town_code=GRID[:9],
            route=AssignmentRoute.RESPONSIBILITY_LIST,
            reason="the responsibility list",
        ),
        CaseAcknowledged(unit_id=UNIT, acknowledged_by="wang.wei"),
        CaseResultReported(unit_id=UNIT, reported_by="wang.wei", summary="已修复"),
    ]
    return causal_chain(SEEDED_CASE, payloads, NOW - timedelta(hours=1), timedelta(minutes=1))


def seed_a_case(service: RunningService) -> str:
    """Give the service a case as it would get one, and return its id."""
    if service.name == "intake":
        report = {
            "source_system": SOURCE_SYSTEM,
            "external_id": "CONTRACT-SEEDED-1",
            "title": "人行道塌陷",
            "description": "柳岸社区门口人行道塌了一个坑",
            "location": {"grid_code": GRID},
        }
        created = service.request("POST", "/v1/cases", json=report)
        assert created.status_code == 201, created.text
        case_id: str = created.json()["case_id"]
        return case_id
    # The other services' events about the case; the service decides its own.
    told = [event for event in a_handled_case() if event.producer != Producer(service.name)]
    for event in told:
        topic = service.kafka.topic_of(event.producer)
        service.portal.call(publish, service.kafka.kafka_bootstrap_servers, topic, event)
    path = CASE_SEEN_AT[service.name].format(SEEDED_CASE)

    async def case_is_held() -> bool:
        response = await service.client.get(path, headers=credentials_for(service.name, "GET", path))
        return response.status_code == 200

    service.portal.call(eventually, case_is_held)
    return str(SEEDED_CASE)


# Schemathesis's phases, the same as its pytest plugin and its command line run.


def served_schema(service: RunningService) -> BaseSchema:
    """The service's OpenAPI document as the service serves it."""
    response = service.request("GET", "/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return schemathesis.openapi.from_dict(document, config=CONFIG)


def operations(schema: BaseSchema) -> Iterator[Operation]:
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise result.err()
        yield result.ok()


def example_strategies(operation: Operation, **fixed: Any) -> list[SearchStrategy[GeneratedCase]]:
    """The examples phase: the schema's examples, whatever they leave out generated."""
    return list(operation.get_strategies_from_examples(fill_missing=True, **fixed))


def coverage_cases(schema: BaseSchema, operation: Operation) -> Iterator[GeneratedCase]:
    """The coverage phase: boundary values, each constraint broken, methods the path does not have."""
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    return schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode), generation_config=generation)


def fuzzing_strategies(operation: Operation, **fixed: Any) -> list[SearchStrategy[GeneratedCase]]:
    """The fuzzing phase: valid requests, and invalid ones where there is input left to spoil."""
    fixed_names = set(fixed.get("path_parameters", {}))
    spoilable = operation.body or any(p.name not in fixed_names for p in operation.iter_parameters())
    modes = list(GenerationMode) if spoilable else [GenerationMode.POSITIVE]
    return [operation.as_strategy(generation_mode=mode, **fixed) for mode in modes]


def send_drawn(service: RunningService, strategy: SearchStrategy[GeneratedCase], examples: int) -> None:
    """Send ``examples`` cases Hypothesis draws from the strategy, derandomized: the same ones every run."""

    # Nothing fails inside the Hypothesis test (the findings collect the failures), so there is no
    # shrinking and no replay: every run sends the same requests, and all of them.
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=strategy)
    def send(case: GeneratedCase) -> None:
        service.call_and_validate(case)

    send()


def test_every_answer_is_documented_and_no_request_breaks_the_service(running_service: RunningService) -> None:
    schema = served_schema(running_service)
    held_case = seed_a_case(running_service)
    for operation in operations(schema):
        for strategy in example_strategies(operation):
            send_drawn(running_service, strategy, examples=1)
        for case in coverage_cases(schema, operation):
            running_service.call_and_validate(case)
        for strategy in fuzzing_strategies(operation):
            send_drawn(running_service, strategy, examples=FUZZ_EXAMPLES)
        if "{case_id}" in operation.path:
            on_the_case = {"path_parameters": {"case_id": held_case}}
            for strategy in example_strategies(operation, **on_the_case):
                send_drawn(running_service, strategy, examples=1)
            for strategy in fuzzing_strategies(operation, **on_the_case):
                send_drawn(running_service, strategy, examples=FUZZ_EXAMPLES)
    findings = running_service.findings
    assert not findings.examples, findings.report()
    # Not only refusals were checked: the credentials and the seeded case let requests through.
    assert findings.succeeded() > 0, findings.report()
