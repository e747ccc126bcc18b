"""A service of the runtime's own tests: as small as a service can be, built the way every service
is — a definition composed by the runtime — so the runtime is tested on a real broker and real
databases without any of the four services' rules.

The probe is a small supervision: it reads dispatch's acknowledgements (``case.acknowledged``),
keeps each case's count of acknowledgements and verifications in a projection (``probe_cases``),
and takes two commands: ``Verify`` emits a verification (``case.verified``), ``Close`` another
only for a case verified already."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, Integer, MetaData, String, Table

from caseloop_events.contracts.dispatch import CaseAcknowledged
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, new_event
from caseloop_events.contracts.folding import StreamModel
from caseloop_events.contracts.supervision import CaseVerified
from caseloop_events.runtime.service import ServiceDefinition, ServiceSettings, ServiceTables, Wiring, keep
from caseloop_events.runtime.storage import RUNTIME_PROJECTIONS, define_runtime_tables
from caseloop_events.runtime.streams import Stream
from caseloop_events.runtime.unit_of_work import UnitOfWork


class ProbeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROBE_", extra="ignore")
    service_name: ClassVar[str] = "probe"
    port: int = 8999


metadata = MetaData()
probe_cases = Table(
    "probe_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("acknowledgements", Integer, nullable=False),
    Column("verifications", Integer, nullable=False),
)
runtime_tables = define_runtime_tables(metadata)


@dataclass
class ProbeDeps:
    """What the probe's handler notes, and the events it refuses (as a handler's bug would)."""

    handled: list[UUID] = field(default_factory=list)
    refused: set[UUID] = field(default_factory=set)
    refusals: int = 0


#: A case, as the probe folds it: the types of its events, in causal order.
ProbeCase = tuple[str, ...]
Work = UnitOfWork[ProbeDeps, ProbeCase]

CASES = StreamModel[ProbeCase](lambda _case_id: (), lambda case, event: (*case, event.type))


async def note(event: Envelope, uow: Work) -> None:
    """Note the acknowledgement; refuse it when the test said so."""
    if event.event_id in uow.deps.refused:
        uow.deps.refusals += 1
        raise ValueError("this event can never be handled")
    uow.deps.handled.append(event.event_id)


@dataclass(frozen=True)
class Verify:
    case_id: UUID
    by: str


async def verify(command: Verify, uow: Work) -> int:
    """Emit a verification of the case; returns how many events the case has now."""
    stream = await uow.stream(command.case_id)
    uow.emit(a_verification(command.case_id, command.by))
    return len(stream.state)


class NotVerified(Exception):
    """The case has no verification to close it on."""


@dataclass(frozen=True)
class Close:
    case_id: UUID
    by: str


async def close(command: Close, uow: Work) -> int:
    """Verify the case once more, as closing it; refused (``NotVerified``) unless it was verified."""
    stream = await uow.stream(command.case_id)
    if CaseVerified.event_type not in stream.state:
        raise NotVerified(f"case {command.case_id} has no verification")
    uow.emit(a_verification(command.case_id, command.by))
    return len(stream.state)


async def project(stream: Stream[ProbeCase], uow: Work) -> None:
    case = stream.state
    uow.put(
        probe_cases,
        {
            "case_id": str(stream.stream_id),
            "acknowledgements": case.count(CaseAcknowledged.event_type),
            "verifications": case.count(CaseVerified.event_type),
        },
    )


def an_acknowledgement(case_id: UUID | None = None, by: str = "wang.wei") -> Envelope:
    """An acknowledgement of a case (a new one unless named), as dispatch would emit it."""
    return new_event(
        CaseAcknowledged(unit_id="U-1", acknowledged_by=by),
        case_id=case_id or uuid.uuid4(),
        actor=Actor(id=by, role=ActorRole.UNIT, unit_id="U-1"),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
    )


def a_verification(case_id: UUID | None = None, by: str = "supervisor-1") -> Envelope:
    """A verification of a case (a new one unless named), as supervision would emit it."""
    return new_event(
        CaseVerified(verified_by=by),
        case_id=case_id or uuid.uuid4(),
        actor=Actor(id=by, role=ActorRole.SUPERVISOR),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
    )


def _dependencies(_wiring: Wiring[ProbeSettings]) -> ProbeDeps:
    return ProbeDeps()


#: The probe writes supervision's topic (in the test's own namespace) and reads dispatch's.
PROBE = ServiceDefinition[ProbeSettings, ProbeDeps, ProbeCase](
    name=Producer.SUPERVISION,
    title="probe",
    summary="the runtime's test service",
    settings=ProbeSettings,
    tables=ServiceTables(metadata, runtime_tables, {"probe_cases": frozenset(), **RUNTIME_PROJECTIONS}),
    model=CASES,
    commands={Verify: verify, Close: close},
    events={CaseAcknowledged: note, CaseVerified: keep},
    project=project,
    routers=[],
    dependencies=_dependencies,
)
