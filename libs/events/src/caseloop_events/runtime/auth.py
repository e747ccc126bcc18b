"""Who is calling, and what they may do: API keys, bearer JWTs, roles scoped by region.

Every request but the probes' ``/healthz`` and ``/readyz`` carries credentials:

- ``X-API-Key``: a key of a calling system. Configuration holds only its SHA-256 (a JSON file,
  ``CASELOOP_API_KEYS_FILE``, re-read when it changes, so a key is rotated by adding the new one,
  handing it out and removing the old one — no restart).
- ``Authorization: Bearer <JWT>`` from an external identity provider: the signature, ``exp``,
  ``iss`` and ``aud`` are checked against the configured issuer, audience and keys (a JWKS URL or
  a PEM public key); the claims ``role``, ``unit_id``, ``source_system`` and ``region_code`` say
  who the caller is.
- The development profile (``CASELOOP_PROFILE=development``, what ``make run`` starts) also takes
  the well-known keys ``dev:<role>[:<scope>]`` and says loudly that it does. Outside it there are
  no default keys, and a service with no credentials configured refuses to start.

No credentials, or wrong ones: 401. The wrong role, or another system's, unit's or region's case:
403. Routes name the roles they admit (:func:`admits`); object checks use :class:`Principal`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

DEVELOPMENT_KEY_PREFIX = "dev:"


class Role(StrEnum):
    SOURCE_SYSTEM = "source_system"
    UNIT = "unit"
    TRIAGE_OFFICER = "triage_officer"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    #: The monitoring system (Prometheus): reads ``/metrics`` and nothing else.
    MONITOR = "monitor"


class NotAuthenticated(Exception):
    """401: no credentials, or credentials that are not valid."""


class Forbidden(Exception):
    """403: valid credentials, but this caller may not do this, or not to this case."""


class Principal(BaseModel):
    """The authenticated caller: one role, and the system, unit or region it stands for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = Field(min_length=1, max_length=128, description="the key's id or the token's subject")
    role: Role
    source_system: str | None = Field(default=None, max_length=64)
    unit_id: str | None = Field(default=None, max_length=64)
    region_code: str | None = Field(
        default=None, pattern=r"^\d{6}(\d{3})?$", description="a town's or the district's code; none: the whole region"
    )

    @model_validator(mode="after")
    def _scope_fits_role(self) -> Principal:
        if self.role is Role.SOURCE_SYSTEM and not self.source_system:
            raise ValueError("a source_system caller names its source_system")
        if self.role is Role.UNIT and not self.unit_id:
            raise ValueError("a unit caller names its unit_id")
        return self

    @property
    def town_code(self) -> str | None:
        """The town the caller is scoped to, when their region is a town (a 9-digit code)."""
        return self.region_code if self.region_code is not None and len(self.region_code) == 9 else None

    def narrowed_to_region(self, town_code: str | None) -> str | None:
        """A list's town filter for this caller: their own town when they name none; 403 when they
        name a town outside their region."""
        if town_code is None:
            return self.town_code
        self.require_region(town_code)
        return town_code

    def covers_region(self, place_code: str | None) -> bool:
        """True when the place (a town's, village's or grid's code) lies in the caller's region."""
        if self.region_code is None:
            return True
        return place_code is not None and place_code.startswith(self.region_code)

    def require_region(self, place_code: str | None) -> None:
        if not self.covers_region(place_code):
            raise Forbidden(f"the case lies outside region {self.region_code}")

    def require_source_system(self, source_system: str | None) -> None:
        if self.role is Role.SOURCE_SYSTEM and source_system != self.source_system:
            raise Forbidden(f"the case belongs to another source system than {self.source_system}")

    def require_unit(self, unit_ids: Iterable[str | None]) -> None:
        if self.role is Role.UNIT and self.unit_id not in set(unit_ids):
            raise Forbidden(f"the case is not assigned to unit {self.unit_id}")

    def require_case(
        self, *, source_system: str | None, unit_ids: Iterable[str | None], place_code: str | None
    ) -> None:
        """403 unless the case is this caller's to see: a source system's own, a unit's assigned
        case (lead or assisting), or one in the caller's region — each role held to its own test."""
        self.require_source_system(source_system)
        self.require_unit(unit_ids)
        self.require_region(place_code)


class ApiKeyEntry(BaseModel):
    """One line of the keys file: the key's SHA-256, never the key itself."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, description="names the key in logs and the audit trail")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    source_system: str | None = None
    unit_id: str | None = None
    region_code: str | None = None

    def principal(self) -> Principal:
        return Principal(
            subject=self.id,
            role=self.role,
            source_system=self.source_system,
            unit_id=self.unit_id,
            region_code=self.region_code,
        )


class ApiKeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[ApiKeyEntry]


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh key: 32 random bytes, URL-safe (only its SHA-256 goes into configuration)."""
    return "clk_" + secrets.token_urlsafe(32)


class ApiKeyStore:
    """The keys file, re-read when it changes (checked at most every ``recheck_seconds``)."""

    def __init__(self, path: Path, recheck_seconds: float = 1.0) -> None:
        self.path = path
        self.recheck_seconds = recheck_seconds
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._principals: dict[str, Principal] = {}
        self._reload()

    def _reload(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            parsed = ApiKeysFile.model_validate_json(self.path.read_bytes())
            principals = {entry.sha256: entry.principal() for entry in parsed.keys}
        except (ValidationError, ValueError) as error:
            if self._stamp is None:
                raise ValueError(f"the API keys file {self.path} is not valid: {error}") from error
            # A half-written file during rotation: keep the keys we had, say so, try again later.
            log.error("API keys file %s is not valid, keeping the previous keys: %s", self.path, error)
            return
        self._principals, self._stamp = principals, stamp
        log.info("API keys loaded from %s: %d keys", self.path, len(principals))

    def lookup(self, key: str) -> Principal | None:
        now = time.monotonic()
        if now - self._checked >= self.recheck_seconds:
            self._checked = now
            try:
                self._reload()
            except OSError as error:
                log.error("cannot read the API keys file %s, keeping the previous keys: %s", self.path, error)
        return self._principals.get(key_digest(key))


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwks_url: str | None = None
    public_key_pem: str | None = None
    leeway_seconds: int = 30


class JwtVerifier:
    """Checks bearer tokens of the configured identity provider."""

    def __init__(self, settings: JwtSettings) -> None:
        if not settings.jwks_url and not settings.public_key_pem:
            raise ValueError("a JWT issuer needs CASELOOP_JWT_JWKS_URL or CASELOOP_JWT_PUBLIC_KEY_FILE")
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None

    async def verify(self, token: str) -> Principal:
        try:
            key: Any = self.settings.public_key_pem
            if self._jwks is not None:
                # PyJWKClient fetches over blocking HTTP (cached afterwards): keep it off the loop.
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.settings.algorithms),
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise NotAuthenticated(f"the bearer token is not valid: {error}") from error
        try:
            return Principal(
                subject=claims["sub"],
                role=claims.get("role"),
                source_system=claims.get("source_system"),
                unit_id=claims.get("unit_id"),
                region_code=claims.get("region_code"),
            )
        except ValidationError as error:
            raise NotAuthenticated(f"the bearer token's claims do not name a caseloop caller: {error}") from error


def development_principal(key: str) -> Principal | None:
    """``dev:<role>[:<scope>]``: the scope is the source system, the unit, or a supervisor's or
    triage officer's region code."""
    if not key.startswith(DEVELOPMENT_KEY_PREFIX):
        return None
    role_name, _, scope = key.removeprefix(DEVELOPMENT_KEY_PREFIX).partition(":")
    try:
        role = Role(role_name)
        if role is Role.SOURCE_SYSTEM:
            return Principal(subject=key, role=role, source_system=scope)
        if role is Role.UNIT:
            return Principal(subject=key, role=role, unit_id=scope)
        return Principal(subject=key, role=role, region_code=scope or None)
    except ValueError:
        return None


@dataclass
class Authenticator:
    """Turns a request's credentials into a :class:`Principal` (or 401)."""

    api_keys: ApiKeyStore | None = None
    jwt: JwtVerifier | None = None
    development: bool = False
    _warned: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not self.development and self.api_keys is None and self.jwt is None:
            raise ValueError(
                "no credentials are configured: set CASELOOP_API_KEYS_FILE and/or the CASELOOP_JWT_* settings, "
                "or CASELOOP_PROFILE=development for a local, embedded system"
            )
        if self.development:
            log.warning(
                "*** DEVELOPMENT PROFILE: the well-known keys dev:<role>[:<scope>] are accepted. "
                "Never run it where anyone else can reach it. ***"
            )

    async def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        if api_key:
            principal = self.api_keys.lookup(api_key) if self.api_keys is not None else None
            if principal is None and self.development:
                principal = development_principal(api_key)
            if principal is None:
                raise NotAuthenticated("the API key is not known")
            return principal
        if bearer:
            if self.jwt is None:
                raise NotAuthenticated("bearer tokens are not accepted here: no identity provider is configured")
            return await self.jwt.verify(bearer)
        raise NotAuthenticated("credentials are required: an X-API-Key header or an Authorization: Bearer token")


def authenticator_from_settings(
    *,
    profile: str,
    api_keys_file: Path | None,
    jwt_issuer: str | None,
    jwt_audience: str | None,
    jwt_jwks_url: str | None,
    jwt_public_key_file: Path | None,
    jwt_algorithms: str,
) -> Authenticator:
    verifier = None
    if jwt_issuer or jwt_audience or jwt_jwks_url or jwt_public_key_file:
        if not (jwt_issuer and jwt_audience):
            raise ValueError("a JWT identity provider needs both CASELOOP_JWT_ISSUER and CASELOOP_JWT_AUDIENCE")
        verifier = JwtVerifier(
            JwtSettings(
                issuer=jwt_issuer,
                audience=jwt_audience,
                algorithms=tuple(a.strip() for a in jwt_algorithms.split(",") if a.strip()),
                jwks_url=jwt_jwks_url,
                public_key_pem=jwt_public_key_file.read_text() if jwt_public_key_file else None,
            )
        )
    return Authenticator(
        api_keys=ApiKeyStore(api_keys_file) if api_keys_file else None,
        jwt=verifier,
        development=profile == "development",
    )


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="a calling system's API key")
_bearer = HTTPBearer(auto_error=False, description="a JWT of the configured identity provider")


class TooManyRequests(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the rate limit of this client is used up: retry after {retry_after} s")
        self.retry_after = retry_after


class RateLimiter:
    """A token bucket per client: ``per_second`` requests on average, up to ``burst`` at once.

    Per service process (each service protects its own database). A client is the caller's key id
    or token subject; requests without valid credentials are counted by address, so guessing keys
    is limited too."""

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> None:
        """Take one request from the client's bucket, or raise :class:`TooManyRequests`."""
        if self.per_second <= 0:
            return
        now = self.clock()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            raise TooManyRequests(max(1, math.ceil((1.0 - tokens) / self.per_second)))
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:
            self._forget_full_buckets(now)

    def _forget_full_buckets(self, now: float) -> None:
        # A bucket that has refilled completely is the same as no bucket: drop it to bound memory.
        refill = self.burst / self.per_second
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}


async def authenticated(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, once their credentials hold and their rate limit allows the request (401, 429)."""
    authenticator: Authenticator = request.app.state.authenticator
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        principal = await authenticator.authenticate(api_key, bearer.credentials if bearer else None)
    except NotAuthenticated:
        limiter.take(f"address:{client_address(request)}")
        raise
    limiter.take(f"caller:{principal.subject}")
    request.state.principal = principal
    return principal


def admits(*roles: Role) -> Callable[..., Any]:
    """A route dependency: the caller, if their role is one of ``roles``; else 403."""
    allowed = frozenset(roles)

    async def admitted(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(role.value for role in allowed))
            raise Forbidden(f"role {principal.role.value} may not do this (allowed: {names})")
        return principal

    return admitted


#: Route parameter alias: any authenticated caller.
Caller = Annotated[Principal, Depends(authenticated)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def describe_key_entry(key_id: str, key: str, principal: Principal) -> str:
    """The JSON line to add to the keys file for ``key`` (printed by ``caseloop apikey new``)."""
    entry = ApiKeyEntry(
        id=key_id,
        sha256=key_digest(key),
        role=principal.role,
        source_system=principal.source_system,
        unit_id=principal.unit_id,
        region_code=principal.region_code,
    )
    return json.dumps(entry.model_dump(exclude_none=True), ensure_ascii=False)
