"""Credentials, roles and scopes, the per-client rate limit, masking and the secure defaults."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from caseloop_events.runtime.auth import (
    ApiKeyStore,
    Authenticator,
    Forbidden,
    JwtSettings,
    JwtVerifier,
    NotAuthenticated,
    Principal,
    RateLimiter,
    Role,
    TooManyRequests,
    development_principal,
    key_digest,
    new_api_key,
)
from caseloop_events.runtime.personal_data import mask_name, mask_payload, mask_phone
from caseloop_events.runtime.serve import serve
from caseloop_events.runtime.service import ServiceSettings

ISSUER, AUDIENCE = "https://idp.example", "caseloop"


def write_keys(path: Path, *entries: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(entries)}))
    # Two writes within one clock tick must still look like a change.
    stamp = time.time() + len(entries)
    os.utime(path, (stamp, stamp))


def test_a_key_is_known_by_its_hash_and_a_rotation_takes_effect_without_restart(tmp_path: Path) -> None:
    old, new = new_api_key(), new_api_key()
    keys = tmp_path / "keys.json"
    write_keys(keys, {"id": "hotline-1", "sha256": key_digest(old), "role": "source_system", "source_system": "hl"})
    store = ApiKeyStore(keys, recheck_seconds=0.0)
    assert old not in keys.read_text(), "the file holds hashes, never keys"

    found = store.lookup(old)
    assert found is not None
    assert (found.subject, found.role, found.source_system) == (
        "hotline-1",
        Role.SOURCE_SYSTEM,
        "hl",
    )
    assert store.lookup(new) is None

    write_keys(
        keys,
        {"id": "hotline-1", "sha256": key_digest(old), "role": "source_system", "source_system": "hl"},
        {"id": "hotline-2", "sha256": key_digest(new), "role": "source_system", "source_system": "hl"},
    )
    assert store.lookup(new) is not None, "the new key works while it goes out"
    assert store.lookup(old) is not None, "and the old one still does"
    write_keys(keys, {"id": "hotline-2", "sha256": key_digest(new), "role": "source_system", "source_system": "hl"})
    assert store.lookup(old) is None
    assert store.lookup(new) is not None


def test_a_broken_keys_file_fails_the_start_but_mid_rotation_keeps_the_keys_there_were(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": [{"id": "x", "sha256": "not-a-hash", "role": "unit"}]}')
    with pytest.raises(ValueError, match="not valid"):
        ApiKeyStore(keys)

    key = new_api_key()
    write_keys(keys, {"id": "u", "sha256": key_digest(key), "role": "unit", "unit_id": "U-1"})
    store = ApiKeyStore(keys, recheck_seconds=0.0)
    keys.write_text('{"keys": [')  # half written
    os.utime(keys, (time.time() + 10, time.time() + 10))
    assert store.lookup(key) is not None


def test_a_unit_key_without_its_unit_is_refused_at_load(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    write_keys(keys, {"id": "u", "sha256": key_digest("k"), "role": "unit"})
    with pytest.raises(ValueError, match="unit_id"):
        ApiKeyStore(keys)


@pytest.fixture(scope="module")
def provider() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def a_token(private: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "li.na", "exp": now + 60, **claims}, private, "RS256")


async def test_a_token_of_the_configured_provider_names_the_caller(provider: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, public = provider
    verifier = JwtVerifier(JwtSettings(ISSUER, AUDIENCE, ("RS256",), public_key_pem=public))

    principal = await verifier.verify(a_token(private, role="supervisor", region_code="330110001"))

    assert (principal.subject, principal.role, principal.region_code) == ("li.na", Role.SUPERVISOR, "330110001")


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "supervisor", "aud": "another-app"},
        {"role": "supervisor", "iss": "https://elsewhere"},
        {"role": "supervisor", "exp": 1},
        {},  # no role
        {"role": "janitor"},
        {"role": "unit"},  # a unit without its unit_id
        {"role": "supervisor", "region_code": "not-a-code"},
    ],
)
async def test_a_token_that_does_not_hold_is_401(
    provider: tuple[rsa.RSAPrivateKey, str], claims: dict[str, Any]
) -> None:
    private, public = provider
    verifier = JwtVerifier(JwtSettings(ISSUER, AUDIENCE, ("RS256",), public_key_pem=public))

    with pytest.raises(NotAuthenticated):
        await verifier.verify(a_token(private, **claims))


async def test_a_token_signed_with_another_key_or_algorithm_is_401(provider: tuple[rsa.RSAPrivateKey, str]) -> None:
    _, public = provider
    verifier = JwtVerifier(JwtSettings(ISSUER, AUDIENCE, ("RS256",), public_key_pem=public))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hmac_token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**31, "role": "supervisor"}, "s" * 32)

    for token in (a_token(stranger, role="supervisor"), hmac_token):
        with pytest.raises(NotAuthenticated):
            await verifier.verify(token)


async def test_without_credentials_configured_only_the_development_profile_starts() -> None:
    with pytest.raises(ValueError, match="CASELOOP_API_KEYS_FILE"):
        Authenticator()
    development = Authenticator(development=True)

    assert (await development.authenticate("dev:unit:U-FIRE", None)).unit_id == "U-FIRE"
    with pytest.raises(NotAuthenticated):
        await development.authenticate("dev:janitor", None)
    with pytest.raises(NotAuthenticated, match="required"):
        await development.authenticate(None, None)
    with pytest.raises(NotAuthenticated, match="bearer"):
        await development.authenticate(None, "a.b.c")


async def test_outside_the_development_profile_development_keys_are_unknown(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    write_keys(keys)
    production = Authenticator(api_keys=ApiKeyStore(keys))

    with pytest.raises(NotAuthenticated, match="not known"):
        await production.authenticate("dev:supervisor", None)


def test_development_keys_name_the_role_and_its_scope() -> None:
    assert development_principal("dev:source_system:hotline-12345") == Principal(
        subject="dev:source_system:hotline-12345", role=Role.SOURCE_SYSTEM, source_system="hotline-12345"
    )
    supervisor = development_principal("dev:supervisor:330110001")
    assert supervisor is not None
    assert supervisor.region_code == "330110001"
    assert development_principal("dev:monitor") == Principal(subject="dev:monitor", role=Role.MONITOR)
    assert development_principal("dev:unit") is None, "a unit key names its unit"
    assert development_principal("clk_abc") is None


def test_a_town_supervisor_is_held_to_the_town_and_a_unit_to_its_cases() -> None:
    town = Principal(subject="s", role=Role.SUPERVISOR, region_code="330110001")
    district = Principal(subject="d", role=Role.SUPERVISOR)
    unit = Principal(subject="u", role=Role.UNIT, unit_id="U-FIRE")

    assert town.covers_region("3301100010010101")
    assert not town.covers_region("3301100020010101")
    assert not town.covers_region(None), "a case with no place is outside every town"
    assert district.covers_region(None)
    assert town.narrowed_to_region(None) == "330110001"
    assert district.narrowed_to_region(None) is None
    with pytest.raises(Forbidden):
        town.narrowed_to_region("330110002")
    with pytest.raises(Forbidden):
        town.require_region("330110")  # the district is wider than the town
    unit.require_unit(["U-POLICE", "U-FIRE"])
    with pytest.raises(Forbidden):
        unit.require_unit(["U-POLICE", None])
    district.require_unit(["U-POLICE"])  # only units are held to their cases


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_lets_a_burst_through_then_says_when_to_retry_per_client() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("hotline")

    with pytest.raises(TooManyRequests) as refused:
        limiter.take("hotline")
    assert refused.value.retry_after == 1
    limiter.take("police")  # another client has its own bucket

    clock.now += 0.5  # one token back at 2 per second
    limiter.take("hotline")
    with pytest.raises(TooManyRequests):
        limiter.take("hotline")


def test_a_rate_of_zero_means_no_limit() -> None:
    limiter = RateLimiter(per_second=0.0, burst=1, clock=FakeClock())
    for _ in range(1000):
        limiter.take("bench")


def test_names_and_phones_are_masked_the_way_public_notices_print_them() -> None:
    assert mask_name("王五") == "王*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("李") == "李*"
    assert mask_phone("13900000000") == "139****0000"
    assert mask_phone("+86 139-0000-1234") == "861******1234"
    assert mask_phone("110") == "***"
    payload = {"title": "路灯", "reporter": {"name": "王五", "phone": "13900000000"}}
    assert mask_payload(payload) == {"title": "路灯", "reporter": {"name": "王*", "phone": "139****0000"}}
    assert mask_payload({"reporter": None}) == {"reporter": None}


class ProbeSettings(ServiceSettings):
    service_name: ClassVar[str] = "probe"
    port: int = 65000


def test_the_development_profile_will_not_serve_on_a_public_address() -> None:
    settings = ProbeSettings(host="0.0.0.0", CASELOOP_PROFILE="development")

    with pytest.raises(SystemExit, match=r"only on 127\.0\.0\.1"):
        serve(FastAPI, settings)


def test_a_service_without_credentials_ends_with_one_plain_line() -> None:
    settings = ProbeSettings(CASELOOP_PROFILE="production")

    def create_app() -> FastAPI:
        settings.authenticator()
        return FastAPI()

    with pytest.raises(SystemExit, match="cannot start: no credentials are configured"):
        serve(create_app, settings)


async def test_keys_published_as_a_jwks_by_the_provider_are_fetched_and_used(
    provider: tuple[rsa.RSAPrivateKey, str],
) -> None:
    private, _ = provider
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    document = json.dumps({"keys": [{**jwk, "kid": "2026-11", "use": "sig", "alg": "RS256"}]}).encode()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/realms/district/certs"
        verifier = JwtVerifier(JwtSettings(ISSUER, AUDIENCE, ("RS256",), jwks_url=url))
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "zhao.lei", "exp": now + 60, "role": "triage_officer"}
        token = jwt.encode(claims, private, "RS256", headers={"kid": "2026-11"})

        principal = await verifier.verify(token)
        unknown_kid = jwt.encode(claims, private, "RS256", headers={"kid": "retired"})
        with pytest.raises(NotAuthenticated):
            await verifier.verify(unknown_kid)
    finally:
        server.shutdown()

    assert (principal.subject, principal.role) == ("zhao.lei", Role.TRIAGE_OFFICER)
