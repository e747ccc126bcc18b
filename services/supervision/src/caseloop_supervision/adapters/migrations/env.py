"""Alembic's entry into supervision's migrations (run by ``caseloop migrate``, the service's start in
development, and the ``alembic`` command in services/supervision)."""

from caseloop_events.runtime.migrations import run_environment
from caseloop_supervision.adapters.migrations import MIGRATIONS

run_environment(MIGRATIONS)
