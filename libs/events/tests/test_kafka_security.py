"""Kafka over TLS with a client certificate (KAFKA_SECURITY_PROTOCOL=SSL): the identity a broker's
ACLs name, as Strimzi issues it for a KafkaUser. Proved against a TLS listener of our own that asks
for a client certificate and records whose it got."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from caseloop_events.runtime.kafka import KafkaSettings, client_security


@dataclass(frozen=True)
class Certificates:
    ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    folder: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *, server: bool = False
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    certificate = builder.sign(issuer_key, hashes.SHA256())
    (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return subject, key


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """A cluster CA, a broker certificate for 127.0.0.1 and a client certificate it signed."""
    ca = _issue(tmp_path, "cluster-ca", None)
    _issue(tmp_path, "broker", ca, server=True)
    _issue(tmp_path, "caseloop-intake", ca)
    return Certificates(
        ca=tmp_path / "cluster-ca.crt",
        broker_cert=tmp_path / "broker.crt",
        broker_key=tmp_path / "broker.key",
        client_cert=tmp_path / "caseloop-intake.crt",
        client_key=tmp_path / "caseloop-intake.key",
    )


def use_tls(monkeypatch: pytest.MonkeyPatch, certificates: Certificates) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(certificates.ca))
    monkeypatch.setenv("KAFKA_SSL_CERTFILE", str(certificates.client_cert))
    monkeypatch.setenv("KAFKA_SSL_KEYFILE", str(certificates.client_key))


def test_by_default_the_clients_connect_in_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_SECURITY_PROTOCOL", raising=False)

    assert KafkaSettings().security() == {}
    assert client_security() == {}


def test_tls_without_its_certificate_files_is_refused_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/caseloop/kafka-ca/ca.crt")

    with pytest.raises(ValidationError, match="KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE"):
        KafkaSettings()


def test_tls_checks_the_broker_against_the_cluster_ca(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    use_tls(monkeypatch, certificates)

    options = client_security()

    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


async def test_a_consumer_presents_the_service_certificate_to_a_tls_broker(
    monkeypatch: pytest.MonkeyPatch, certificates: Certificates
) -> None:
    use_tls(monkeypatch, certificates)
    listener = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certificates.ca))
    listener.load_cert_chain(str(certificates.broker_cert), str(certificates.broker_key))
    listener.verify_mode = ssl.CERT_REQUIRED
    presented: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("ssl_object").getpeercert()
        subject = dict(part[0] for part in peer["subject"])
        if not presented.done():
            presented.set_result(subject["commonName"])
        writer.close()  # not a broker: the handshake is what this test is about

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=listener)
    port = server.sockets[0].getsockname()[1]
    consumer = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=2000, **client_security())
    try:
        with pytest.raises(KafkaError):
            await consumer.start()
        assert await asyncio.wait_for(presented, timeout=10) == "caseloop-intake"
    finally:
        await consumer.stop()
        server.close()
        await server.wait_closed()
