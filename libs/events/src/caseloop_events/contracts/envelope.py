"""The event envelope every caseloop event travels in (CloudEvents-like, DESIGN.md §2).

A payload class declares its ``event_type``, ``schema_version`` and ``producer``; defining
the class registers it, so ``Envelope.model_validate_json`` turns raw bytes from any topic
into the right typed payload, upcasting older versions on the way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

#: Namespace of every deterministic id caseloop derives (uuid5).
CASELOOP_NAMESPACE = uuid.UUID("6f1d3c1e-7d7b-4c55-9a57-2b0c1f0e6a11")


class FrozenModel(BaseModel):
    """Base of every contract: immutable, and unknown fields are an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Producer(StrEnum):
    """The four services; each is the only writer of its own topic."""

    INTAKE = "intake"
    TRIAGE = "triage"
    DISPATCH = "dispatch"
    SUPERVISION = "supervision"


class ActorRole(StrEnum):
    SYSTEM = "system"
    SOURCE_SYSTEM = "source_system"
    UNIT = "unit"
    TRIAGE_OFFICER = "triage_officer"
    SUPERVISOR = "supervisor"
    CITIZEN = "citizen"
    OPERATOR = "operator"


class Actor(FrozenModel):
    """Who made a fact happen: a person or system id, and the role it acted in."""

    id: str
    role: ActorRole
    unit_id: str | None = None
    subject: str | None = Field(
        default=None,
        description="the authenticated caller whose request made it happen (an API key's id or a token's subject)",
    )

    @classmethod
    def system(cls, service: Producer) -> Actor:
        """The service itself, when a rule rather than a person decided."""
        return cls(id=f"caseloop-{service.value}", role=ActorRole.SYSTEM)


class EventPayload(FrozenModel):
    """Base of every event payload. Subclasses are registered by (type, version)."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    producer: ClassVar[Producer]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            _register(cls)


class UnknownEventType(ValueError):
    """Raised when bytes name an event type (or version) no contract describes."""


_PAYLOADS: dict[tuple[str, int], type[EventPayload]] = {}
_LATEST_VERSION: dict[str, int] = {}
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def _register(payload_class: type[EventPayload]) -> None:
    key = (payload_class.event_type, payload_class.schema_version)
    existing = _PAYLOADS.get(key)
    if existing is not None and existing.__qualname__ != payload_class.__qualname__:
        raise ValueError(f"event type {key} is registered twice ({existing.__name__}, {payload_class.__name__})")
    _PAYLOADS[key] = payload_class
    _LATEST_VERSION[payload_class.event_type] = max(
        payload_class.schema_version, _LATEST_VERSION.get(payload_class.event_type, 0)
    )


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the function that turns a payload of ``from_version`` into ``from_version + 1``."""

    def decorator(upcaster: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = upcaster
        return upcaster

    return decorator


def registered_payloads() -> dict[tuple[str, int], type[EventPayload]]:
    """Every known (type, version) and its payload model."""
    return dict(_PAYLOADS)


def payload_class_for(event_type: str, version: int | None = None) -> type[EventPayload]:
    """The payload model for a type; the latest version unless one is named."""
    if event_type not in _LATEST_VERSION:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    wanted = _LATEST_VERSION[event_type] if version is None else version
    try:
        return _PAYLOADS[(event_type, wanted)]
    except KeyError:
        raise UnknownEventType(f"unknown version {wanted} of event type {event_type!r}") from None


def _upcast(event_type: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    latest = _LATEST_VERSION[event_type]
    while version < latest:
        upcaster = _UPCASTERS.get((event_type, version))
        if upcaster is None:
            raise UnknownEventType(f"no upcaster from version {version} of {event_type!r}")
        payload = upcaster(payload)
        version += 1
    return version, payload


class Envelope(FrozenModel):
    """One fact about one case, as it is stored in the outbox and on Kafka."""

    event_id: uuid.UUID
    type: str
    schema_version: int
    case_id: uuid.UUID
    occurred_at: AwareDatetime
    producer: Producer
    actor: Actor
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    payload: SerializeAsAny[EventPayload]

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="before")
    @classmethod
    def _typed_payload(cls, data: Any) -> Any:
        if not isinstance(data, dict) or isinstance(data.get("payload"), EventPayload):
            return data
        event_type, version, payload = data.get("type"), data.get("schema_version"), data.get("payload")
        if not isinstance(event_type, str) or not isinstance(version, int) or not isinstance(payload, dict):
            return data  # field validation reports what is missing
        payload_class_for(event_type)  # raises UnknownEventType for a type nobody defined
        version, payload = _upcast(event_type, version, payload)
        return {
            **data,
            "schema_version": version,
            "payload": payload_class_for(event_type, version).model_validate(payload),
        }

    @model_validator(mode="after")
    def _payload_matches_type(self) -> Envelope:
        payload_type = type(self.payload)
        if (payload_type.event_type, payload_type.schema_version) != (self.type, self.schema_version):
            raise ValueError(f"payload {payload_type.__name__} does not match type {self.type} v{self.schema_version}")
        if payload_type.producer is not self.producer:
            raise ValueError(f"{self.type} is produced by {payload_type.producer}, not {self.producer}")
        return self


def deterministic_id(cause_id: uuid.UUID, decision: str) -> uuid.UUID:
    """The id of a decision taken because of ``cause_id``: re-processing yields the same id."""
    return uuid.uuid5(CASELOOP_NAMESPACE, f"{cause_id}:{decision}")


def new_event(
    payload: EventPayload,
    *,
    case_id: uuid.UUID,
    actor: Actor,
    occurred_at: datetime,
    correlation_id: uuid.UUID,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope:
    """Wrap a payload in its envelope; type, version and producer come from the payload class."""
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        type=payload.event_type,
        schema_version=payload.schema_version,
        case_id=case_id,
        occurred_at=occurred_at,
        producer=payload.producer,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=payload,
    )


def event_caused_by(
    cause: Envelope, payload: EventPayload, *, actor: Actor, occurred_at: datetime, decision: str
) -> Envelope:
    """An event decided while handling ``cause``: same case and correlation, deterministic id."""
    return new_event(
        payload,
        case_id=cause.case_id,
        actor=actor,
        occurred_at=max(occurred_at, cause.occurred_at),
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
        event_id=deterministic_id(cause.event_id, decision),
    )


def event_answering(
    cause: Envelope, payload: EventPayload, *, actor: Actor, occurred_at: datetime, correlation_id: uuid.UUID
) -> Envelope:
    """An event a command produced, acting on the case as ``cause`` left it.

    The command's request starts a new correlation chain; the causation link keeps the
    case's history one chain of cause and effect. Never earlier than its cause.
    """
    return new_event(
        payload,
        case_id=cause.case_id,
        actor=actor,
        occurred_at=max(occurred_at, cause.occurred_at),
        correlation_id=correlation_id,
        causation_id=cause.event_id,
    )
