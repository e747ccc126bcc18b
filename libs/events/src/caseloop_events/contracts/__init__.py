"""What the services agree on, and nothing that runs: the event envelope and every event type
(one module per producing service), their JSON Schemas, and the shared kernel of the loop —
causal order, where each event moves a case's status, the timeline, the working-day calendar,
the reference region, the injected clock and the errors a command ends in.

Nothing here imports the runtime or the testing part (``tests/test_layers.py`` holds that).
Importing any module of this package registers every payload class with the envelope: the
package imports the four contract modules first.
"""

from caseloop_events.contracts import dispatch, intake, supervision, triage
from caseloop_events.contracts.common import CaseStatus

__all__ = ["CaseStatus", "dispatch", "intake", "supervision", "triage"]
