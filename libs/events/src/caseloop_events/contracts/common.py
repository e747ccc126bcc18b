"""Vocabulary shared by several contracts."""

from enum import StrEnum


class CaseStatus(StrEnum):
    """Where a case stands in the loop, in plain words.

    ``duplicate`` and ``merged`` cases follow another case; ``returned`` and ``reopened``
    are held by dispatch until it assigns the case again.
    """

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    MERGED = "merged"
    PENDING_REVIEW = "pending_review"
    TRIAGED = "triaged"
    ASSIGNED = "assigned"
    RETURNED = "returned"
    ACKNOWLEDGED = "acknowledged"
    RESULT_REPORTED = "result_reported"
    VERIFIED = "verified"
    REOPENED = "reopened"
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
