"""Every event type round-trips, and its golden sample and JSON Schema never change silently."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from caseloop_events.contracts.envelope import (
    Envelope,
    EventPayload,
    Producer,
    register_upcaster,
    registered_payloads,
)
from caseloop_events.contracts.schema import SAMPLE_PAYLOADS, envelope_schema, file_stem, sample_event

PACKAGE = Path(__file__).resolve().parents[1]
GOLDEN = PACKAGE / "golden"
SCHEMAS = PACKAGE / "schemas"
REGENERATE = "run `make schemas` and review the diff if the change is intended"


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_every_registered_event_type_has_a_golden_sample_and_a_schema() -> None:
    # test.* types are registered by this module's own upcasting test.
    types = {file_stem(t, v) for t, v in registered_payloads() if not t.startswith("test.")}
    assert {p.name.removesuffix(".json") for p in GOLDEN.glob("*.json")} == types
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == types
    assert len({(p.event_type, p.schema_version) for p in SAMPLE_PAYLOADS}) == len(SAMPLE_PAYLOADS)


@pytest.mark.parametrize("payload", SAMPLE_PAYLOADS, ids=lambda p: p.event_type)
def test_a_golden_sample_decodes_to_its_payload_and_encodes_back_unchanged(payload: EventPayload) -> None:
    path = GOLDEN / f"{file_stem(payload.event_type, payload.schema_version)}.json"
    event = Envelope.model_validate_json(path.read_bytes())
    assert type(event.payload) is type(payload)
    assert event.model_dump(mode="json") == read_json(path)
    assert Envelope.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("payload", SAMPLE_PAYLOADS, ids=lambda p: p.event_type)
def test_the_contract_still_produces_its_golden_sample(payload: EventPayload) -> None:
    path = GOLDEN / f"{file_stem(payload.event_type, payload.schema_version)}.json"
    assert sample_event(payload).model_dump(mode="json") == read_json(path), REGENERATE


@pytest.mark.parametrize(
    "key", sorted(k for k in registered_payloads() if not k[0].startswith("test.")), ids=lambda k: f"{k[0]}.v{k[1]}"
)
def test_the_exported_json_schema_matches_the_contract(key: tuple[str, int]) -> None:
    path = SCHEMAS / f"{file_stem(*key)}.schema.json"
    assert envelope_schema(registered_payloads()[key]) == read_json(path), REGENERATE


def golden(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = read_json(GOLDEN / f"{event_type}.v1.json")
    return data


def test_an_unknown_event_type_is_refused() -> None:
    data = golden("case.closed") | {"type": "case.teleported"}
    with pytest.raises(ValidationError, match=r"unknown event type 'case\.teleported'"):
        Envelope.model_validate(data)


def test_an_unknown_payload_field_is_refused() -> None:
    data = golden("case.closed")
    data["payload"]["surprise"] = True
    with pytest.raises(ValidationError):
        Envelope.model_validate(data)


def test_an_event_claimed_by_the_wrong_producer_is_refused() -> None:
    data = golden("case.closed") | {"producer": "intake"}
    with pytest.raises(ValidationError, match="produced by supervision"):
        Envelope.model_validate(data)


def test_occurred_at_without_a_timezone_is_refused() -> None:
    data = golden("case.closed") | {"occurred_at": "2026-11-27T01:30:00"}
    with pytest.raises(ValidationError):
        Envelope.model_validate(data)


class _ProbeV1(EventPayload):
    event_type: ClassVar[str] = "test.probe"
    schema_version: ClassVar[int] = 1
    producer: ClassVar[Producer] = Producer.SUPERVISION
    name: str


class _ProbeV2(EventPayload):
    event_type: ClassVar[str] = "test.probe"
    schema_version: ClassVar[int] = 2
    producer: ClassVar[Producer] = Producer.SUPERVISION
    first_name: str
    last_name: str


@register_upcaster("test.probe", from_version=1)
def _upcast_probe_v1_v2(payload: dict[str, Any]) -> dict[str, Any]:
    first, _, last = payload["name"].partition(" ")
    return {"first_name": first, "last_name": last}


def test_a_v1_event_is_upcast_to_the_latest_version_when_read() -> None:
    data = golden("case.closed") | {
        "type": "test.probe",
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "payload": {"name": "Li Lei"},
    }
    event = Envelope.model_validate(data)
    assert event.schema_version == 2
    assert event.payload == _ProbeV2(first_name="Li", last_name="Lei")


def test_an_event_written_before_actors_named_their_authenticated_caller_still_decodes() -> None:
    data = golden("case.closed")
    del data["actor"]["subject"]

    assert Envelope.model_validate(data).actor.subject is None


def test_an_event_names_the_caller_its_actor_carries_and_nothing_adds_one_behind_its_back() -> None:
    """The authenticated caller travels in the command and the actor built from it (ADR 0014): no
    context of the request rewrites an actor, so a rule's decision made during a request names none."""
    from caseloop_events.contracts.envelope import Actor, ActorRole, Producer, new_event

    sample = Envelope.model_validate(golden("case.urged"))

    def urged_by(actor: Actor) -> Envelope:
        return new_event(
            sample.payload,
            case_id=sample.case_id,
            actor=actor,
            occurred_at=sample.occurred_at,
            correlation_id=sample.correlation_id,
        )

    person = urged_by(Actor(id="li.na", role=ActorRole.SUPERVISOR, subject="key-supervisor-town-3"))
    rule = urged_by(Actor.system(Producer.SUPERVISION))
    assert (person.actor.id, person.actor.subject) == ("li.na", "key-supervisor-town-3")
    assert rule.actor.subject is None
