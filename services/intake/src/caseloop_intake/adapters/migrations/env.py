"""Alembic's entry into intake's migrations (run by ``caseloop migrate``, the service's start in
development, and the ``alembic`` command in services/intake)."""

from caseloop_events.runtime.migrations import run_environment
from caseloop_intake.adapters.migrations import MIGRATIONS

run_environment(MIGRATIONS)
