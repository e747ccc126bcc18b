"""Fixtures every package's tests share: a real broker and real databases."""

pytest_plugins = ["caseloop_events.testing.fixtures"]
