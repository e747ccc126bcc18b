"""Alembic's entry into triage's migrations (run by ``caseloop migrate``, the service's start in
development, and the ``alembic`` command in services/triage)."""

from caseloop_events.runtime.migrations import run_environment
from caseloop_triage.adapters.migrations import MIGRATIONS

run_environment(MIGRATIONS)
