"""docs/asyncapi.yaml: what the contracts make now, a valid AsyncAPI 3.0.0 document (the official JSON
Schema, vendored under deploy/tests/asyncapi), and complete — every topic a channel, every event type a
message with its payload and header schemas, every reference resolvable, every example valid."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jsonschema_rs
import pytest
import yaml
from aiokafka import ConsumerRecord, TopicPartition

from caseloop_deploy.asyncapi import (
    CLOUDEVENTS_HEADERS,
    DEAD_LETTER,
    asyncapi_document,
    contract_payloads,
    main,
    message_id,
    render,
)
from caseloop_deploy.services import SERVICE_NAMES, service_spec
from caseloop_events.contracts.envelope import EventPayload, Producer
from caseloop_events.contracts.schema import SAMPLE_PAYLOADS, sample_event
from caseloop_events.runtime.consumer import EventConsumer
from caseloop_events.runtime.kafka import stored_event_headers
from caseloop_events.runtime.topics import all_topics

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = Path(__file__).resolve().parent / "asyncapi" / "asyncapi-3.0.0.schema.json"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _TestsOwnPayload(EventPayload):
    """Defined here, registered with the contracts' registry as test payloads are: no event of caseloop's,
    so the document, checked in the same session, must not list it."""

    event_type: ClassVar[str] = "test.asyncapi"
    producer: ClassVar[Producer] = Producer.TRIAGE


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def asyncapi_validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(ASYNCAPI_SCHEMA.read_text()), validate_formats=True)


def errors_of(validator: Any, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(instance)]


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(document: dict[str, Any], reference: str) -> Any:
    """What a local reference (``#/a/b``, RFC 6901) points at; KeyError when nothing."""
    assert reference.startswith("#/"), f"{reference}: only references inside the document"
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validator_of(document: dict[str, Any], reference: str) -> Any:
    """A validator of the schema at ``reference``, resolving its references in the document (draft-07:
    next to ``$ref`` the document's own keys are ignored)."""
    return jsonschema_rs.Draft7Validator({**document, "$ref": reference}, validate_formats=True)


def test_the_committed_document_is_what_the_contracts_make_now(tmp_path: Path) -> None:
    assert main(["--check", "--output", str(COMMITTED)]) == 0, "run `make asyncapi` and commit docs/asyncapi.yaml"
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(COMMITTED.read_text(encoding="utf-8").replace("case.assigned", "case.allocated"))
    assert main(["--check", "--output", str(stale)]) == 1, "a document behind the contracts fails the check"
    assert COMMITTED.read_text(encoding="utf-8") == render(asyncapi_document())


def test_the_document_is_a_valid_asyncapi_3_document(document: dict[str, Any], asyncapi_validator: Any) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert errors_of(asyncapi_validator, document) == []


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda d: d["channels"]["intake"].update(address=7), id="a channel whose address is no string"),
        pytest.param(lambda d: d["operations"]["intake.publishes"].update(action="publish"), id="2.x action"),
        pytest.param(lambda d: d["operations"]["triage.reads.intake"].pop("channel"), id="an operation on no channel"),
        pytest.param(
            lambda d: d["components"]["messages"]["case.assigned.v1"].update(payload=3), id="a number payload"
        ),
        pytest.param(lambda d: d["components"]["schemas"]["Actor"].update(type="objekt"), id="no JSON Schema type"),
        pytest.param(
            lambda d: d["components"]["messages"]["case.closed.v1"]["examples"][0].update(headers="ce_type"),
            id="example headers that are no map",
        ),
        pytest.param(lambda d: d.update(asyncapi="2.6.0"), id="another version"),
        pytest.param(lambda d: d.pop("info"), id="no info"),
    ],
)
def test_a_broken_document_fails_validation(document: dict[str, Any], asyncapi_validator: Any, break_it: Any) -> None:
    broken = copy.deepcopy(document)
    break_it(broken)
    assert errors_of(asyncapi_validator, broken) != []


def test_every_reference_points_at_something_in_the_document(document: dict[str, Any]) -> None:
    found = set(references(document))
    assert len(found) > 100
    for reference in sorted(found):
        resolve(document, reference)
    with pytest.raises(KeyError):
        resolve(document, "#/components/messages/case.allocated.v1")


def test_every_topic_is_a_channel_with_the_messages_of_its_producer(document: dict[str, Any]) -> None:
    channels = document["channels"]
    assert sorted(c["address"] for c in channels.values()) == sorted(all_topics())
    for producer in Producer:
        expected = {message_id(c) for c in contract_payloads().values() if c.producer is producer}
        assert set(channels[producer.value]["messages"]) == expected
    assert set(channels["deadletter"]["messages"]) == {DEAD_LETTER}


def test_every_event_type_is_a_message_with_its_payload_headers_and_key(document: dict[str, Any]) -> None:
    messages, schemas = document["components"]["messages"], document["components"]["schemas"]
    assert set(messages) == {message_id(c) for c in contract_payloads().values()} | {DEAD_LETTER}
    for (event_type, version), payload_class in contract_payloads().items():
        message = messages[message_id(payload_class)]
        assert message["name"] == event_type
        envelope = resolve(document, message["payload"]["$ref"])
        assert envelope["properties"]["type"] == {"const": event_type}
        assert envelope["properties"]["schema_version"] == {"const": version}
        assert resolve(document, envelope["properties"]["payload"]["$ref"]) is schemas[payload_class.__name__]
        assert message["headers"]["type"] == "object"
        assert message["headers"]["allOf"][0] == {"$ref": f"#/components/schemas/{CLOUDEVENTS_HEADERS}"}
        assert message["bindings"]["kafka"]["key"]["format"] == "uuid"


def test_every_header_the_relay_writes_is_in_the_headers_schema(document: dict[str, Any]) -> None:
    headers = document["components"]["schemas"][CLOUDEVENTS_HEADERS]
    sample = sample_event(SAMPLE_PAYLOADS[0]).model_dump(mode="json")
    traced = dict(stored_event_headers(sample, traceparent=TRACEPARENT))
    untraced = dict(stored_event_headers({**sample, "causation_id": None}))
    assert set(headers["properties"]) == set(traced)
    assert set(headers["required"]) == set(untraced), "what every record carries is required, the rest optional"
    validator = validator_of(document, f"#/components/schemas/{CLOUDEVENTS_HEADERS}")
    assert errors_of(validator, {name: value.decode() for name, value in traced.items()}) == []
    assert errors_of(validator, {**{k: v.decode() for k, v in untraced.items()}, "ce_specversion": "0.3"}) != []


def test_each_golden_example_is_valid_against_its_message_and_a_wrong_one_is_not(document: dict[str, Any]) -> None:
    for name, message in document["components"]["messages"].items():
        for example in message.get("examples", []):
            payload = validator_of(document, f"#/components/messages/{name}/payload")
            headers = validator_of(document, f"#/components/messages/{name}/headers")
            assert errors_of(payload, example["payload"]) == [], name
            assert errors_of(headers, example["headers"]) == [], name
    accepted = document["components"]["messages"]["case.accepted.v1"]
    payload = validator_of(document, "#/components/messages/case.accepted.v1/payload")
    headers = validator_of(document, "#/components/messages/case.accepted.v1/headers")
    wrong = copy.deepcopy(accepted["examples"][0])
    wrong["payload"]["payload"]["location"]["lat"] = 123.0
    assert errors_of(payload, wrong["payload"]) != [], "a latitude beyond 90°"
    assert errors_of(headers, {**wrong["headers"], "ce_type": "case.assigned"}) != [], "another type's header"


def test_each_service_sends_its_events_and_receives_what_it_declares_handlers_for(document: dict[str, Any]) -> None:
    operations = document["operations"]
    for name in SERVICE_NAMES:
        definition = service_spec(name).definition
        sends = operations[f"{name}.publishes"]
        assert (sends["action"], sends["channel"]) == ("send", {"$ref": f"#/channels/{name}"})
        assert operations[f"{name}.deadletters"]["channel"] == {"$ref": "#/channels/deadletter"}
        received = {
            resolve(document, m["$ref"])["$ref"].rsplit("/", 1)[1]
            for key, operation in operations.items()
            if key.startswith(f"{name}.") and operation["action"] == "receive"
            for m in operation["messages"]
        }
        assert received == {message_id(p) for p in definition.events if p.producer is not definition.name}
        for key, operation in operations.items():
            for m in operation["messages"]:
                channel = operation["channel"]["$ref"]
                assert m["$ref"].startswith(channel + "/messages/"), f"{key}: a message of its own channel"


async def test_a_dead_letter_a_consumer_writes_is_what_the_document_describes(document: dict[str, Any]) -> None:
    sent: list[bytes] = []

    class Deadletters:
        async def send_and_wait(self, _topic: str, *, value: bytes, key: bytes | None) -> None:
            sent.append(value)

    consumer = EventConsumer(
        name="triage",
        topics=("caseloop.intake.v1",),
        bootstrap_servers="127.0.0.1:1",
        sink=None,  # type: ignore[arg-type]  # a dead letter reaches no sink
        deadletter=Deadletters(),
        deadletter_topic="caseloop.deadletter.v1",
    )
    record = ConsumerRecord(
        topic="caseloop.intake.v1",
        partition=2,
        offset=41,
        timestamp=1_764_000_000_000,
        timestamp_type=0,
        key=b"poison",
        value=b"{not json",
        checksum=None,
        serialized_key_size=6,
        serialized_value_size=9,
        headers=[("ce_type", b"case.accepted")],
    )
    await consumer._send_to_deadletter(record, TopicPartition(record.topic, record.partition), "undecodable: not JSON")
    validator = validator_of(document, f"#/components/schemas/{DEAD_LETTER}")
    assert errors_of(validator, json.loads(sent[0])) == []
