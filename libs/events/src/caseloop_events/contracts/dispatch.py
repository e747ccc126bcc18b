"""Assignment facts, published by dispatch on ``caseloop.dispatch.v1``."""

from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, Field

from caseloop_events.contracts.envelope import EventPayload, Producer


class AssignmentRoute(StrEnum):
    """How dispatch chose the unit."""

    RESPONSIBILITY_LIST = "responsibility_list"
    TOWN_FALLBACK = "town_fallback"
    DISTRICT_FALLBACK = "district_fallback"
    TRANSFER = "transfer"
    DISPATCHER = "dispatcher"
    REOPENED = "reopened"


class CaseAssigned(EventPayload):
    """A case was assigned to a unit (the lead), optionally with assisting units.

    Every (re)assignment is one of these: the first routing, a re-route after a return or a
    re-judgment, a transfer, a dispatcher's joint assignment, a reopened case sent back, and a
    case handed to its fallback owner (town government, then district) when a limit is reached.
    """

    event_type: ClassVar[str] = "case.assigned"
    producer: ClassVar[Producer] = Producer.DISPATCH

    unit_id: str
    unit_name: str
    town_code: str
    route: AssignmentRoute
    reason: str
    assisting_unit_ids: tuple[str, ...] = ()
    returns_so_far: int = 0
    fallback_owner: bool = Field(
        default=False, description="the unit is the case's fallback owner (兜底): it may not return the case"
    )


class CaseAcknowledged(EventPayload):
    """The assigned unit signed for the case (签收); the handling clock starts here."""

    event_type: ClassVar[str] = "case.acknowledged"
    producer: ClassVar[Producer] = Producer.DISPATCH

    unit_id: str
    acknowledged_by: str


class CaseReturned(EventPayload):
    """The assigned unit sent the case back (退单), saying why."""

    event_type: ClassVar[str] = "case.returned"
    producer: ClassVar[Producer] = Producer.DISPATCH

    unit_id: str
    returned_by: str
    reason: str


class CaseTransferred(EventPayload):
    """The assigned unit handed the case to a named unit (转派)."""

    event_type: ClassVar[str] = "case.transferred"
    producer: ClassVar[Producer] = Producer.DISPATCH

    from_unit_id: str
    to_unit_id: str
    transferred_by: str
    reason: str


class ExtensionRequested(EventPayload):
    """The unit asked for more time (延期)."""

    event_type: ClassVar[str] = "case.extension_requested"
    producer: ClassVar[Producer] = Producer.DISPATCH

    unit_id: str
    requested_by: str
    reason: str
    requested_due_at: AwareDatetime


class CaseResultReported(EventPayload):
    """The unit reported the case handled (办结), with what it did."""

    event_type: ClassVar[str] = "case.result_reported"
    producer: ClassVar[Producer] = Producer.DISPATCH

    unit_id: str
    reported_by: str
    summary: str
    evidence: tuple[str, ...] = ()
