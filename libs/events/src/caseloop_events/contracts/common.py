"""Vocabulary shared by several contracts."""

from enum import StrEnum


class CaseStatus(StrEnum):
    """Where a case stands in the loop, in plain words (later stages extend the list)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    PENDING_REVIEW = "pending_review"
    TRIAGED = "triaged"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    RESULT_REPORTED = "result_reported"
    VERIFIED = "verified"
    CLOSED = "closed"


class HandlingLevel(StrEnum):
    """The level of the hierarchy that handles (or is addressed about) a case."""

    GRID = "grid"
    VILLAGE = "village"
    TOWN = "town"
    DISTRICT = "district"


class SlaTierName(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    GENERAL = "general"
    COMPLEX = "complex"
