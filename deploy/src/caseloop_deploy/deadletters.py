"""The dead-letter topic: what consumers could not take, with the raw record, the error and the origin."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from caseloop_deploy.logread import log_reader, log_writer, partitions_of, read_all
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.personal_data import mask_payload


class NoSuchDeadLetter(LookupError):
    def __init__(self, letter_id: str) -> None:
        super().__init__(f"no dead letter {letter_id!r} (see `caseloop deadletter list`)")


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    dead_lettered_at: datetime
    body: dict[str, Any]

    @property
    def letter_id(self) -> str:
        """How an operator names it: ``partition-offset`` on the dead-letter topic."""
        return f"{self.partition}-{self.offset}"

    @property
    def consumer(self) -> str:
        return str(self.body.get("consumer", "?"))

    @property
    def origin(self) -> dict[str, Any]:
        origin: dict[str, Any] = self.body.get("origin", {})
        return origin

    @property
    def error(self) -> str:
        return str(self.body.get("error", ""))

    def raw(self, part: str) -> bytes | None:
        encoded = self.body.get(f"{part}_b64")
        return None if encoded is None else base64.b64decode(encoded)

    def shown(self) -> dict[str, Any]:
        """Everything about it, the original record decoded where it is text."""
        value = self.raw("value")
        key = self.raw("key")
        return {
            "id": self.letter_id,
            "dead_lettered_at": self.dead_lettered_at.isoformat(),
            "consumer": self.consumer,
            "origin": self.origin,
            "error": self.error,
            "key": key.decode(errors="replace") if key is not None else None,
            "value": _text_or_base64(value),
            "headers": {k: base64.b64decode(v).decode(errors="replace") for k, v in self.body.get("headers", [])},
        }


def _text_or_base64(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return text
    # A case report's reporter is shown masked, as everywhere outside a single entitled read.
    if isinstance(decoded, dict) and isinstance(decoded.get("payload"), dict):
        decoded["payload"] = mask_payload(decoded["payload"])
    return decoded


async def read_dead_letters(kafka: KafkaSettings) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    async with log_reader(kafka.kafka_bootstrap_servers) as consumer:
        partitions = await partitions_of(consumer, [kafka.deadletter_topic])
        async for batch in read_all(consumer, partitions):
            for tp, record in batch:
                try:
                    body = json.loads(record.value or b"{}")
                except json.JSONDecodeError:
                    body = {"error": "the dead letter itself is not JSON", "value_b64": _b64(record.value)}
                at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                letters.append(DeadLetter(tp.partition, record.offset, at, body))
    return sorted(letters, key=lambda letter: (letter.dead_lettered_at, letter.partition, letter.offset))


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


async def find_dead_letter(kafka: KafkaSettings, letter_id: str) -> DeadLetter:
    for letter in await read_dead_letters(kafka):
        if letter.letter_id == letter_id:
            return letter
    raise NoSuchDeadLetter(letter_id)


async def retry_dead_letter(kafka: KafkaSettings, letter_id: str) -> str:
    """Send the original record again to the topic it came from; returns where it went.

    Every consumer of that topic reads it again: those that processed it skip it by event id,
    the one that failed (fixed since, or its bug fixed) gets another go. Retrying twice is harmless
    in the same way.
    """
    letter = await find_dead_letter(kafka, letter_id)
    topic = str(letter.origin.get("topic", ""))
    if not topic:
        raise NoSuchDeadLetter(f"{letter_id} (it names no origin topic)")
    headers = [(k, base64.b64decode(v)) for k, v in letter.body.get("headers", [])]
    async with log_writer(kafka, "caseloop-deadletter-retry") as producer:
        sent = await producer.send_and_wait(topic, value=letter.raw("value"), key=letter.raw("key"), headers=headers)
    return f"{topic}[{sent.partition}]@{sent.offset}"
