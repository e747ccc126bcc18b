"""The AsyncAPI 3.0 document of caseloop's topics, generated from the event contracts.

``python -m caseloop_deploy.asyncapi`` (``make asyncapi``) writes ``docs/asyncapi.yaml``; with
``--check`` it only says whether the file is what the contracts make now (``make test`` runs that
check). Everything in the document comes from the code, so it cannot say what the code does not:

- a channel per topic (``runtime.topics``), each with the messages its producer publishes;
- a message per event type and version (the contracts' registry): its payload is the whole
  envelope, its headers the CloudEvents attributes ``runtime.kafka.stored_event_headers`` writes,
  its key the case id, its example the golden sample;
- every JSON Schema (pydantic's, with its definitions shared under ``components/schemas``);
- each service's operations: it sends its own events and its dead letters, and receives from the
  other services' topics the event types its definition declares handlers for.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from caseloop_deploy.services import SERVICE_NAMES, service_spec
from caseloop_events.contracts.envelope import Envelope, EventPayload, Producer, registered_payloads
from caseloop_events.contracts.schema import SAMPLE_PAYLOADS, sample_event
from caseloop_events.runtime.kafka import (
    CLOUDEVENTS_SPEC_VERSION,
    EVENT_CONTENT_TYPE,
    TRACEPARENT_HEADER,
    KafkaSettings,
    event_source,
    stored_event_headers,
)
from caseloop_events.runtime.topics import DEFAULT_NAMESPACE, TOPIC_CONFIG, deadletter_topic, topic_of

ASYNCAPI_VERSION = "3.0.0"
CONTRACTS_PACKAGE = "caseloop_events.contracts."
DEFAULT_OUTPUT = Path("docs/asyncapi.yaml")
KAFKA_BINDING_VERSION = "0.5.0"
#: The JSON Schemas of the document live here; pydantic writes its references to this template.
SCHEMA_REF = "#/components/schemas/{model}"
CLOUDEVENTS_HEADERS = "CloudEventsHeaders"
DEAD_LETTER = "DeadLetter"
DEADLETTER_CHANNEL = "deadletter"
UUID_STRING: dict[str, Any] = {"type": "string", "format": "uuid"}
TRACEPARENT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
}

#: Each header a record carries (runtime.kafka.stored_event_headers): its schema and what it means.
#: Kafka header values are bytes; these are their UTF-8 text.
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "ce_specversion": {"const": CLOUDEVENTS_SPEC_VERSION, "description": "CloudEvents specversion"},
    "ce_id": {**UUID_STRING, "description": "CloudEvents id: the envelope's event_id"},
    "ce_source": {
        "type": "string",
        "enum": [event_source(p.value) for p in Producer],
        "description": "CloudEvents source: the producing service, /caseloop/<producer>",
    },
    "ce_type": {"type": "string", "description": "CloudEvents type: the envelope's type, e.g. case.assigned"},
    "ce_time": {
        "type": "string",
        "format": "date-time",
        "description": "CloudEvents time (RFC 3339, UTC): the envelope's occurred_at",
    },
    "ce_subject": {
        **UUID_STRING,
        "description": "CloudEvents subject: the case id (also the record's key; a region's stream id for "
        "region.mode_switched)",
    },
    "content-type": {
        "const": EVENT_CONTENT_TYPE,
        "description": "CloudEvents datacontenttype: the value is the whole envelope as JSON",
    },
    "ce_schemaversion": {
        "type": "string",
        "pattern": "^[1-9][0-9]*$",
        "description": "extension: the envelope's schema_version of the type",
    },
    "ce_correlationid": {
        **UUID_STRING,
        "description": "extension: the envelope's correlation_id (the request that started the chain)",
    },
    "ce_causationid": {
        **UUID_STRING,
        "description": "extension: the envelope's causation_id (the event that caused this one), when it has one",
    },
    "ce_traceparent": {
        **TRACEPARENT_SCHEMA,
        "description": "extension: the W3C trace context of the event, when it was traced",
    },
    TRACEPARENT_HEADER: {
        **TRACEPARENT_SCHEMA,
        "description": "the same W3C trace context as the plain header tracing libraries read",
    },
}
#: Headers a record carries only when the event has the attribute.
OPTIONAL_HEADERS = frozenset({"ce_causationid", "ce_traceparent", TRACEPARENT_HEADER})

#: What the consumers write to the dead-letter topic (runtime.consumer: ``_send_to_deadletter``).
DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "title": DEAD_LETTER,
    "description": "A record a consumer could not take (undecodable, unknown type, failing validation, or one "
    "its handler always refused): the raw bytes, the error and where it came from. Nothing is dropped silently.",
    "type": "object",
    "required": ["error", "consumer", "origin", "key_b64", "value_b64", "headers"],
    "properties": {
        "error": {"type": "string", "description": "why the record was dead-lettered (no personal data)"},
        "consumer": {"type": "string", "description": "the service whose consumer gave up on it"},
        "origin": {
            "type": "object",
            "required": ["topic", "partition", "offset", "timestamp"],
            "properties": {
                "topic": {"type": "string"},
                "partition": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
                "timestamp": {"type": "integer", "description": "the record's timestamp, in ms since the epoch"},
            },
        },
        "key_b64": {"type": ["string", "null"], "description": "the record's key, base64"},
        "value_b64": {"type": ["string", "null"], "description": "the record's value, base64"},
        "headers": {
            "type": "array",
            "description": "the record's headers: [name, value in base64] pairs",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        },
    },
}


class ConflictingSchemas(ValueError):
    """Two contracts define a JSON Schema of the same name differently: the document would be wrong."""


def contract_payloads() -> dict[tuple[str, int], type[EventPayload]]:
    """Every event type and version caseloop's contracts define, in order. Defining a payload class
    registers it, so a test's own classes are in the registry too; they are not caseloop's events."""
    return {
        key: payload_class
        for key, payload_class in sorted(registered_payloads().items())
        if payload_class.__module__.startswith(CONTRACTS_PACKAGE)
    }


def message_id(payload_class: type[EventPayload]) -> str:
    """e.g. ``case.assigned.v1``: a type may have more versions, each a message of its own."""
    return f"{payload_class.event_type}.v{payload_class.schema_version}"


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)}


def _docstring(cls: type) -> str | None:
    """The class's own docstring (not one inherited from a base), as one paragraph of text."""
    own = cls.__dict__.get("__doc__")
    return " ".join(inspect.cleandoc(own).split()) if own else None


def _share(schemas: dict[str, Any], found: Mapping[str, Any]) -> None:
    for name, schema in found.items():
        if name in schemas and schemas[name] != schema:
            raise ConflictingSchemas(f"two different JSON Schemas are named {name!r}")
        schemas[name] = schema


def _envelope_schema(payload_class: type[EventPayload], schemas: dict[str, Any]) -> dict[str, Any]:
    """The envelope carrying ``payload_class`` (what the record's value is), its definitions shared."""
    envelope = Envelope.model_json_schema(ref_template=SCHEMA_REF)
    definitions = envelope.pop("$defs", {})
    definitions.pop(EventPayload.__name__, None)  # the base: each envelope names its own payload
    payload = payload_class.model_json_schema(ref_template=SCHEMA_REF)
    _share(schemas, {**definitions, **payload.pop("$defs", {}), payload_class.__name__: payload})
    envelope["title"] = f"{payload_class.event_type} v{payload_class.schema_version}"
    envelope["description"] = f"The envelope of {payload_class.event_type}, as the record's value (JSON)."
    envelope["properties"] = {
        **envelope["properties"],
        "type": {"const": payload_class.event_type},
        "schema_version": {"const": payload_class.schema_version},
        "producer": {"const": payload_class.producer.value},
        "payload": {"$ref": SCHEMA_REF.format(model=payload_class.__name__)},
    }
    return envelope


def _message(payload_class: type[EventPayload], sample: Envelope) -> dict[str, Any]:
    headers = {
        "type": "object",  # AsyncAPI: a message's headers MUST be an object
        "allOf": [
            _ref("components", "schemas", CLOUDEVENTS_HEADERS),
            {
                "type": "object",
                "properties": {
                    "ce_type": {"const": payload_class.event_type},
                    "ce_source": {"const": event_source(payload_class.producer.value)},
                    "ce_schemaversion": {"const": str(payload_class.schema_version)},
                },
            },
        ],
    }
    message: dict[str, Any] = {
        "name": payload_class.event_type,
        "title": f"{payload_class.__name__} (v{payload_class.schema_version})",
    }
    description = _docstring(payload_class)
    if description:
        message["summary"] = description
    envelope = sample.model_dump(mode="json")
    message |= {
        "contentType": EVENT_CONTENT_TYPE,
        "headers": headers,
        "payload": _ref("components", "schemas", message_id(payload_class)),
        "bindings": {
            "kafka": {
                "key": {
                    **UUID_STRING,
                    "description": "the case id (a region's stream id for region.mode_switched): all of a case's "
                    "events share a partition",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "examples": [
            {
                "name": "golden-sample",
                "summary": f"libs/events/golden/{message_id(payload_class)}.json",
                "headers": {name: value.decode() for name, value in stored_event_headers(envelope)},
                "payload": envelope,
            }
        ],
    }
    return message


def _channel_bindings() -> dict[str, Any]:
    partitions = KafkaSettings.model_fields["caseloop_topic_partitions"].default
    return {
        "kafka": {
            "partitions": partitions,
            "topicConfiguration": {name: int(value) for name, value in TOPIC_CONFIG.items()},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def asyncapi_document(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the topics of ``namespace``, from the contracts and the services'
    definitions."""
    samples = {(p.event_type, p.schema_version): sample_event(p) for p in SAMPLE_PAYLOADS}
    payloads = list(contract_payloads().items())
    missing = [f"{t} v{v}" for (t, v), _ in payloads if (t, v) not in samples]
    if missing:
        raise ValueError(f"no golden sample of {', '.join(missing)}: add one to SAMPLE_PAYLOADS")

    schemas: dict[str, Any] = {
        CLOUDEVENTS_HEADERS: {
            "title": CLOUDEVENTS_HEADERS,
            "description": "The record's headers: CloudEvents 1.0, Kafka protocol binding, binary content mode. "
            "caseloop's own attributes are extensions (lowercase letters and digits only).",
            "type": "object",
            "required": [name for name in HEADER_SCHEMAS if name not in OPTIONAL_HEADERS],
            "properties": HEADER_SCHEMAS,
        },
        DEAD_LETTER: DEAD_LETTER_SCHEMA,
    }
    messages: dict[str, Any] = {}
    for key, payload_class in payloads:
        _share(schemas, {message_id(payload_class): _envelope_schema(payload_class, schemas)})
        messages[message_id(payload_class)] = _message(payload_class, samples[key])
    messages[DEAD_LETTER] = {
        "name": "deadletter",
        "title": "A dead letter",
        "summary": "A record a consumer gave up on, with the error and its origin; the key is the record's own.",
        "contentType": "application/json",
        "payload": _ref("components", "schemas", DEAD_LETTER),
    }

    channels: dict[str, Any] = {}
    for producer in Producer:
        produced = [message_id(c) for _, c in payloads if c.producer is producer]
        channels[producer.value] = {
            "address": topic_of(producer, namespace),
            "title": f"{producer.value}'s events",
            "description": f"Every event {producer.value} produces; {producer.value} is the only writer. Keyed by "
            "case id, so a case's events keep their order; retention infinite: the log is the system of record.",
            "messages": {name: _ref("components", "messages", name) for name in produced},
            "bindings": _channel_bindings(),
        }
    channels[DEADLETTER_CHANNEL] = {
        "address": deadletter_topic(namespace),
        "title": "dead letters",
        "description": "What any service's consumer could not take, for the operator (caseloop deadletters).",
        "messages": {DEAD_LETTER: _ref("components", "messages", DEAD_LETTER)},
        "bindings": _channel_bindings(),
    }

    operations: dict[str, Any] = {}
    for name in SERVICE_NAMES:
        definition = service_spec(name).definition
        own = channels[definition.name.value]
        operations[f"{name}.publishes"] = {
            "action": "send",
            "channel": _ref("channels", definition.name.value),
            "title": f"{name} publishes its events",
            "summary": definition.summary,
            "description": "From its outbox, in commit order, by its relay.",
            "messages": [_ref("channels", definition.name.value, "messages", m) for m in own["messages"]],
        }
        for producer in definition.producers_read():
            if producer is definition.name:
                continue  # its own topic it reads only to replay
            handled = sorted(message_id(p) for p in definition.events if p.producer is producer)
            operations[f"{name}.reads.{producer.value}"] = {
                "action": "receive",
                "channel": _ref("channels", producer.value),
                "title": f"{name} reads {producer.value}'s events",
                "description": f"{name} handles these types and passes over every other record of the topic.",
                "messages": [_ref("channels", producer.value, "messages", m) for m in handled],
            }
        operations[f"{name}.deadletters"] = {
            "action": "send",
            "channel": _ref("channels", DEADLETTER_CHANNEL),
            "title": f"{name} dead-letters what it cannot take",
            "messages": [_ref("channels", DEADLETTER_CHANNEL, "messages", DEAD_LETTER)],
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "caseloop events",
            "version": version("caseloop-events"),
            "description": "The topics of caseloop, the event backbone of a city's closed loop of social-governance "
            "cases: screening (intake), judgment (triage), assignment (dispatch), supervision and feedback "
            "(supervision). Each record is a CloudEvent in the Kafka protocol binding's binary content mode: "
            "the attributes in `ce_` headers, the value the whole event envelope as JSON, the key the case id. "
            f"Topic names start with the namespace (`{DEFAULT_NAMESPACE}`; CASELOOP_TOPIC_NAMESPACE). "
            "Generated from the contracts by `make asyncapi`: do not edit.",
        },
        "defaultContentType": EVENT_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    """Writes a schema used twice out twice: YAML anchors and aliases would puzzle readers and tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(document: Mapping[str, Any]) -> str:
    """The document as YAML, in the order it was built (it reads top down: channels, operations,
    components), non-ASCII text kept as it is."""
    header = "# The AsyncAPI document of caseloop's topics. Generated by `make asyncapi`: do not edit.\n"
    body = yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return header + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the document goes")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    text = render(asyncapi_document())
    if args.check:
        if not args.output.exists() or args.output.read_text(encoding="utf-8") != text:
            print(f"{args.output} is not what the contracts make now: run `make asyncapi`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
