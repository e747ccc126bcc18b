"""Runs caseloop on one machine: a local broker and the four services as processes."""
