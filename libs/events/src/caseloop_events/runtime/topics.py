"""Topic names and their creation (DESIGN.md §2: one topic per producing service)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from caseloop_events.contracts.envelope import Producer

log = logging.getLogger(__name__)

#: Topic names start with this; another namespace isolates a test run or a training copy.
DEFAULT_NAMESPACE = "caseloop"


def topic_of(producer: Producer, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The topic a service alone writes to, e.g. ``caseloop.intake.v1``."""
    return f"{namespace}.{producer.value}.v1"


def deadletter_topic(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.deadletter.v1"


def all_topics(namespace: str = DEFAULT_NAMESPACE) -> tuple[str, ...]:
    return (*(topic_of(p, namespace) for p in Producer), deadletter_topic(namespace))


#: Infinite retention: the log is the system of record.
TOPIC_CONFIG = {"retention.ms": "-1"}


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    replication_factor: int,
    topics: Iterable[str],
    security: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics with an explicit partition count; existing topics are left as they are.
    ``security``: how the admin client connects (``KafkaSettings.security()``), plaintext if none.

    A topic that exists with another partition count is an error: keys would then hash
    to other partitions and a case's events would split across them.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="caseloop-topic-admin", **(security or {})
    )
    await admin.start()
    try:
        topics = list(topics)
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            # Another service may create them between our list and our create.
            with suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                            topic_configs=TOPIC_CONFIG,
                        )
                        for t in missing
                    ]
                )
            log.info("created topics %s with %d partitions", missing, partitions)
        for description in await admin.describe_topics(topics):
            found = len(description.get("partitions", []))
            if found and found != partitions:
                raise RuntimeError(
                    f"topic {description['topic']} has {found} partitions, configured {partitions}: "
                    "set CASELOOP_TOPIC_PARTITIONS to match the existing topics"
                )
    finally:
        await admin.close()
