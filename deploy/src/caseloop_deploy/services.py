"""What the operator tooling knows of each service: its definition (settings, tables, what a replay
rebuilds and reads), composed on a database of the tooling's choosing."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData

from caseloop_events.contracts.clock import SystemClock
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.migrations import Migrations
from caseloop_events.runtime.service import Service, ServiceDefinition, ServiceSettings
from caseloop_events.runtime.storage import OUTBOX_TABLE, PERSONAL_DATA_READS_TABLE

SERVICE_NAMES = ("intake", "triage", "dispatch", "supervision")


class UnknownService(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown service {name!r}: one of {', '.join(SERVICE_NAMES)}")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    definition: ServiceDefinition[Any, Any, Any]

    @property
    def settings_class(self) -> type[ServiceSettings]:
        return self.definition.settings

    @property
    def metadata(self) -> MetaData:
        return self.definition.tables.metadata

    @property
    def projections(self) -> Mapping[str, frozenset[str]]:
        """table → columns that may differ between a live and a rebuilt database."""
        return self.definition.tables.projections

    @property
    def carried_over(self) -> tuple[str, ...]:
        """Tables a replay cannot rebuild: the outbox (the service's own events), the audit trail of
        personal-data reads, and the service's own operational tables."""
        return (OUTBOX_TABLE, PERSONAL_DATA_READS_TABLE, *self.definition.tables.operational)

    @property
    def migrations(self) -> Migrations:
        """The service's migration environment (ADR 0016)."""
        migrations = self.definition.tables.migrations
        assert migrations is not None, f"{self.name} declares no migrations"
        return migrations

    def settings(self, **overrides: Any) -> ServiceSettings:
        """The service's settings from the environment (as the service reads them), with overrides."""
        return self.settings_class(**overrides)

    def service(self, database_url: str, kafka: KafkaSettings) -> Service[Any, Any, Any]:
        """The service composed on ``database_url``, not started: its database, the topics it reads
        and how it rebuilds its projections — what a replay needs, nothing running."""
        return Service(self.definition, self.settings(database_url=database_url), kafka, SystemClock())


def service_spec(name: str) -> ServiceSpec:
    if name not in SERVICE_NAMES:
        raise UnknownService(name)
    app = importlib.import_module(f"caseloop_{name}.app")
    return ServiceSpec(name=name, definition=getattr(app, name.upper()))
