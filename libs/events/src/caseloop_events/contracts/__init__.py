"""Every event type caseloop publishes, one module per producing service.

Importing this package registers every payload class with the envelope.
"""

from caseloop_events.contracts import dispatch, intake, supervision, triage
from caseloop_events.contracts.common import CaseStatus

__all__ = ["CaseStatus", "dispatch", "intake", "supervision", "triage"]
