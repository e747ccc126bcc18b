"""Kafka connection settings and the encoding of events on the wire."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from caseloop_events.contracts.envelope import Envelope, Producer
from caseloop_events.runtime.topics import DEFAULT_NAMESPACE, all_topics, deadletter_topic, topic_of


class KafkaSettings(BaseSettings):
    """Broker settings shared by every service (environment variables, no prefix)."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    #: Real Kafka and noida-db support idempotent producers; the Tansu broker does not.
    kafka_idempotent_producer: bool = True
    caseloop_topic_partitions: int = Field(default=6, ge=1)
    caseloop_topic_replication: int = Field(default=1, ge=1)
    caseloop_topic_namespace: str = Field(default=DEFAULT_NAMESPACE, pattern=r"^[a-zA-Z0-9_-]+$")
    #: PLAINTEXT (make run, compose) or SSL: TLS with a client certificate, the identity the broker's
    #: ACLs name (on Kubernetes, the certificate Strimzi issues for the service's KafkaUser).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL"] = "PLAINTEXT"
    #: The CA that signed the brokers' certificates, and this client's certificate and key (PEM files).
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _tls_needs_its_files(self) -> KafkaSettings:
        if self.kafka_security_protocol == "SSL":
            files = {
                "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
                "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
            }
            missing = [variable for variable, path in files.items() if path is None]
            if missing:
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL=SSL needs {', '.join(missing)}")
        return self

    def security(self) -> dict[str, Any]:
        """The keyword arguments that connect an aiokafka client as configured: none for PLAINTEXT;
        for SSL, a context that checks the brokers against the CA and presents the client's certificate."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return {}
        context = create_ssl_context(
            cafile=str(self.kafka_ssl_cafile),
            certfile=str(self.kafka_ssl_certfile),
            keyfile=str(self.kafka_ssl_keyfile),
        )
        return {"security_protocol": "SSL", "ssl_context": context}

    def topic_of(self, producer: Producer) -> str:
        """The topic ``producer`` writes to, in this namespace."""
        return topic_of(producer, self.caseloop_topic_namespace)

    @property
    def deadletter_topic(self) -> str:
        return deadletter_topic(self.caseloop_topic_namespace)

    @property
    def all_topics(self) -> tuple[str, ...]:
        return all_topics(self.caseloop_topic_namespace)

    def producer(self, client_id: str) -> AIOKafkaProducer:
        """A producer that waits for every in-sync replica (acks=all)."""
        return AIOKafkaProducer(
            bootstrap_servers=self.kafka_bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=self.kafka_idempotent_producer,
            linger_ms=5,
            request_timeout_ms=30000,
            **self.security(),
        )


def client_security() -> dict[str, Any]:
    """The security keyword arguments of every other Kafka client this process makes (consumers, the
    topic admin), from the environment: a process has one identity on the broker, so the clients
    built from a bootstrap address alone connect as the producer does."""
    return KafkaSettings().security()


class BrokerRequests:
    """Requests this process sent to the broker (fetches, produce requests, metadata, offsets): with
    the database's round trips, what a closed case costs (docs/performance.md)."""

    sent = 0
    _counting = False

    @classmethod
    def count(cls) -> None:
        """Count every request aiokafka's clients of this process send, from now on. aiokafka has no
        hook for it: its client's one method that sends a request to a broker is wrapped, once."""
        if cls._counting:
            return
        cls._counting = True
        send = AIOKafkaClient.send

        async def counted(client: AIOKafkaClient, *args: Any, **kwargs: Any) -> Any:
            cls.sent += 1
            return await send(client, *args, **kwargs)

        AIOKafkaClient.send = counted


def event_key(event: Envelope) -> bytes:
    """The message key: the case id, so all of a case's events share a partition."""
    return str(event.case_id).encode()


#: The CloudEvents version the headers follow (the Kafka protocol binding, binary content mode).
CLOUDEVENTS_SPEC_VERSION = "1.0"
#: The record's value is the whole envelope as JSON: the CloudEvent's data.
EVENT_CONTENT_TYPE = "application/json"
#: The plain W3C header that tracing libraries read, next to the CloudEvents extension.
TRACEPARENT_HEADER = "traceparent"


def event_source(producer: str) -> str:
    """The CloudEvents ``source`` of the events a service produces, e.g. ``/caseloop/dispatch``."""
    return f"/caseloop/{producer}"


def event_headers(event: Envelope) -> list[tuple[str, bytes]]:
    """The record headers of an event: its CloudEvents attributes (see ``stored_event_headers``)."""
    return stored_event_headers(event.model_dump(mode="json"))


def stored_event_headers(envelope: Mapping[str, Any], *, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """The record headers of an envelope given as its JSON fields (an outbox row, without validating
    its payload): the CloudEvents 1.0 Kafka binding in binary content mode, so the CloudEvents SDK,
    kcat or a Kafka Connect sink reads the topics without caseloop's code. The value stays the whole
    envelope. caseloop's own attributes are extensions, named as CloudEvents requires (lowercase
    letters and digits only: ``schemaversion``, not ``schema_version``); ``traceparent``, when the
    event has a trace, also goes as the plain header tracing libraries read."""
    headers = [
        ("ce_specversion", CLOUDEVENTS_SPEC_VERSION),
        ("ce_id", str(envelope["event_id"])),
        ("ce_source", event_source(str(envelope["producer"]))),
        ("ce_type", str(envelope["type"])),
        # The envelope's JSON already writes it in RFC 3339 (pydantic: UTC as "…Z").
        ("ce_time", str(envelope["occurred_at"])),
        ("ce_subject", str(envelope["case_id"])),
        ("content-type", EVENT_CONTENT_TYPE),
        ("ce_schemaversion", str(envelope["schema_version"])),
        ("ce_correlationid", str(envelope["correlation_id"])),
    ]
    if envelope.get("causation_id") is not None:
        headers.append(("ce_causationid", str(envelope["causation_id"])))
    if traceparent is not None:
        headers += [("ce_traceparent", traceparent), (TRACEPARENT_HEADER, traceparent)]
    return [(name, value.encode()) for name, value in headers]


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def _body_field(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    try:
        value: object = json.loads(record.value or b"").get(name)
    except (ValueError, AttributeError):  # not JSON, not UTF-8, or not an object
        return None
    return value if isinstance(value, str) else None


def record_event_type(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The event type a record carries: its ``ce_type`` header (every relay since the first has set
    it, under this name), else the ``type`` its body names; None for anything else on the topic."""
    return _header(record, "ce_type") or _body_field(record, "type")


def record_event_id(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The event id a record carries: its ``ce_id`` header, else the ``event_id`` its body names (a
    record written without headers); None for anything else on the topic (a poison message someone
    else wrote must not stop the relay's check)."""
    found = _header(record, "ce_id") or _body_field(record, "event_id")
    if found is None:
        return None
    try:
        return str(UUID(found))
    except ValueError:
        return None


def record_traceparent(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The W3C trace context a record carries (its ``traceparent`` header, or the CloudEvents
    extension ``ce_traceparent``), or None."""
    return _header(record, "traceparent") or _header(record, "ce_traceparent")
