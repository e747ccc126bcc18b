"""Alembic's entry into dispatch's migrations (run by ``caseloop migrate``, the service's start in
development, and the ``alembic`` command in services/dispatch)."""

from caseloop_dispatch.adapters.migrations import MIGRATIONS
from caseloop_events.runtime.migrations import run_environment

run_environment(MIGRATIONS)
