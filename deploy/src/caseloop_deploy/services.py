"""What the operator tooling knows of each service: its settings, its composition root, and which
of its tables a replay rebuilds (the service declares them beside its tables)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy import MetaData

from caseloop_events.contracts.clock import SystemClock
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import ServiceRuntime, ServiceSettings
from caseloop_events.runtime.storage import OUTBOX_TABLE, PERSONAL_DATA_READS_TABLE

SERVICE_NAMES = ("intake", "triage", "dispatch", "supervision")


class UnknownService(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown service {name!r}: one of {', '.join(SERVICE_NAMES)}")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    settings_class: type[ServiceSettings]
    create_app: Callable[..., FastAPI]
    metadata: MetaData
    #: table → columns that may differ between a live and a rebuilt database.
    projections: Mapping[str, frozenset[str]]
    #: Tables a replay cannot rebuild: the outbox (the service's own events) and the service's own.
    carried_over: tuple[str, ...]

    def settings(self, **overrides: Any) -> ServiceSettings:
        """The service's settings from the environment (as the service reads them), with overrides."""
        return self.settings_class(**overrides)

    def runtime(self, database_url: str, kafka: KafkaSettings) -> ServiceRuntime:
        """The service wired by its own composition root on ``database_url``, not started: its
        database, the topics it reads and its event handler — what a replay needs, nothing running."""
        app = self.create_app(self.settings(database_url=database_url), kafka, SystemClock())
        runtime: ServiceRuntime = app.state.runtime
        return runtime


def service_spec(name: str) -> ServiceSpec:
    if name not in SERVICE_NAMES:
        raise UnknownService(name)
    package = f"caseloop_{name}"
    config = importlib.import_module(f"{package}.config")
    app = importlib.import_module(f"{package}.app")
    tables = importlib.import_module(f"{package}.adapters.tables")
    return ServiceSpec(
        name=name,
        settings_class=getattr(config, f"{name.capitalize()}Settings"),
        create_app=app.create_app,
        metadata=tables.metadata,
        projections=tables.PROJECTIONS,
        carried_over=(OUTBOX_TABLE, PERSONAL_DATA_READS_TABLE, *tables.OPERATIONAL_TABLES),
    )
