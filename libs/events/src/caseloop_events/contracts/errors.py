"""Errors a command can end in; the HTTP layer maps each kind to its status code."""

from __future__ import annotations


class CaseNotFound(LookupError):
    """No case with that id is known here (HTTP 404)."""

    def __init__(self, case_id: object) -> None:
        super().__init__(f"case {case_id} not found")
        self.case_id = case_id


class NotFound(LookupError):
    """Some other named thing does not exist (HTTP 404)."""


class RuleViolation(Exception):
    """A command that does not fit the case's state (HTTP 409). Subclasses name the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def rule(self) -> str:
        return type(self).__name__


class InvalidInput(ValueError):
    """Input that is well-formed but names something that does not exist (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
