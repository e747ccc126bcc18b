# ruff: noqa: E501  (the route table reads best one route per line)
"""Who may do what, over real sockets, with real credentials: the four services on the production
profile, API keys from a hashed keys file and bearer JWTs of an identity provider.

The role matrix tries every route of every service with every kind of caller — and with another
system's, unit's and town's callers on the same case: 401 without or with bad credentials, 403 for
the wrong role or object, anything else when admitted (the command may still not fit the case).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.contracts.envelope import Producer
from caseloop_events.runtime.auth import key_digest
from caseloop_events.runtime.topics import deadletter_topic, topic_of
from caseloop_events.testing.broker import BrokerKind, free_port
from caseloop_events.testing.fixtures import publish, read_topic
from tests.e2e.loop_driver import Endpoints, grid_codes, poll, report_case

pytestmark = pytest.mark.e2e

ISSUER = "https://idp.example.gov.cn/realms/district"
AUDIENCE = "caseloop"
SOURCE = "hotline-12345"

#: Callers by name: (credential kind, claims). Keys go into the keys file; tokens are signed by the
#: identity provider's key. The case's unit and town are filled in once the case is assigned.
CALLERS: dict[str, tuple[str, dict[str, str]]] = {
    "source_own": ("key", {"role": "source_system", "source_system": SOURCE}),
    "source_other": ("key", {"role": "source_system", "source_system": "police-110"}),
    "grid_app": ("key", {"role": "source_system", "source_system": "grid-screening"}),
    "unit_own": ("key", {"role": "unit", "unit_id": "{unit}"}),
    "unit_other": ("key", {"role": "unit", "unit_id": "{other_unit}"}),
    "triage": ("jwt", {"role": "triage_officer"}),
    "supervisor": ("jwt", {"role": "supervisor"}),
    "supervisor_town": ("jwt", {"role": "supervisor", "region_code": "{town}"}),
    "supervisor_other_town": ("jwt", {"role": "supervisor", "region_code": "{other_town}"}),
    "operator": ("key", {"role": "operator"}),
    "auditor": ("key", {"role": "auditor"}),
    "monitor": ("key", {"role": "monitor"}),
}
EVERYONE = frozenset(CALLERS)
SUPERVISORS = frozenset({"supervisor", "supervisor_town", "supervisor_other_town"})
#: Who reads a service's Prometheus metrics.
METRICS_READERS = frozenset({"operator", "monitor"})
CASE_SUPERVISORS = frozenset({"supervisor", "supervisor_town"})


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    admitted: frozenset[str]
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None


@dataclass
class World:
    stack: LocalStack
    api: Endpoints
    case_id: str
    unit: str
    other_unit: str
    town: str
    other_town: str
    grid: str
    headers: dict[str, dict[str, str]]


def the_routes(w: World) -> list[Route]:
    """Every route of every service, reads first, commands in the loop's order, those that move the
    case away from its unit last (an admitted command may change the case; the callers stay)."""
    case = f"/v1/cases/{w.case_id}"
    unit_body = {"unit_id": w.unit, "by": "handler-1"}
    report = {
        "source_system": SOURCE,
        "external_id": "ACCESS-NEW-1",
        "title": "路灯不亮",
        "description": "晚上整条路的路灯都不亮",
        "location": {"grid_code": w.grid},
    }
    hazard = {"title": "井盖缺失", "description": "人行道井盖缺失"}
    round_ = {"grid_code": w.grid, "worker_id": "gw-1", "screened_on": "2026-11-27", "hazards": [hazard]}
    audit = "/v1/audit/personal-data-reads"
    return [
        # every service's Prometheus scrape (not in the OpenAPI documents: not part of the API)
        *(Route(service, "GET", "/metrics", METRICS_READERS) for service in SERVICES),
        # intake
        Route("intake", "POST", "/v1/cases", frozenset({"source_own"}), body=report),
        Route("intake", "POST", "/v1/screenings", frozenset({"grid_app"}), body=round_),
        Route("intake", "GET", case, frozenset({"source_own", "triage"}) | CASE_SUPERVISORS),
        Route("intake", "POST", f"{case}/merge", CASE_SUPERVISORS, body={"into_case_id": str(uuid.uuid4()), "by": "s", "reason": "重复"}),
        Route("intake", "POST", f"{case}/unmerge", CASE_SUPERVISORS, body={"by": "s", "reason": "误合并"}),
        Route("intake", "GET", "/v1/grids", EVERYONE),
        Route("intake", "GET", "/v1/categories", EVERYONE),
        Route("intake", "GET", audit, frozenset({"auditor"})),
        # triage
        Route("triage", "GET", f"{case}/judgment", frozenset({"triage"}) | SUPERVISORS),
        Route("triage", "GET", "/v1/review-queue", frozenset({"triage"}) | SUPERVISORS),
        Route("triage", "GET", "/v1/review-queue", frozenset({"triage"}) | CASE_SUPERVISORS, params={"town_code": w.town}),
        # Without a category: admitted callers get 422, so a re-judgment cannot move the case to another unit.
        Route("triage", "POST", f"{case}/judgment", frozenset({"triage"}), body={"by": "t", "reason": "复核"}),
        Route("triage", "GET", audit, frozenset({"auditor"})),
        # dispatch
        Route("dispatch", "GET", f"{case}/assignment", frozenset({"unit_own"}) | CASE_SUPERVISORS),
        Route("dispatch", "GET", f"/v1/units/{w.unit}/cases", frozenset({"unit_own"}) | SUPERVISORS),
        Route("dispatch", "GET", "/v1/units", EVERYONE),
        Route("dispatch", "GET", audit, frozenset({"auditor"})),
        Route("dispatch", "POST", f"{case}/acknowledge", frozenset({"unit_own"}), body=unit_body),
        Route("dispatch", "POST", f"{case}/assignment", CASE_SUPERVISORS, body={"lead_unit_id": w.unit, "assisting_unit_ids": [w.other_unit], "by": "s", "reason": "联合"}),
        Route("dispatch", "POST", f"{case}/extension", frozenset({"unit_own"}), body={**unit_body, "reason": "需要协调", "due_at": "2030-01-01T00:00:00+08:00"}),
        # supervision
        Route("supervision", "GET", "/v1/cases", SUPERVISORS | {"unit_own", "unit_other"}),
        Route("supervision", "GET", "/v1/cases", CASE_SUPERVISORS | {"unit_own", "unit_other"}, params={"town_code": w.town}),
        Route("supervision", "GET", "/v1/cases", SUPERVISORS | {"unit_own"}, params={"unit_id": w.unit}),
        Route("supervision", "GET", case, frozenset({"source_own", "unit_own"}) | CASE_SUPERVISORS),
        Route("supervision", "GET", f"{case}/timeline", frozenset({"source_own", "unit_own", "operator"}) | CASE_SUPERVISORS),
        Route("supervision", "GET", f"/v1/regions/{w.town}/mode", EVERYONE),
        Route("supervision", "POST", f"/v1/regions/{w.town}/mode", CASE_SUPERVISORS, body={"mode": "normal", "by": "s", "reason": "演练"}),
        Route("supervision", "GET", "/v1/reports/daily", SUPERVISORS, params={"date": "2026-11-27"}),
        Route("supervision", "GET", "/v1/reports/daily", CASE_SUPERVISORS, params={"date": "2026-11-27", "town_code": w.town}),
        Route("supervision", "GET", audit, frozenset({"auditor"})),
        Route("supervision", "POST", f"{case}/urge", CASE_SUPERVISORS, body={"by": "s", "note": "请尽快处理"}),
        Route("supervision", "POST", f"{case}/extension/decision", CASE_SUPERVISORS, body={"approved": False, "by": "s"}),
        Route("dispatch", "POST", f"{case}/result", frozenset({"unit_own"}), body={**unit_body, "summary": "已处理"}),
        Route("supervision", "POST", f"{case}/verification", CASE_SUPERVISORS, body={"passed": True, "by": "s"}),
        Route("supervision", "POST", f"{case}/evaluation", frozenset({"source_own"}) | CASE_SUPERVISORS, body={"rating": "satisfied"}),
        Route("dispatch", "POST", f"{case}/transfer", frozenset({"unit_own"}), body={**unit_body, "to_unit_id": "U-NOBODY", "reason": "不属本单位"}),
        Route("dispatch", "POST", f"{case}/return", frozenset({"unit_own"}), body={**unit_body, "reason": "不属本单位职责"}),
    ]  # fmt: skip


def identity_provider(tmp: Path) -> tuple[Callable[[dict[str, Any]], str], Path]:
    """An RSA key pair: a signer for tokens, and the public key file the services are given."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = tmp / "idp.pem"
    public_file.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def sign(claims: dict[str, Any]) -> str:
        now = int(time.time())
        return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600, **claims}, private, "RS256")

    return sign, public_file


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Callable[[dict[str, Any]], str]]:
    tmp = tmp_path_factory.mktemp("credentials")
    sign, public_file = identity_provider(tmp)
    keys_file = tmp / "api-keys.json"
    keys_file.write_text(json.dumps({"keys": []}))
    return keys_file, public_file, sign


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, credentials: tuple[Path, Path, Callable[[dict[str, Any]], str]]
) -> Iterator[LocalStack]:
    keys_file, public_file, _ = credentials
    env = {
        "CASELOOP_PROFILE": "production",
        "CASELOOP_API_KEYS_FILE": str(keys_file),
        "CASELOOP_JWT_ISSUER": ISSUER,
        "CASELOOP_JWT_AUDIENCE": AUDIENCE,
        "CASELOOP_JWT_PUBLIC_KEY_FILE": str(public_file),
        "CASELOOP_JWT_ALGORITHMS": "RS256",
    }
    ports = {name: free_port() for name in SERVICES}
    with LocalStack(tmp_path_factory.mktemp("access"), BrokerKind.NOIDA, ports, extra_env=env) as running:
        yield running


def write_keys(keys_file: Path, entries: list[dict[str, Any]]) -> None:
    keys_file.write_text(json.dumps({"keys": entries}))


def issue_credentials(
    keys_file: Path, sign: Callable[[dict[str, Any]], str], fill: dict[str, str]
) -> dict[str, dict[str, str]]:
    """Each caller's headers; the keys file gets the SHA-256 of each key, never the key."""
    headers: dict[str, dict[str, str]] = {}
    entries = json.loads(keys_file.read_text())["keys"]
    for name, (kind, claims) in CALLERS.items():
        filled = {k: v.format(**fill) for k, v in claims.items()}
        if kind == "key":
            key = f"clk_test_{name}_{uuid.uuid4().hex}"
            entries.append({"id": f"key-{name}", "sha256": key_digest(key), **filled})
            headers[name] = {"X-API-Key": key}
        else:
            headers[name] = {"Authorization": f"Bearer {sign({'sub': f'user-{name}', **filled})}"}
    write_keys(keys_file, entries)
    return headers


@pytest.fixture(scope="module")
def world(stack: LocalStack, credentials: tuple[Path, Path, Callable[[dict[str, Any]], str]]) -> World:
    """One case, reported by the hotline, judged and assigned; callers for its unit and town and others."""
    return asyncio.run(a_world(stack, *credentials))


async def a_world(stack: LocalStack, keys_file: Path, _: Path, sign: Callable[[dict[str, Any]], str]) -> World:
    api = Endpoints.of(stack)
    bootstrap = {"X-API-Key": f"clk_bootstrap_{uuid.uuid4().hex}"}
    entries = [
        {"id": "bootstrap-source", "sha256": key_digest(bootstrap["X-API-Key"]), "role": "source_system", "source_system": SOURCE}
    ]  # fmt: skip
    write_keys(keys_file, entries)
    await asyncio.sleep(1.1)  # the services look at the keys file at most once a second
    async with httpx.AsyncClient(timeout=30.0, headers=bootstrap) as client:
        grids = await grid_codes(client, api, 2)
        created = await report_case(client, api, "ACCESS-1", grids[0], 1)
    supervisor = {"Authorization": f"Bearer {sign({'sub': 'bootstrap-supervisor', 'role': 'supervisor'})}"}
    async with httpx.AsyncClient(timeout=30.0, headers=supervisor) as client:
        case_id = created["case_id"]
        assignment = (
            await poll(
                lambda: client.get(f"{api.dispatch}/v1/cases/{case_id}/assignment"), lambda r: r.status_code == 200
            )
        ).json()
        units = [u["unit_id"] for u in (await client.get(f"{api.dispatch}/v1/units")).json()]
        grid_page = (await client.get(f"{api.intake}/v1/grids", params={"limit": 1000})).json()["items"]
    town = assignment["town_code"]
    fill = {
        "unit": assignment["unit_id"],
        "other_unit": next(u for u in units if u != assignment["unit_id"]),
        "town": town,
        "other_town": next(g["town_code"] for g in grid_page if g["town_code"] != town),
    }
    headers = issue_credentials(keys_file, sign, fill)
    await asyncio.sleep(1.1)
    return World(stack, api, case_id, fill["unit"], fill["other_unit"], town, fill["other_town"], grids[1], headers)


async def test_every_route_admits_exactly_the_roles_and_objects_it_names(world: World) -> None:
    wrong: list[str] = []
    async with httpx.AsyncClient(timeout=30.0) as client:
        for route in the_routes(world):
            url = getattr(world.api, route.service) + route.path
            for caller in CALLERS:
                response = await client.request(
                    route.method, url, json=route.body, params=route.params, headers=world.headers[caller]
                )
                admitted = caller in route.admitted
                refused = response.status_code in (401, 403)
                if admitted == refused or response.status_code >= 500:
                    wrong.append(f"{caller:>22} {route.method} {route.service}{route.path} -> {response.status_code}")
                if refused:
                    assert response.status_code == 403, (caller, route, response.text)
                    assert response.headers["content-type"].startswith("application/problem+json")
    assert not wrong, "\n".join(wrong)


async def test_the_matrix_covers_every_route_each_service_documents(world: World) -> None:
    tried = {(r.service, r.method, r.path) for r in the_routes(world)}
    uncovered = []
    async with httpx.AsyncClient(timeout=30.0) as client:
        for service in SERVICES:
            document = (await client.get(f"{getattr(world.api, service)}/openapi.json")).json()
            for template, operations in document["paths"].items():
                if template == "/healthz":
                    continue
                pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
                for method in operations:
                    if not any(s == service and m == method.upper() and pattern.match(p) for s, m, p in tried):
                        uncovered.append(f"{service} {method.upper()} {template}")
    assert not uncovered, uncovered


async def test_no_credentials_or_bad_ones_get_401_on_every_route_and_the_probes_stay_open(world: World) -> None:
    expired = {"Authorization": "Bearer " + jwt.encode({"sub": "x", "role": "supervisor", "exp": 1}, "k" * 32, "HS256")}
    async with httpx.AsyncClient(timeout=30.0) as client:
        for route in the_routes(world):
            url = getattr(world.api, route.service) + route.path
            for headers in ({}, {"X-API-Key": "clk_not_a_key"}, expired):
                response = await client.request(
                    route.method, url, json=route.body, params=route.params, headers=headers
                )
                assert response.status_code == 401, (route, headers, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert "WWW-Authenticate" in response.headers
        for service in SERVICES:
            assert (await client.get(f"{getattr(world.api, service)}/healthz")).status_code == 200
            assert (await client.get(f"{getattr(world.api, service)}/readyz")).status_code == 200


async def test_tokens_of_another_issuer_or_audience_are_refused(world: World, credentials: Any) -> None:
    _, _, sign = credentials
    other_audience = sign({"sub": "s", "role": "supervisor", "aud": "another-app"})
    other_issuer = sign({"sub": "s", "role": "supervisor", "iss": "https://elsewhere.example"})
    no_role = sign({"sub": "s"})
    async with httpx.AsyncClient(timeout=30.0) as client:
        for token in (other_audience, other_issuer, no_role):
            response = await client.get(
                f"{world.api.supervision}/v1/cases", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, response.text


async def test_the_reporter_is_whole_only_for_who_needs_it_and_every_whole_read_is_audited(world: World) -> None:
    case = f"/v1/cases/{world.case_id}"
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def reporter_in_intake(caller: str) -> dict[str, Any]:
            response = await client.get(world.api.intake + case, headers=world.headers[caller])
            assert response.status_code == 200, response.text
            reporter: dict[str, Any] = response.json()["reporter"]
            return reporter

        async def reporter_in_timeline(caller: str) -> dict[str, Any]:
            response = await client.get(world.api.supervision + case + "/timeline", headers=world.headers[caller])
            assert response.status_code == 200, response.text
            accepted = next(e for e in response.json()["events"] if e["type"] == "case.accepted")
            reporter: dict[str, Any] = accepted["payload"]["reporter"]
            return reporter

        whole = {"name": "王五", "phone": "13900000000"}
        masked = {"name": "王*", "phone": "139****0000"}
        assert await reporter_in_intake("source_own") == whole
        assert await reporter_in_intake("supervisor_town") == whole
        assert await reporter_in_intake("triage") == masked
        assert await reporter_in_timeline("unit_own") == whole
        assert await reporter_in_timeline("operator") == masked
        listed = (await client.get(world.api.supervision + "/v1/cases", headers=world.headers["supervisor"])).json()
        assert "reporter" not in json.dumps(listed)

        auditor = world.headers["auditor"]
        intake_reads = (
            await client.get(
                world.api.intake + "/v1/audit/personal-data-reads", params={"case_id": world.case_id}, headers=auditor
            )
        ).json()["items"]
        timeline_reads = (
            await client.get(
                world.api.supervision + "/v1/audit/personal-data-reads",
                params={"case_id": world.case_id, "subject": "key-unit_own"},
                headers=auditor,
            )
        ).json()["items"]
        assert {(r["subject"], r["role"]) for r in intake_reads} >= {
            ("key-source_own", "source_system"),
            ("user-supervisor_town", "supervisor"),
        }
        assert not any(r["subject"] == "user-triage" for r in intake_reads), "a masked read is not a read of the data"
        assert [(r["subject"], r["unit_id"], r["client_address"]) for r in timeline_reads][-1] == (
            "key-unit_own",
            world.unit,
            "127.0.0.1",
        )
        assert timeline_reads[-1]["resource"] == f"GET {case}/timeline"

        # Append-only: no route edits or deletes the trail.
        trail = world.api.intake + "/v1/audit/personal-data-reads"
        for method in ("PUT", "PATCH", "DELETE", "POST"):
            assert (await client.request(method, trail, headers=auditor)).status_code == 405


async def test_a_rotated_key_works_at_once_and_the_old_one_stops(
    world: World, credentials: tuple[Path, Path, Callable[[dict[str, Any]], str]]
) -> None:
    keys_file, _, _ = credentials
    entries = json.loads(keys_file.read_text())["keys"]
    old = world.headers["operator"]
    new_key = f"clk_rotated_{uuid.uuid4().hex}"
    rotated = [e for e in entries if e["id"] != "key-operator"]
    rotated.append({"id": "key-operator-2", "sha256": key_digest(new_key), "role": "operator"})
    write_keys(keys_file, rotated)
    await asyncio.sleep(1.1)
    async with httpx.AsyncClient(timeout=30.0) as client:
        url = f"{world.api.dispatch}/v1/units"
        assert (await client.get(url, headers={"X-API-Key": new_key})).status_code == 200
        assert (await client.get(url, headers=old)).status_code == 401


async def test_each_event_a_request_made_names_the_authenticated_caller(
    world: World, credentials: tuple[Path, Path, Callable[[dict[str, Any]], str]]
) -> None:
    keys_file, _, _ = credentials
    api, supervisor = world.api, world.headers["supervisor"]
    async with httpx.AsyncClient(timeout=30.0) as client:
        created = await client.post(
            f"{api.intake}/v1/cases",
            headers=world.headers["source_own"],
            json={
                "source_system": SOURCE,
                "external_id": "ACCESS-SUBJECT-1",
                "title": "道路坑洼",
                "description": "路面出现大坑，电动车容易摔倒",
                "location": {"grid_code": world.grid},
            },
        )
        case = f"/v1/cases/{created.json()['case_id']}"
        assignment = await poll(
            lambda: client.get(api.dispatch + case + "/assignment", headers=supervisor), lambda r: r.status_code == 200
        )
        unit, key = assignment.json()["unit_id"], f"clk_subject_{uuid.uuid4().hex}"
        entries = json.loads(keys_file.read_text())["keys"]
        write_keys(
            keys_file,
            [*entries, {"id": "key-the-cases-unit", "sha256": key_digest(key), "role": "unit", "unit_id": unit}],
        )
        await asyncio.sleep(1.1)
        acknowledged = await client.post(
            api.dispatch + case + "/acknowledge", headers={"X-API-Key": key}, json={"unit_id": unit, "by": "handler-7"}
        )
        assert acknowledged.status_code == 200, acknowledged.text
        await poll(
            lambda: client.get(api.supervision + case, headers=supervisor),
            lambda r: r.status_code == 200 and r.json()["status"] == "acknowledged",
        )
        urged = await client.post(
            api.supervision + case + "/urge", headers=supervisor, json={"by": "li.na", "note": "请尽快处理"}
        )
        assert urged.status_code == 200, urged.text
        timeline = (await client.get(api.supervision + case + "/timeline", headers=supervisor)).json()
    actors = {e["type"]: e["actor"] for e in timeline["events"]}

    assert actors["case.accepted"]["subject"] == "key-source_own"
    assert (actors["case.acknowledged"]["id"], actors["case.acknowledged"]["subject"]) == (
        "handler-7",
        "key-the-cases-unit",
    )
    assert (actors["case.urged"]["id"], actors["case.urged"]["subject"]) == ("li.na", "user-supervisor")
    assert actors["case.judged"]["subject"] is None, "a rule's decision names no caller"


async def test_a_poison_message_on_any_topic_is_dead_lettered_and_processing_goes_on(world: World) -> None:
    assert world.stack.broker is not None
    bootstrap = world.stack.broker.bootstrap_servers
    # Not JSON, an envelope with a phone where an id belongs, and an event type nobody knows.
    poisons = [b"\x00\xff not json", b'{"event_id": "13900000000"}', b'{"type": "case.teleported"}']
    for n, producer in enumerate(Producer):
        await publish(bootstrap, topic_of(producer), raw=poisons[n % len(poisons)])

    letters = await read_topic(
        bootstrap,
        deadletter_topic(),
        until=lambda values: {json.loads(v)["origin"]["topic"] for v in values} >= {topic_of(p) for p in Producer},
        timeout=60.0,
    )
    assert not any(b"13900000000" in json.dumps(json.loads(v)["error"]).encode() for v in letters)

    api, supervisor = world.api, world.headers["supervisor"]
    async with httpx.AsyncClient(timeout=30.0) as client:
        created = await client.post(
            f"{api.intake}/v1/cases",
            headers=world.headers["source_own"],
            json={
                "source_system": SOURCE,
                "external_id": "ACCESS-AFTER-POISON-1",
                "title": "楼道堆放杂物",
                "description": "高层住宅楼道堆满纸箱，消防通道被堵",
                "location": {"grid_code": world.grid},
            },
        )
        assert created.status_code == 201, created.text
        case = f"/v1/cases/{created.json()['case_id']}"
        # Judged by triage, assigned by dispatch, seen by supervision: every consumer went on.
        await poll(
            lambda: client.get(api.supervision + case, headers=supervisor),
            lambda r: r.status_code == 200 and r.json()["status"] == "assigned",
        )
